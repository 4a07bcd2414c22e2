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

use crate::pool::quota::QuotaSnapshot;
use crate::pool::{Account, AccountEffect};
use crate::state::AppState;

/// How often the state is saved while running.
const EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    /// Keyed hash of the declared credential.
    pub credential: String,
    pub disabled_reason: Option<String>,
    /// Unix seconds.
    pub rate_limited_until: Option<u64>,
    pub quota: Option<QuotaSnapshot>,
}

fn observe(state: &AppState, account: &Account) -> PersistedState {
    let view = account.view();
    let rate_limited_until = match (view.cooldown_reason.as_deref(), &view.cooldown_until) {
        (Some("rate_limited"), Some(until)) => humantime::parse_rfc3339(until)
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs()),
        _ => None,
    };
    PersistedState {
        credential: state
            .keys
            .hasher()
            .hex_digest(account.spec.credential.bearer().expose()),
        // "disabled in config" is the config's own flag, not runtime state.
        disabled_reason: view.disabled_reason.filter(|_| account.spec.enabled),
        rate_limited_until,
        quota: view.quota,
    }
}

/// Saves every account whose state changed since `last`; returns the states now saved.
pub async fn save(
    state: &AppState,
    mut last: HashMap<String, PersistedState>,
) -> HashMap<String, PersistedState> {
    for account in state.pool.accounts().iter() {
        let now = observe(state, account);
        if last.get(&account.spec.name) == Some(&now) {
            continue;
        }
        let json = serde_json::to_string(&now).unwrap_or_default();
        match state
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
pub async fn restore(state: &AppState) -> Result<(HashMap<String, PersistedState>, usize), String> {
    let saved = state
        .store
        .account_states()
        .await
        .map_err(|e| format!("cannot read account state from the store: {e}"))?;
    let mut known = HashMap::new();
    let mut restored = 0;
    for (name, json) in saved {
        let (Some(account), Ok(persisted)) = (
            state.pool.find(&name),
            serde_json::from_str::<PersistedState>(&json),
        ) else {
            continue;
        };
        if persisted.credential != observe(state, &account).credential {
            continue;
        }
        if apply(state, &account, &persisted) {
            restored += 1;
        }
        known.insert(name, persisted);
    }
    Ok((known, restored))
}

fn apply(state: &AppState, account: &Account, persisted: &PersistedState) -> bool {
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
            &state.pool.policy.cooldowns,
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
    state: std::sync::Arc<AppState>,
    mut last: HashMap<String, PersistedState>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => break,
        }
        last = save(&state, last).await;
    }
    save(&state, last).await;
}
