//! The pool's live state and the actions on one account: list, reset, refresh.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::accounts::{stored_view, StoredAccount};
use super::{not_found, store_error, Admin, ErrorBody};
use crate::http::refusal::Refusal;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountList {
    /// The pool's accounts as they run now: state, cooldown (until when, why), in flight,
    /// token expiry, last error, quota, the last 5 minutes' outcomes (`performance`).
    #[schema(value_type = Vec<Object>)]
    pub accounts: Vec<serde_json::Value>,
    /// Every stored account (config and admin-created); admin-created ones join the pool at
    /// the next start.
    pub stored: Vec<StoredAccount>,
}

/// The pool's live state, and the stored accounts.
#[utoipa::path(get, path = "/admin/api/accounts", tag = "accounts",
    responses(
        (status = 200, description = "The pool and the stored accounts", body = AccountList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list_accounts(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    let accounts = state
        .pool
        .views()
        .iter()
        .map(|v| serde_json::to_value(v).unwrap_or_default())
        .collect();
    let stored = match state.store.list_accounts().await {
        Ok(records) => records.iter().map(stored_view).collect(),
        Err(e) => return store_error(e).into_response(),
    };
    Json(AccountList { accounts, stored }).into_response()
}

/// Clears a cooldown or a runtime disable.
#[utoipa::path(post, path = "/admin/api/accounts/{name}/reset", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account's state after the reset", body = Object),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account in the pool, or the admin API is off", body = ErrorBody),
    ))]
pub async fn reset_account(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    let Some(account) = state.pool.find(&name) else {
        return not_found("account", &name).into_response();
    };
    let before = serde_json::to_value(state.pool.view(&account)).ok();
    account.reset();
    tracing::info!(account = %name, "account reset by the admin API");
    crate::store::audit::record(
        state.store.as_ref(),
        &admin.actor,
        "account.reset",
        &name,
        before,
        serde_json::to_value(state.pool.view(&account)).ok(),
    )
    .await;
    Json(json!({ "account": state.pool.view(&account) })).into_response()
}

/// Probes the account now with its platform's cheapest request (the model list; a token count
/// on Anthropic): a pass brings an account out for an error back at once.
#[utoipa::path(post, path = "/admin/api/accounts/{name}/test", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The probe's result (`probe.ok`) and the account's state after it", body = Object),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account in the pool, or the admin API is off", body = ErrorBody),
    ))]
pub async fn test_account(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    let Some(account) = state.pool.find(&name) else {
        return not_found("account", &name).into_response();
    };
    let extend = state
        .gateway()
        .probe_interval
        .unwrap_or(std::time::Duration::from_secs(60));
    let probe = crate::relay::probe::probe(&state, &account, extend).await;
    Json(json!({ "probe": probe, "account": state.pool.view(&account) })).into_response()
}

/// Refreshes a sign-in account's token now.
#[utoipa::path(post, path = "/admin/api/accounts/{name}/refresh", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account's state after the refresh", body = Object),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account in the pool, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The account has no refresh token", body = ErrorBody),
        (status = 502, description = "The token endpoint refused the refresh", body = ErrorBody),
    ))]
pub async fn refresh_account(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    let Some(account) = state.pool.find(&name) else {
        return not_found("account", &name).into_response();
    };
    if !account.credentials.can_refresh() {
        return Refusal::NoRefreshToken { account: name }.into_response();
    }
    match crate::store::tokens::refresh_account(state.tokens(), &account, None).await {
        Ok(_) => {
            // The account's view only: the new tokens never reach the trail.
            crate::store::audit::record(
                state.store.as_ref(),
                &admin.actor,
                "account.refresh",
                &name,
                None,
                serde_json::to_value(state.pool.view(&account)).ok(),
            )
            .await;
            Json(json!({ "account": state.pool.view(&account) })).into_response()
        }
        Err(e) => Refusal::RefreshFailed(e.to_string()).into_response(),
    }
}
