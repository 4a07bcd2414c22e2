//! An account's credential at runtime. API keys never change; sign-in tokens are refreshed, and
//! a refresh must never race another refresh of the same account (refresh tokens rotate: the
//! second would present a spent token and lose the account).
//!
//! The tokens and their generation live in the runtime state ([`VersionedCell`], moved only by
//! compare-and-set) and the refresh holds the account's [`RefreshLock`], both keyed by the
//! account's name, so a shared backend gives every instance the same tokens and one refresh.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::domain::{AccountCredential, Secret};
use crate::runtime_state::{
    RefreshLock, RuntimeState, Seal, SealedValue, Versioned, VersionedCell,
};

#[derive(Debug, Clone)]
pub struct TokenState {
    pub access: Secret,
    pub refresh: Option<Secret>,
    pub expires_at: Option<SystemTime>,
    /// Bumped by every refresh; a waiter that saw an older generation knows one happened.
    pub generation: u64,
}

impl TokenState {
    /// Whether the token expires within `margin` from now.
    pub fn expires_within(&self, margin: Duration) -> bool {
        self.expires_at
            .is_some_and(|at| at <= SystemTime::now() + margin)
    }
}

/// The tokens themselves; their generation is the cell's.
#[derive(Clone)]
struct Tokens {
    access: Secret,
    refresh: Option<Secret>,
    expires_at: Option<SystemTime>,
}

/// The tokens as a shared state backend stores them, sealed (Unix milliseconds for the expiry).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredTokens {
    access: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<u64>,
}

/// The sealing context of an account's tokens in the shared state (not the store's
/// `tokens:{name}`: a value of one place never opens in the other).
fn sealing_context(account: &str) -> String {
    format!("state-tokens:{account}")
}

/// Anyone reading Redis sees only this (hex of the store's AES-256-GCM sealing, bound to the
/// account name); the generation stays in the clear for the compare-and-set script.
impl SealedValue for Tokens {
    fn seal(&self, name: &str, sealer: &dyn Seal) -> Result<String, String> {
        let plain = serde_json::to_vec(&StoredTokens {
            access: self.access.expose().to_owned(),
            refresh: self.refresh.as_ref().map(|r| r.expose().to_owned()),
            expires_at_ms: self.expires_at.and_then(|t| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            }),
        })
        .map_err(|e| e.to_string())?;
        let sealed = sealer.seal(&sealing_context(name), &plain)?;
        Ok(sealed.iter().map(|b| format!("{b:02x}")).collect())
    }

    fn open(name: &str, sealed: &str, sealer: &dyn Seal) -> Result<Self, String> {
        let bytes = from_hex(sealed).ok_or("not sealed tokens")?;
        let plain = sealer.open(&sealing_context(name), &bytes)?;
        let stored: StoredTokens = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
        Ok(Self {
            access: Secret::new(stored.access),
            refresh: stored.refresh.map(Secret::new),
            expires_at: stored
                .expires_at_ms
                .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        })
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub struct Credentials {
    tokens: VersionedCell<Tokens>,
    /// Held for the whole of a refresh: one at a time per account; others wait for its result.
    pub refresh_lock: RefreshLock,
    /// After a failed refresh: no new attempt before this time; the step doubles each failure.
    backoff: Mutex<Option<(Instant, Duration)>>,
    /// Fingerprint of the refresh token the config declared: persisted tokens descend from it.
    seed: Option<String>,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);

/// Hex SHA-256 of a token, to recognise it without keeping it.
pub fn fingerprint(secret: &Secret) -> String {
    Sha256::digest(secret.expose().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Credentials {
    /// `account`: the name the runtime state keeps the tokens under.
    pub fn new(credential: &AccountCredential, runtime: &RuntimeState, account: &str) -> Self {
        let (tokens, seed) = match credential {
            AccountCredential::ApiKey { api_key } => (
                Tokens {
                    access: api_key.clone(),
                    refresh: None,
                    expires_at: None,
                },
                None,
            ),
            AccountCredential::OAuth {
                access_token,
                refresh_token,
                expires_at,
                ..
            } => (
                Tokens {
                    access: access_token.clone(),
                    refresh: refresh_token.clone(),
                    expires_at: *expires_at,
                },
                refresh_token.as_ref().map(fingerprint),
            ),
        };
        Self {
            tokens: runtime.versioned(account, tokens),
            refresh_lock: runtime.refresh_lock(account),
            backoff: Mutex::new(None),
            seed,
        }
    }

    /// Reads the tokens other instances installed (a shared state backend; call it holding the
    /// refresh lock, before deciding whether to refresh).
    pub async fn sync(&self) {
        self.tokens.sync().await;
    }

    pub fn snapshot(&self) -> TokenState {
        let (tokens, generation) = self.tokens.load();
        TokenState {
            access: tokens.access,
            refresh: tokens.refresh,
            expires_at: tokens.expires_at,
            generation,
        }
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.tokens.read(|tokens, _| tokens.expires_at)
    }

    pub fn can_refresh(&self) -> bool {
        self.tokens.read(|tokens, _| tokens.refresh.is_some())
    }

    pub fn seed(&self) -> Option<&str> {
        self.seed.as_deref()
    }

    /// Installs freshly issued tokens over generation `seen` (compare-and-set: `Err` with the
    /// current generation when another refresh installed tokens since); a missing new refresh
    /// token keeps the old one.
    pub fn install(
        &self,
        seen: u64,
        access: Secret,
        refresh: Option<Secret>,
        expires_at: Option<SystemTime>,
    ) -> Result<u64, u64> {
        let kept = self
            .tokens
            .read(|current, generation| (generation == seen).then(|| current.refresh.clone()));
        let Some(kept) = kept else {
            return Err(self.tokens.read(|_, generation| generation));
        };
        let next = Tokens {
            access,
            refresh: refresh.or(kept),
            expires_at,
        };
        let installed = self.tokens.compare_and_set(seen, next)?;
        *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(installed)
    }

    /// Whether a refresh may be attempted now (not in the backoff after a failure).
    pub fn refresh_allowed(&self) -> bool {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|(until, _)| Instant::now() >= until)
    }

    /// A refresh failed for a reason that may pass: wait longer before the next one.
    pub fn note_refresh_failure(&self) {
        let mut backoff = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        let step = backoff.map_or(FIRST_BACKOFF, |(_, step)| (step * 2).min(MAX_BACKOFF));
        *backoff = Some((Instant::now() + step, step));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::store::crypto::Sealer;

    #[test]
    fn shared_tokens_are_sealed_and_open_only_for_their_account_with_the_same_key() {
        let sealer = Sealer::new(&[3; 32]);
        let tokens = Tokens {
            access: Secret::new("at-visible-access".to_owned()),
            refresh: Some(Secret::new("rt-visible-refresh".to_owned())),
            expires_at: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)),
        };
        let sealed = tokens.seal("acct", &sealer).unwrap();
        assert!(!sealed.contains("visible"), "{sealed}");
        let opened = Tokens::open("acct", &sealed, &sealer).unwrap();
        assert_eq!(opened.access.expose(), "at-visible-access");
        assert_eq!(
            opened.refresh.as_ref().map(Secret::expose),
            Some("rt-visible-refresh")
        );
        assert_eq!(opened.expires_at, tokens.expires_at);
        assert!(Tokens::open("other", &sealed, &sealer).is_err());
        assert!(Tokens::open("acct", &sealed, &Sealer::new(&[4; 32])).is_err());
        assert!(Tokens::open("acct", "not hex", &sealer).is_err());
    }
}
