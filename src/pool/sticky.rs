//! Sticky sessions: a conversation keeps the account that served it, so the upstream's prompt
//! cache and account-bound encrypted content keep working.
//!
//! A binding is keyed by a digest of (API key, session value) — two keys never share one, and
//! the client's value is not kept. It lives `gateway.sticky_session_ttl`, refreshed on use, and
//! moves when its account fails, cools, is disabled, or answers slowly too often.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::AccountId;

/// A conversation's identity within one API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StickyKey([u8; 32]);

impl StickyKey {
    /// `key_id` identifies the API key (its digest), `session` is the client's value.
    pub fn new(key_id: &[u8], session: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(key_id);
        hasher.update([0]);
        hasher.update(session.as_bytes());
        Self(hasher.finalize().into())
    }
}

struct Binding {
    account: AccountId,
    expires: Instant,
    slow_strikes: u32,
}

#[derive(Default)]
pub struct StickyTable {
    bindings: Mutex<HashMap<StickyKey, Binding>>,
}

/// Beyond this many bindings, expired ones are swept on the next insert.
const SWEEP_ABOVE: usize = 4096;

impl StickyTable {
    fn map(&self) -> MutexGuard<'_, HashMap<StickyKey, Binding>> {
        self.bindings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bound account, if the binding is alive.
    pub fn get(&self, key: &StickyKey, now: Instant) -> Option<AccountId> {
        let mut map = self.map();
        match map.get(key) {
            Some(b) if b.expires > now => Some(b.account),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Binds (or re-binds) the conversation to `account` for `ttl` from now.
    pub fn bind(&self, key: StickyKey, account: AccountId, ttl: Duration) {
        let now = Instant::now();
        let mut map = self.map();
        if map.len() >= SWEEP_ABOVE {
            map.retain(|_, b| b.expires > now);
        }
        let binding = map.entry(key).or_insert(Binding {
            account,
            expires: now + ttl,
            slow_strikes: 0,
        });
        if binding.account != account {
            binding.account = account;
            binding.slow_strikes = 0;
        }
        binding.expires = now + ttl;
    }

    pub fn release(&self, key: &StickyKey) {
        self.map().remove(key);
    }

    /// Counts a slow (or fast) first token of the bound account; after `strikes` slow ones in a
    /// row the binding is released. Returns whether it was.
    pub fn note_ttft(&self, key: &StickyKey, account: AccountId, slow: bool, strikes: u32) -> bool {
        let mut map = self.map();
        let Some(binding) = map.get_mut(key).filter(|b| b.account == account) else {
            return false;
        };
        if !slow {
            binding.slow_strikes = 0;
            return false;
        }
        binding.slow_strikes += 1;
        if binding.slow_strikes >= strikes {
            map.remove(key);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
