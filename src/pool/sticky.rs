//! Sticky sessions: a conversation keeps the account that served it, so the upstream's prompt
//! cache and account-bound encrypted content keep working.
//!
//! A binding is keyed by a digest of (API key name, session value) — two keys never share one, and
//! the client's value is not kept. It lives `gateway.sticky_session_ttl`, refreshed on use, and
//! moves when its account fails, cools, is disabled, or answers slowly too often
//! (`gateway.sticky_slow_ttft_ms`). The slow-release: when the account is far worse than the
//! other candidates lately (error rate or time to first token over 5 minutes, see
//! [`super::performance`]), a new conversation is not bound to it and a binding to it moves
//! with a chance per request that grows with how bad it is (`Pool::select`, `Pool::keep_sticky`).

//!
//! The bindings are runtime state ([`ExpiringMap`]) keyed by that digest and pointing to the
//! account's name, so instances sharing a state backend share them.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::runtime_state::{Expiring, ExpiringMap, RuntimeState, SharedKey, SharedValue};

/// A conversation's identity within one API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StickyKey([u8; 32]);

impl StickyKey {
    /// `key_id` identifies the API key (its name), `session` is the client's value.
    pub fn new(key_id: &[u8], session: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(key_id);
        hasher.update([0]);
        hasher.update(session.as_bytes());
        Self(hasher.finalize().into())
    }
}

impl SharedKey for StickyKey {
    fn to_shared(&self) -> String {
        self.0.to_shared()
    }
    fn from_shared(text: &str) -> Option<Self> {
        <[u8; 32]>::from_shared(text).map(Self)
    }
}

impl SharedValue for Binding {
    fn encode(&self) -> String {
        format!("{}|{}", self.slow_strikes, self.account)
    }
    fn decode(text: &str) -> Option<Self> {
        let (strikes, account) = text.split_once('|')?;
        Some(Self {
            account: account.into(),
            slow_strikes: strikes.parse().ok()?,
        })
    }
}

struct Binding {
    /// The account's name.
    account: Arc<str>,
    slow_strikes: u32,
}

pub struct StickyTable {
    bindings: ExpiringMap<StickyKey, Binding>,
}

impl Default for StickyTable {
    fn default() -> Self {
        Self::new(&RuntimeState::default())
    }
}

impl StickyTable {
    pub fn new(runtime: &RuntimeState) -> Self {
        Self {
            bindings: runtime.expiring("sticky"),
        }
    }

    /// The bound account's name, if the binding is alive.
    pub fn get(&self, key: &StickyKey) -> Option<Arc<str>> {
        self.bindings
            .update(key, None, |b| b.as_ref().map(|b| Arc::clone(&b.account)))
    }

    /// Binds (or re-binds) the conversation to `account` for `ttl` from now.
    pub fn bind(&self, key: StickyKey, account: &Arc<str>, ttl: Duration) {
        self.bindings
            .update(&key, Some(ttl), |binding| match binding {
                Some(b) if b.account == *account => {}
                _ => {
                    *binding = Some(Binding {
                        account: Arc::clone(account),
                        slow_strikes: 0,
                    })
                }
            });
    }

    pub fn release(&self, key: &StickyKey) {
        self.bindings.remove(key);
    }

    /// Counts a slow (or fast) first token of the bound account; after `strikes` slow ones in a
    /// row the binding is released. Returns whether it was.
    pub fn note_ttft(&self, key: &StickyKey, account: &str, slow: bool, strikes: u32) -> bool {
        self.bindings.update(key, None, |binding| {
            let Some(b) = binding.as_mut().filter(|b| &*b.account == account) else {
                return false;
            };
            if !slow {
                b.slow_strikes = 0;
                return false;
            }
            b.slow_strikes += 1;
            if b.slow_strikes >= strikes {
                *binding = None;
                return true;
            }
            false
        })
    }
}
