//! Sign-in token lifecycle: a fresh credential for each attempt, single-flight refresh, the
//! background refresh ahead of expiry, and the rotated tokens kept sealed in the store across
//! restarts. Here rather than in `upstream` (which only makes the refresh request) because it
//! works on the pool's accounts and the store, both of which sit above `upstream`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::OAuthConfig;
use crate::domain::Secret;
use crate::pool::{Account, Pool, TokenState};
use crate::upstream::refresh::{self, RefreshError};

use super::crypto::Sealer;
use super::data_dir::PersistedTokens;
use super::Store;

/// A token this close to expiry is refreshed before use rather than sent.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);
/// How often the background refresher looks for tokens due.
const SCAN_EVERY: Duration = Duration::from_secs(30);

/// What token work needs besides the account: the provider's token endpoints, and the store
/// (with its sealer) that keeps rotated tokens.
#[derive(Clone, Copy)]
pub struct TokenKeeper<'a> {
    pub oauth: &'a OAuthConfig,
    pub store: &'a dyn Store,
    pub sealer: &'a Sealer,
}

/// A refresh that did not give the account new tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The provider refused the refresh token (`invalid_grant`): the account is now disabled
    /// with this reason and needs a new sign-in.
    #[error("{0}")]
    Refused(String),
    /// Anything else (network, provider error): the refresh is retried later with backoff.
    #[error("token refresh failed: {0}")]
    Failed(String),
}

/// The credential for one attempt: the current token, refreshed first when it is (nearly)
/// expired. Returns the token and its generation (for [`refresh_rejected`]).
pub async fn fresh(
    keeper: TokenKeeper<'_>,
    account: &Account,
) -> Result<(Secret, u64), TokenError> {
    let snapshot = account.credentials.snapshot();
    let due = snapshot.expires_within(EXPIRY_MARGIN);
    if !due || snapshot.refresh.is_none() || !account.credentials.refresh_allowed() {
        // Not due, cannot refresh, or a refresh just failed: try the token as it is; the
        // upstream's answer decides.
        return Ok((snapshot.access, snapshot.generation));
    }
    let refreshed = refresh_account(keeper, account, Some(snapshot.generation)).await?;
    Ok((refreshed.access, refreshed.generation))
}

/// The upstream rejected the token of `generation` (a 401): refresh it, unless another request
/// already did. `None` when the account cannot refresh.
pub async fn refresh_rejected(
    keeper: TokenKeeper<'_>,
    account: &Account,
    generation: u64,
) -> Option<Result<(Secret, u64), TokenError>> {
    if !account.credentials.can_refresh() {
        return None;
    }
    Some(
        refresh_account(keeper, account, Some(generation))
            .await
            .map(|t| (t.access, t.generation)),
    )
}

/// Refreshes one account's tokens. Holds the account's refresh lock throughout, so concurrent
/// callers wait and then find the new tokens (their `seen_generation` is then stale) instead of
/// spending the rotated refresh token a second time. New tokens are on disk before they are used.
pub async fn refresh_account(
    keeper: TokenKeeper<'_>,
    account: &Account,
    seen_generation: Option<u64>,
) -> Result<TokenState, TokenError> {
    let _one_at_a_time = account.credentials.refresh_lock.lock().await;
    // Another instance may have refreshed while this one waited for the lock.
    account.credentials.sync().await;
    let current = account.credentials.snapshot();
    if seen_generation.is_some_and(|seen| seen != current.generation) {
        return Ok(current);
    }
    let Some(refresh_token) = current.refresh.clone() else {
        return Ok(current);
    };
    // The store's generation of the saved tokens before this refresh: the save below is a
    // compare-and-swap over it, so tokens another instance saved meanwhile are never replaced by
    // ours. Unreadable (the store is down): the save is tried over 0 and refused if any exist.
    let stored_generation = keeper
        .store
        .token_generation(&account.spec.name)
        .await
        .unwrap_or(0);
    let result = refresh::refresh(
        &account.client,
        keeper.oauth,
        account.spec.platform,
        &refresh_token,
    )
    .await;
    if let Some(metrics) = crate::metrics::get() {
        metrics.token_refresh(match &result {
            Ok(_) => "ok",
            Err(RefreshError::InvalidGrant(_)) => "invalid_grant",
            Err(RefreshError::Other(_)) => "error",
        });
    }
    match result {
        Ok(issued) => {
            let next_refresh = issued.refresh.clone().unwrap_or(refresh_token);
            if let Some(seed) = account.credentials.seed() {
                let persisted = PersistedTokens::new(
                    seed,
                    &issued.access,
                    Some(&next_refresh),
                    issued.expires_at,
                );
                match save(keeper, &account.spec.name, &persisted, stored_generation).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(account = %account.spec.name, "another instance saved newer tokens of this account during the refresh; the store keeps theirs")
                    }
                    // The old refresh token is spent either way; keep the account working and
                    // say loudly that a restart would lose it.
                    Err(e) => {
                        tracing::error!(account = %account.spec.name, "rotated tokens could not be saved: {e}; a restart will need a new sign-in")
                    }
                }
            }
            // Compare-and-set over the generation this refresh started from: under the lock
            // nothing else installs locally; with a shared state another instance's tokens win.
            if let Err(newer) = account.credentials.install(
                current.generation,
                issued.access,
                Some(next_refresh),
                issued.expires_at,
            ) {
                tracing::warn!(account = %account.spec.name, generation = newer, "tokens of a newer generation were installed meanwhile; keeping them");
                return Ok(account.credentials.snapshot());
            }
            tracing::info!(
                account = %account.spec.name,
                expires_at = ?issued.expires_at.map(humantime::format_rfc3339_seconds),
                "sign-in token refreshed"
            );
            Ok(account.credentials.snapshot())
        }
        Err(RefreshError::InvalidGrant(detail)) => {
            let reason = format!("the refresh token was refused (invalid_grant: {detail}); sign the account in again");
            tracing::warn!(account = %account.spec.name, "{reason}");
            account.disable(reason.clone());
            Err(TokenError::Refused(reason))
        }
        Err(RefreshError::Other(detail)) => {
            tracing::warn!(account = %account.spec.name, "token refresh failed, will retry with backoff: {detail}");
            account.credentials.note_refresh_failure();
            Err(TokenError::Failed(detail))
        }
    }
}

