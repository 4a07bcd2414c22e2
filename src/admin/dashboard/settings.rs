//! The Settings page's data: the effective configuration as `subrelay serve` loaded it (secrets
//! redacted: inline values show as `<redacted>`, `env:`/`file:` references as themselves), the
//! config file's path, and which keys came from the environment.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use super::super::{Admin, ErrorBody};
use crate::config::env_name;
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct FromEnv {
    pub key: String,
    pub variable: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Settings {
    /// The config file, if one was given.
    pub file: Option<String>,
    /// Keys whose value came from the environment.
    pub from_env: Vec<FromEnv>,
    /// The effective configuration as YAML, secrets redacted.
    pub effective_yaml: String,
}

/// The effective configuration, redacted.
#[utoipa::path(get, path = "/admin/api/settings", tag = "settings",
    responses(
        (status = 200, description = "The effective configuration", body = Settings),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn get(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    let origin = state.config_origin.get();
    Json(Settings {
        file: origin.file.as_ref().map(|p| p.display().to_string()),
        from_env: origin
            .from_env
            .iter()
            .map(|key| FromEnv {
                key: (*key).to_owned(),
                variable: env_name(key),
            })
            .collect(),
        effective_yaml: origin.effective_yaml.clone(),
    })
    .into_response()
}
