//! `GET /v1/models`: the models the caller's account group can serve, in the OpenAI list shape.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::json;

use crate::pool::{AccountKind, Platform};
use crate::state::AppState;

/// Listed for accounts without a `models:` list. Such accounts accept any model name; this is
/// only what clients see when they ask which ones exist.
const CODEX_MODELS: &[&str] = &[
    "gpt-5.1-codex-max",
    "gpt-5.1-codex",
    "gpt-5.1-codex-mini",
    "gpt-5.1",
    "gpt-5-codex",
    "gpt-5",
];
const API_MODELS: &[&str] = &[
    "gpt-5.1",
    "gpt-5.1-codex",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-4.1",
    "o3",
    "o4-mini",
];

pub(super) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let key = match state.keys.authenticate(&headers) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };
    let mut models = BTreeSet::new();
    for account in state.pool.members(&key.group, Platform::OpenAi) {
        match (&account.spec.models, account.spec.kind) {
            (Some(list), _) => models.extend(list.iter().map(String::as_str)),
            (None, AccountKind::OAuth) => models.extend(CODEX_MODELS.iter().copied()),
            (None, AccountKind::ApiKey) => models.extend(API_MODELS.iter().copied()),
        }
    }
    let data: Vec<_> = models
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "openai"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}
