//! The pool's runtime state that should survive a restart: an account disabled for a permanent
//! failure (revoked key, refused refresh token) stays disabled with its reason, a rate limit
//! stays until its reset, and the last quota snapshot is shown again. Other cooldowns are short
//! and are not kept.
//!
//! The state is written every [`EVERY`] and at shutdown, and restored once at start, only when
//! the account's declared credential is still the one the state was observed with (a keyed hash
//! is kept to tell): replacing a revoked key in the config or through the admin API starts the
//! account fresh.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::keys::KeyHasher;
use super::Store;
use crate::pool::quota::QuotaSnapshot;
use crate::pool::{Account, AccountEffect, LastingState, Pool};

/// How often the state is saved while running.
const EVERY: Duration = Duration::from_secs(15);

/// An account's [`LastingState`] as stored (JSON), with the credential it was observed with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Keyed hash of the declared credential.
    pub credential: String,
    pub disabled_reason: Option<String>,
    /// Unix seconds.
    pub rate_limited_until: Option<u64>,
    pub quota: Option<QuotaSnapshot>,
}

impl PersistedState {
    fn new(credential: String, lasting: LastingState) -> Self {
        Self {
            credential,
            disabled_reason: lasting.disabled_reason,
            rate_limited_until: lasting
                .rate_limited_until
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            quota: lasting.quota,
        }
    }
}

/// What the account state is kept with: the pool it comes from, the store it goes to, and the
/// key hasher that fingerprints the declared credential.
#[derive(Clone, Copy)]
pub struct StateKeeper<'a> {
    pub pool: &'a Pool,
    pub store: &'a dyn Store,
    pub hasher: &'a KeyHasher,
}

fn observe(hasher: &KeyHasher, account: &Account) -> PersistedState {
    PersistedState::new(
        hasher.hex_digest(account.spec.credential.bearer().expose()),
        account.lasting_state(),
    )
}
/// Saves every account whose state changed since `last`; returns the states now saved.
pub async fn save(
    keeper: StateKeeper<'_>,
    mut last: HashMap<String, PersistedState>,
) -> HashMap<String, PersistedState> {
    for account in keeper.pool.accounts().iter() {
        let now = observe(keeper.hasher, account);
        if last.get(&account.spec.name) == Some(&now) {
            continue;
        }
        let json = serde_json::to_string(&now).unwrap_or_default();
        match keeper
            .store
            .save_account_state(&account.spec.name, &json)
            .await
        {
            Ok(()) => {
                last.insert(account.spec.name.clone(), now);
            }
            Err(e) => {
                tracing::warn!(account = %account.spec.name, "cannot save account state: {e}")
            }
        }
    }
    last
}

/// Puts the saved state back on the pool's accounts; returns the states as saved (so the first
/// save writes only what changed) and how many accounts got one back.
pub async fn restore(
    keeper: StateKeeper<'_>,
) -> Result<(HashMap<String, PersistedState>, usize), String> {
    let saved = keeper
        .store
        .account_states()
        .await
        .map_err(|e| format!("cannot read account state from the store: {e}"))?;
    let mut known = HashMap::new();
    let mut restored = 0;
    for (name, json) in saved {
        let (Some(account), Ok(persisted)) = (
            keeper.pool.find(&name),
            serde_json::from_str::<PersistedState>(&json),
        ) else {
            continue;
        };
        if persisted.credential != observe(keeper.hasher, &account).credential {
            continue;
        }
        if apply(keeper.pool, &account, &persisted) {
            restored += 1;
        }
        known.insert(name, persisted);
    }
    Ok((known, restored))
}

fn apply(pool: &Pool, account: &Account, persisted: &PersistedState) -> bool {
    let mut changed = false;
    if persisted.quota.is_some() {
        account.note_success(persisted.quota.clone());
        changed = true;
    }
    let left = persisted
        .rate_limited_until
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .and_then(|until| until.duration_since(SystemTime::now()).ok());
    if let Some(left) = left {
        account.apply(
            &AccountEffect::RateLimited(Some(left)),
            "rate-limited before the restart",
            &pool.policy().cooldowns,
        );
        changed = true;
    }
    if let Some(reason) = &persisted.disabled_reason {
        account.disable(reason.clone());
        changed = true;
    }
    changed
}

/// Saves the state every [`EVERY`] until `stop`, then once more.
pub async fn keep(
    keeper: StateKeeper<'_>,
    mut last: HashMap<String, PersistedState>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => break,
        }
        last = save(keeper, last).await;
    }
    save(keeper, last).await;
}
