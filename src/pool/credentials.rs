//! An account's credential at runtime. API keys never change; sign-in tokens are refreshed, and
//! a refresh must never race another refresh of the same account (refresh tokens rotate: the
//! second would present a spent token and lose the account).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::AccountCredential;
use crate::config::Secret;

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

pub struct Credentials {
    state: Mutex<TokenState>,
    /// Held for the whole of a refresh: one at a time per account; others wait for its result.
    pub refresh_lock: tokio::sync::Mutex<()>,
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
    pub fn new(credential: &AccountCredential) -> Self {
        let (state, seed) = match credential {
            AccountCredential::ApiKey { api_key } => (
                TokenState {
                    access: api_key.clone(),
                    refresh: None,
                    expires_at: None,
                    generation: 0,
                },
                None,
            ),
            AccountCredential::OAuth {
                access_token,
                refresh_token,
                expires_at,
                ..
            } => (
                TokenState {
                    access: access_token.clone(),
                    refresh: refresh_token.clone(),
                    expires_at: *expires_at,
                    generation: 0,
                },
                refresh_token.as_ref().map(fingerprint),
            ),
        };
        Self {
            state: Mutex::new(state),
            refresh_lock: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(None),
            seed,
        }
    }

    fn state(&self) -> MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> TokenState {
        self.state().clone()
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.state().expires_at
    }

    pub fn can_refresh(&self) -> bool {
        self.state().refresh.is_some()
    }

    pub fn seed(&self) -> Option<&str> {
        self.seed.as_deref()
    }

    /// Installs freshly issued tokens; a missing new refresh token keeps the old one.
    pub fn install(&self, access: Secret, refresh: Option<Secret>, expires_at: Option<SystemTime>) {
        let mut state = self.state();
        state.access = access;
        if refresh.is_some() {
            state.refresh = refresh;
        }
        state.expires_at = expires_at;
        state.generation += 1;
        drop(state);
        *self.backoff.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
