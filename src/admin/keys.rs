//! API keys: create (the raw key is returned once, then only its keyed hash exists), list, get,
//! update limits, disable, delete. Every change reaches the [`KeyDirectory`] at once, so a new
//! key works for the next request and a disabled one stops.
//!
//! [`KeyDirectory`]: crate::http::auth::KeyDirectory

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};

use super::change::{change, trail, Changed};
use super::{
    bad_request, check_name, not_found, refuse_config_row, store_error, Admin, AdminJson, ErrorBody,
};
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::keys::{generate, hint};
use crate::store::{now_secs, KeyRecord, Source};

/// A key as listed: never the key, only a few characters of it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyView {
    pub name: String,
    /// The key's first characters (empty for short keys).
    pub prefix: String,
    /// The key's last characters (empty for short keys).
    pub suffix: String,
    pub group: String,
    pub enabled: bool,
    /// Unix seconds; the key is refused from then on.
    pub expires_at: Option<i64>,
    /// Requests in flight at once; 0 = unlimited.
    pub concurrency: u32,
    /// Requests per minute; 0 = unlimited.
    pub rpm_limit: u32,
    /// USD per UTC day.
    pub daily_spend_limit: Option<f64>,
    /// USD per calendar month (UTC).
    pub monthly_spend_limit: Option<f64>,
    /// `null`: every model.
    pub allowed_models: Option<Vec<String>>,
    pub source: Source,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    pub keys: Vec<KeyView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedKey {
    pub key: KeyView,
    /// The key to hand out. Shown only in this answer: the store keeps a keyed hash.
    pub api_key: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    /// Default `default`; the group must exist.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub rpm_limit: Option<u32>,
    #[serde(default)]
    pub daily_spend_limit: Option<f64>,
    #[serde(default)]
    pub monthly_spend_limit: Option<f64>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// Fields to change; absent fields stay, `null` clears a nullable one.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<Option<i64>>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub rpm_limit: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub daily_spend_limit: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<f64>)]
    pub monthly_spend_limit: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_models: Option<Option<Vec<String>>>,
}

/// A field that was given (maybe `null`), as opposed to absent.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub fn view(k: &KeyRecord) -> KeyView {
    KeyView {
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        suffix: k.suffix.clone(),
        group: k.group.clone(),
        enabled: k.enabled,
        expires_at: k.expires_at,
        concurrency: k.concurrency,
        rpm_limit: k.rpm_limit,
        daily_spend_limit: k.daily_spend_limit,
        monthly_spend_limit: k.monthly_spend_limit,
        allowed_models: k.allowed_models.clone(),
        source: k.source,
        created_at: k.created_at,
    }
}

async fn find(state: &AppState, name: &str) -> Result<KeyRecord, Refusal> {
    state
        .store
        .list_keys()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|k| k.name == name)
        .ok_or_else(|| not_found("key", name))
}

fn check_limits(record: &KeyRecord, state: &AppState) -> Result<(), Refusal> {
    if state.keys.group_platform(&record.group).is_none() {
        return Err(bad_request(format!(
            "group {:?} does not exist; create it with POST /admin/api/groups or name one the config declares",
            record.group
        )));
    }
    for (field, limit) in [
        ("daily_spend_limit", record.daily_spend_limit),
        ("monthly_spend_limit", record.monthly_spend_limit),
    ] {
        if limit.is_some_and(|l| !l.is_finite() || l < 0.0) {
            return Err(bad_request(format!(
                "{field}: must be a USD amount of 0 or more, or null for no limit"
            )));
        }
    }
    if let Some(models) = &record.allowed_models {
        if models.is_empty() || models.iter().any(|m| m.trim().is_empty()) {
            return Err(bad_request(
                "allowed_models: list model names, or null for every model",
            ));
        }
    }
    Ok(())
}

/// Every key (config and admin-created).
#[utoipa::path(get, path = "/admin/api/keys", tag = "keys",
    responses(
        (status = 200, description = "Every key", body = KeyList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_keys().await {
        Ok(keys) => Json(KeyList {
            keys: keys.iter().map(view).collect(),
        })
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// Creates a key; the answer holds the raw key, the only time it is shown.
#[utoipa::path(post, path = "/admin/api/keys", tag = "keys", request_body = CreateKey,
    responses(
        (status = 201, description = "Created; `api_key` is shown only now", body = CreatedKey),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 409, description = "A key with this name exists", body = ErrorBody),
    ))]