/// Refreshes sign-in tokens `oauth.refresh_ahead` before they expire, until shutdown.
pub async fn refresh_ahead(keeper: TokenKeeper<'_>, pool: &Pool, shutdown: CancellationToken) {
    let Some(ahead) = keeper.oauth.refresh_ahead else {
        return;
    };
    loop {
        for account in pool.accounts().iter() {
            let snapshot = account.credentials.snapshot();
            if account.spec.enabled
                && snapshot.refresh.is_some()
                && snapshot.expires_within(ahead)
                && account.credentials.refresh_allowed()
            {
                let _ = refresh_account(keeper, account, Some(snapshot.generation)).await;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SCAN_EVERY) => {}
        }
    }
}

/// The store's name (and sealing context) of an account's saved tokens.
fn context(account: &str) -> String {
    format!("tokens:{account}")
}

/// Seals the tokens with the store's key and writes them over generation `seen` of the saved
/// ones (compare-and-swap); returns once they are stored, with whether they were (`false`:
/// another instance saved newer ones since `seen`).
async fn save(
    keeper: TokenKeeper<'_>,
    account: &str,
    tokens: &PersistedTokens,
    seen: i64,
) -> Result<bool, String> {
    let plain = serde_json::to_vec(tokens).map_err(|e| e.to_string())?;
    let sealed = keeper.sealer.seal(&context(account), &plain)?;
    keeper
        .store
        .save_tokens_if(account, &sealed, seen)
        .await
        .map_err(|e| e.to_string())
}

/// Replaces config tokens by the saved descendants of the same chain, at start.
pub async fn restore(keeper: TokenKeeper<'_>, pool: &Pool) -> Result<usize, String> {
    restore_only(keeper, pool, None).await
}

/// [`restore`] for the accounts named in `only` (`None`: every account): a configuration reload
/// rebuilds a changed account with the file's tokens, which may have been rotated (and the file's
/// refresh token spent) since.
pub async fn restore_only(
    keeper: TokenKeeper<'_>,
    pool: &Pool,
    only: Option<&[String]>,
) -> Result<usize, String> {
    let saved = keeper
        .store
        .saved_tokens()
        .await
        .map_err(|e| format!("cannot read saved sign-in tokens: {e}"))?;
    let mut restored = 0;
    for (name, sealed) in saved {
        if only.is_some_and(|names| !names.contains(&name)) {
            continue;
        }
        let Some(account) = pool.find(&name) else {
            continue;
        };
        let Some(seed) = account.credentials.seed() else {
            continue;
        };
        let tokens: PersistedTokens = keeper
            .sealer
            .open(&context(&name), &sealed)
            .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| e.to_string()))
            .map_err(|e| format!("the saved tokens of account {name} cannot be read: {e}"))?;
        if tokens.seed != seed {
            tracing::info!(account = %name, "the config declares a new refresh token; the saved token chain is ignored");
            continue;
        }
        // At start (or right after a reload rebuilt the account) nothing else installs: the
        // generation read here is the current one.
        let _ = account.credentials.install(
            account.credentials.snapshot().generation,
            Secret::new(tokens.access_token.clone()),
            tokens.refresh_token.clone().map(Secret::new),
            tokens.expires_at(),
        );
        restored += 1;
    }
    Ok(restored)
}
