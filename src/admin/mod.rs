//! The admin API under `/admin/api/`: the pool's state and the actions on it. Protected by
//! `admin.token` (Bearer); without a token configured it is off. `subrelay accounts` is a
//! client of this API.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::relay::failure::ClientError;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/api/accounts", get(list_accounts))
        .route("/admin/api/accounts/{name}/reset", post(reset_account))
        .route("/admin/api/accounts/{name}/refresh", post(refresh_account))
}

/// Checks the admin token; the comparison takes the same time whatever the guess.
fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ClientError> {
    let Some(expected) = &state.admin_token else {
        return Err(ClientError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "the admin API is off: set admin.token in the config to turn it on",
        )
        .with_code("admin_api_off"));
    };
    let given = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let same =
        Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.expose().as_bytes()));
    if bool::from(same) {
        Ok(())
    } else {
        Err(ClientError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong admin token (send `Authorization: Bearer <admin.token>`)",
        )
        .with_code("invalid_admin_token"))
    }
}

async fn list_accounts(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let accounts: Vec<_> = state.pool.accounts().iter().map(|a| a.view()).collect();
    Json(json!({ "accounts": accounts })).into_response()
}

fn unknown_account(name: &str) -> Response {
    ClientError::new(
        StatusCode::NOT_FOUND,
        "not_found_error",
        format!("no account named {name:?}"),
    )
    .with_code("unknown_account")
    .into_response()
}

/// Clears a cooldown or a runtime disable.
async fn reset_account(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let Some(account) = state.pool.find(&name) else {
        return unknown_account(&name);
    };
    account.reset();
    tracing::info!(account = %name, "account reset by the admin API");
    Json(json!({ "account": account.view() })).into_response()
}

/// Refreshes a sign-in account's token now.
async fn refresh_account(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&state, &headers) {
        return e.into_response();
    }
    let Some(account) = state.pool.find(&name) else {
        return unknown_account(&name);
    };
    if !account.credentials.can_refresh() {
        return ClientError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            format!("account {name:?} has no refresh token"),
        )
        .into_response();
    }
    match crate::upstream::tokens::refresh_account(&state, account, None).await {
        Ok(_) => Json(json!({ "account": account.view() })).into_response(),
        Err(failure) => {
            ClientError::new(StatusCode::BAD_GATEWAY, "upstream_error", failure.message)
                .into_response()
        }
    }
}