pub async fn create(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    AdminJson(body): AdminJson<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), Refusal> {
    let created = create_key(&state, &admin, body).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub(crate) async fn create_key(
    state: &AppState,
    admin: &Admin,
    body: CreateKey,
) -> Result<CreatedKey, Refusal> {
    check_name("key", &body.name)?;
    let raw = generate();
    let (prefix, suffix) = hint(&raw);
    let record = KeyRecord {
        name: body.name,
        key_hash: state.keys.hasher().hex_digest(&raw),
        prefix,
        suffix,
        group: body.group.unwrap_or_else(|| "default".to_owned()),
        enabled: body.enabled.unwrap_or(true),
        expires_at: body.expires_at,
        concurrency: body.concurrency.unwrap_or(0),
        rpm_limit: body.rpm_limit.unwrap_or(0),
        daily_spend_limit: body.daily_spend_limit,
        monthly_spend_limit: body.monthly_spend_limit,
        allowed_models: body.allowed_models,
        source: Source::Admin,
        created_at: now_secs(),
    };
    check_limits(&record, state)?;
    let name = record.name.clone();
    change(state, admin, "key.create", &name, async || {
        state.store.insert_key(&record).await.map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => {
                super::conflict(format!("a key named {:?} exists", record.name))
            }
            other => store_error(other),
        })?;
        state.keys.upsert(&record);
        state.limits.follow_key(&record, state.store.as_ref()).await;
        let key = view(&record);
        Ok(Changed {
            // The view only: the raw key is in the answer, never in the trail.
            after: trail(&key),
            before: None,
            answer: CreatedKey { key, api_key: raw },
        })
    })
    .await
}

/// One key.
#[utoipa::path(get, path = "/admin/api/keys/{name}", tag = "keys",
    params(("name" = String, Path, description = "Key name")),
    responses(
        (status = 200, description = "The key", body = KeyView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or the admin API is off", body = ErrorBody),
    ))]
pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match find(&state, &name).await {
        Ok(record) => Json(view(&record)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Changes a key's group, state or limits (not its secret).
#[utoipa::path(patch, path = "/admin/api/keys/{name}", tag = "keys", request_body = UpdateKey,
    params(("name" = String, Path, description = "Key name")),
    responses(
        (status = 200, description = "The key after the change", body = KeyView),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The key is declared in the config file", body = ErrorBody),
    ))]
pub async fn update(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    AdminJson(body): AdminJson<UpdateKey>,
) -> Result<Json<KeyView>, Refusal> {
    let record = update_key(&state, &admin, "key.update", &name, body).await?;
    Ok(Json(view(&record)))
}

pub(crate) async fn update_key(
    state: &AppState,
    admin: &Admin,
    action: &str,
    name: &str,
    body: UpdateKey,
) -> Result<KeyRecord, Refusal> {
    change(state, admin, action, name, async || {
        let mut record = find(state, name).await?;
        refuse_config_row("key", name, record.source)?;
        let before = trail(view(&record));
        if let Some(group) = body.group {
            record.group = group;
        }
        if let Some(enabled) = body.enabled {
            record.enabled = enabled;
        }
        if let Some(expires_at) = body.expires_at {
            record.expires_at = expires_at;
        }
        if let Some(concurrency) = body.concurrency {
            record.concurrency = concurrency;
        }
        if let Some(rpm) = body.rpm_limit {
            record.rpm_limit = rpm;
        }
        if let Some(limit) = body.daily_spend_limit {
            record.daily_spend_limit = limit;
        }
        if let Some(limit) = body.monthly_spend_limit {
            record.monthly_spend_limit = limit;
        }
        if let Some(models) = body.allowed_models {
            record.allowed_models = models;
        }
        check_limits(&record, state)?;
        state.store.update_key(&record).await.map_err(store_error)?;
        state.keys.upsert(&record);
        state.limits.follow_key(&record, state.store.as_ref()).await;
        Ok(Changed {
            after: trail(view(&record)),
            before,
            answer: record,
        })
    })
    .await
}

/// Disables a key: its next request gets 401.
#[utoipa::path(post, path = "/admin/api/keys/{name}/disable", tag = "keys",
    params(("name" = String, Path, description = "Key name")),
    responses(
        (status = 200, description = "The key, disabled", body = KeyView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The key is declared in the config file", body = ErrorBody),
    ))]
pub async fn disable(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<KeyView>, Refusal> {
    let body = UpdateKey {
        enabled: Some(false),
        ..UpdateKey::default()
    };
    let record = update_key(&state, &admin, "key.disable", &name, body).await?;
    Ok(Json(view(&record)))
}

/// Deletes a key; its usage rows stay.
#[utoipa::path(delete, path = "/admin/api/keys/{name}", tag = "keys",
    params(("name" = String, Path, description = "Key name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such key, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The key is declared in the config file", body = ErrorBody),
    ))]
pub async fn delete(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Refusal> {
    change(&state, &admin, "key.delete", &name, async || {
        let record = find(&state, &name).await?;
        refuse_config_row("key", &name, record.source)?;
        state.store.delete_key(&name).await.map_err(store_error)?;
        state.keys.remove(&name);
        Ok(Changed {
            answer: StatusCode::NO_CONTENT,
            before: trail(view(&record)),
            after: None,
        })
    })
    .await
}
