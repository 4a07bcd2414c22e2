//! `GET /v1/models`: the models the caller's account group can serve, in the OpenAI list shape.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::HeaderMap;
use serde_json::json;

use crate::domain::{AccountKind, Platform};
use crate::protocol::errors::ErrorShape;
use crate::state::AppState;

/// Listed for accounts without a `models:` list. Such accounts accept any model name; this is
/// only what clients see when they ask which ones exist.
const CODEX_MODELS: &[&str] = &[
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.2",
    "gpt-5.1-codex-max",
    "gpt-5.1-codex",
    "gpt-5.1-codex-mini",
    "gpt-5.1",
    "gpt-5-codex",
    "gpt-5",
];
const API_MODELS: &[&str] = &[
    "gpt-5.5",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.2",
    "gpt-5.1",
    "gpt-5.1-codex",
    "gpt-5",
    "gpt-5-mini",
    "gpt-4.1",
    "o3",
    "o4-mini",
];
const CLAUDE_MODELS: &[&str] = &[
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "claude-sonnet-4-0",
];

/// OpenAI list shape by default; Anthropic's when the request carries `anthropic-version` or
/// the key's group is served by Anthropic accounts.
pub(super) async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let anthropic_client = headers.contains_key("anthropic-version");
    let key = match state.keys.authenticate(&headers) {
        Ok(key) => key,
        Err(refusal) => {
            let shape = if anthropic_client {
                ErrorShape::Anthropic
            } else {
                ErrorShape::OpenAi
            };
            return refusal.response(shape);
        }
    };
    let mut models = BTreeSet::new();
    let accounts = state.pool.accounts();
    // A translating group's accounts may be of either platform.
    let translate = state.group_settings().translates(&key.group);
    let platform = (!translate).then_some(key.platform);
    for account in crate::pool::Pool::members(&accounts, &key.group, platform) {
        let defaults = match (account.spec.platform, account.spec.kind) {
            (Platform::Anthropic, _) => CLAUDE_MODELS,
            (Platform::OpenAi, AccountKind::OAuth) => CODEX_MODELS,
            (Platform::OpenAi, AccountKind::ApiKey) => API_MODELS,
        };
        match &account.spec.models {
            Some(list) => models.extend(list.iter().map(String::as_str)),
            None => models.extend(defaults.iter().copied()),
        }
        models.extend(account.spec.model_map.keys().map(String::as_str));
    }
    if anthropic_client || key.platform == Platform::Anthropic {
        let data: Vec<_> = models
            .iter()
            .map(|id| json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}))
            .collect();
        return Json(json!({
            "data": data,
            "has_more": false,
            "first_id": models.first(),
            "last_id": models.last(),
        }))
        .into_response();
    }
    let data: Vec<_> = models
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "openai"}))
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unpriced model costs 0, so a spending limit would never apply to it.
    #[test]
    fn every_advertised_model_has_a_price() {
        let table = crate::pricing::PriceTable::default();
        let unpriced: Vec<&str> = CODEX_MODELS
            .iter()
            .chain(API_MODELS)
            .chain(CLAUDE_MODELS)
            .copied()
            .filter(|m| table.price(m).is_none())
            .collect();
        assert!(
            unpriced.is_empty(),
            "advertised without a price: {unpriced:?}"
        );
        // Positive control: the check does see a model without a price.
        assert!(table.price("gpt-9-unreleased").is_none());
    }
}
