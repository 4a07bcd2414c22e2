//! Stored accounts: create, get, update, delete. Credentials are write-only: they are sealed
//! before they reach the store and never appear in an answer. Config accounts are refused
//! (edit the file). A stored change is applied to the live pool at once (the next request sees
//! it; requests already on the account finish on it); the live pool's state and actions are in
//! [`super::pool`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::change::{change, Changed};
use super::{
    bad_request, check_name, conflict, not_found, refuse_config_row, store_error, Admin, AdminJson,
    ErrorBody,
};
use crate::domain::{AccountCredential, AccountKind, AccountSpec, Platform, Secret};
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::accounts::{to_record, to_spec};
use crate::store::{audit, AccountRecord, Source, StoreError};

/// A stored account, without its credentials.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StoredAccount {
    pub name: String,
    #[schema(value_type = String)]
    pub platform: Platform,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: AccountKind,
    pub base_url: String,
    pub chatgpt_account_id: Option<String>,
    /// Unix seconds the access token expires.
    pub expires_at: Option<i64>,
    pub priority: i32,
    pub concurrency: u32,
    pub groups: Vec<String>,
    pub enabled: bool,
    pub models: Option<Vec<String>>,
    pub model_map: BTreeMap<String, String>,
    /// The upstream APIs the account speaks (`responses`, `chat`, `messages`): as set, else the
    /// defaults of its platform and type.
    pub protocols: Vec<String>,
    pub source: Source,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn stored_view(a: &AccountRecord) -> StoredAccount {
    StoredAccount {
        name: a.name.clone(),
        platform: a.platform,
        kind: a.kind,
        base_url: a.base_url.clone(),
        chatgpt_account_id: a.chatgpt_account_id.clone(),
        expires_at: a.expires_at,
        priority: a.priority,
        concurrency: a.concurrency,
        groups: a.groups.clone(),
        enabled: a.enabled,
        models: a.models.clone(),
        model_map: a.model_map.clone(),
        protocols: match &a.protocols {
            Some(list) => list.as_slice(),
            None => AccountSpec::possible_protocols(a.platform, a.kind),
        }
        .iter()
        .map(|p| p.api_name().to_owned())
        .collect(),
        source: a.source,
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = String, pattern = "^(openai|anthropic)$")]
    pub platform: Platform,
    /// `apikey` or `oauth`.
    #[serde(rename = "type")]
    #[schema(value_type = String, pattern = "^(apikey|oauth)$")]
    pub kind: AccountKind,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Write-only. Required for `apikey`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Write-only. Required for `oauth`.
    #[serde(default)]
    pub access_token: Option<String>,
    /// Write-only.
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub chatgpt_account_id: Option<String>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Default `["default"]`; each group must exist.
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub model_map: Option<BTreeMap<String, String>>,
    /// Write-only: `http://`, `https://`, `socks5://` or `socks5h://`.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `responses`, `chat`, `messages`; absent = the defaults of the platform and type.
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub priority: Option<i32>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub models: Option<Vec<String>>,
    #[serde(default)]
    pub model_map: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Write-only: replaces the stored API key (`apikey` accounts).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Write-only: replaces the stored access token (`oauth` accounts).
    #[serde(default)]
    pub access_token: Option<String>,
    /// Write-only.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Write-only.
    #[serde(default)]
    pub proxy: Option<String>,
    /// `responses`, `chat`, `messages`; an empty list goes back to the defaults.
    #[serde(default)]
    pub protocols: Option<Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AccountChange {
    pub account: StoredAccount,
    /// When the change reaches the running pool.
    pub applies: String,
}

const APPLIES: &str = "now: the next request sees the change";

/// Puts a stored account into the live pool (replacing the one of the same name).
fn go_live(state: &AppState, spec: AccountSpec) -> Result<(), Refusal> {
    let client = crate::upstream::client(spec.proxy.as_ref(), state.gateway().connect_timeout)
        .map_err(|e| bad_request(format!("proxy: cannot build a client through it: {e}")))?;
    state.pool.upsert(spec, client).map_err(bad_request)
}

async fn find(state: &AppState, name: &str) -> Result<AccountRecord, Refusal> {
    state
        .store
        .list_accounts()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| not_found("account", name))
}

fn secret(field: &str, value: String) -> Result<Secret, Refusal> {
    if value.trim().is_empty() {
        return Err(bad_request(format!("{field}: must not be empty")));
    }
    Ok(Secret::new(value))
}

/// The account check the config file uses too, then the admin API's own: each group exists and
/// is served by the account's platform.
fn check_spec(spec: &AccountSpec, state: &AppState) -> Result<(), Refusal> {
    spec.validate()
        .map_err(|e| bad_request(format!("{}: {e}", e.field())))?;
    for group in &spec.groups {
        match state.keys.group_platform(group) {
            None => {
                return Err(bad_request(format!(
                    "group {group:?} does not exist; create it with POST /admin/api/groups"
                )))
            }
            Some(p) if p != spec.platform && !state.group_settings().translates(group) => {
                return Err(bad_request(format!(
                    "group {group:?} is served by {} accounts",
                    p.as_str()
                )))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn spec_from(body: CreateAccount) -> Result<AccountSpec, Refusal> {
    check_name("account", &body.name)?;
    let (platform, kind) = (body.platform, body.kind);
    let credential = match kind {
        AccountKind::ApiKey => AccountCredential::ApiKey {
            api_key: secret(
                "api_key",
                body.api_key
                    .ok_or_else(|| bad_request("api_key: required for type apikey"))?,
            )?,
        },
        AccountKind::OAuth => AccountCredential::OAuth {
            access_token: secret(
                "access_token",
                body.access_token
                    .ok_or_else(|| bad_request("access_token: required for type oauth"))?,
            )?,
            refresh_token: body
                .refresh_token
                .map(|r| secret("refresh_token", r))
                .transpose()?,
            chatgpt_account_id: body.chatgpt_account_id,
            expires_at: None,
        },
    };
    Ok(AccountSpec {
        name: body.name,
        platform,
        kind,
        credential,
        base_url: body
            .base_url
            .unwrap_or_else(|| kind.default_base_url(platform).to_owned())
            .trim_end_matches('/')
            .to_owned(),
        priority: body.priority.unwrap_or(0),
        concurrency: body.concurrency.unwrap_or(0),
        groups: body.groups.unwrap_or_else(|| vec!["default".to_owned()]),
        enabled: body.enabled.unwrap_or(true),
        models: body.models,
        model_map: body.model_map.unwrap_or_default(),
        proxy: body.proxy.map(|p| secret("proxy", p)).transpose()?,
        protocols: body.protocols.map(|l| protocols(&l)).transpose()?,
    })
}

/// `protocols` of a create or update body, by name.
fn protocols(names: &[String]) -> Result<Vec<crate::domain::Protocol>, Refusal> {
    names
        .iter()
        .map(|n| crate::domain::Protocol::from_api_name(n))
        .collect::<Result<_, _>>()
        .map_err(|e| bad_request(format!("protocols: {e}")))
}

fn sealed(spec: &AccountSpec, state: &AppState) -> Result<AccountRecord, Refusal> {
    to_record(spec, Source::Admin, &state.sealer).map_err(|e| {
        tracing::error!("admin API: {e}");
        Refusal::CannotSeal
    })
}

/// Stores a new account; it joins the live pool at once.
#[utoipa::path(post, path = "/admin/api/accounts", tag = "accounts", request_body = CreateAccount,
    responses(
        (status = 201, description = "Stored", body = AccountChange),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 409, description = "An account with this name exists", body = ErrorBody),
    ))]
pub async fn create(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    AdminJson(body): AdminJson<CreateAccount>,
) -> Result<(StatusCode, Json<AccountChange>), Refusal> {
    let spec = spec_from(body)?;
    check_spec(&spec, &state)?;
    let record = sealed(&spec, &state)?;
    let name = record.name.clone();
    change(&state, &admin, "account.create", &name, async || {
        state
            .store
            .insert_account(&record)
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    conflict(format!("an account named {:?} exists", record.name))
                }
                other => store_error(other),
            })?;
        go_live(&state, spec)?;
        Ok(Changed {
            answer: (),
            before: None,
            after: trail(&record, &[]),
        })
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(AccountChange {
            account: stored_view(&record),
            applies: APPLIES.to_owned(),
        }),
    ))
}

/// One stored account (never its credentials).
#[utoipa::path(get, path = "/admin/api/accounts/{name}", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "The account", body = StoredAccount),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account, or the admin API is off", body = ErrorBody),
    ))]
pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match find(&state, &name).await {
        Ok(record) => Json(stored_view(&record)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Changes a stored account; credentials given here replace the stored ones.
#[utoipa::path(patch, path = "/admin/api/accounts/{name}", tag = "accounts", request_body = UpdateAccount,
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 200, description = "Stored", body = AccountChange),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The account is declared in the config file", body = ErrorBody),
    ))]
pub async fn update(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    AdminJson(body): AdminJson<UpdateAccount>,
) -> Result<Json<AccountChange>, Refusal> {
    let updated = change(&state, &admin, "account.update", &name, async || {
        let record = find(&state, &name).await?;
        refuse_config_row("account", &name, record.source)?;
        let mut spec = to_spec(&record, &state.sealer).map_err(|e| {
            tracing::error!("admin API: {e}");
            conflict(format!(
                "account {name:?} cannot be decrypted with this key"
            ))
        })?;
        let replaced = replaced_secrets(&body);
        apply(&mut spec, body)?;
        check_spec(&spec, &state)?;
        let mut updated = sealed(&spec, &state)?;
        updated.created_at = record.created_at;
        state
            .store
            .upsert_account(&updated)
            .await
            .map_err(store_error)?;
        go_live(&state, spec)?;
        Ok(Changed {
            before: trail(&record, &[]),
            after: trail(&updated, &replaced),
            answer: updated,
        })
    })
    .await?;
    Ok(Json(AccountChange {
        account: stored_view(&updated),
        applies: APPLIES.to_owned(),
    }))
}

/// An account as the audit trail keeps it: the view without credentials, and which secret
/// fields this change replaced (named, their values never).
fn trail(record: &AccountRecord, replaced: &[&str]) -> Option<serde_json::Value> {
    let mut value = serde_json::to_value(stored_view(record)).ok()?;
    if let Some(map) = value.as_object_mut() {
        for field in replaced {
            map.insert((*field).to_owned(), audit::REDACTED.into());
        }
    }
    Some(value)
}

/// The write-only fields an update body sets.
fn replaced_secrets(body: &UpdateAccount) -> Vec<&'static str> {
    [
        ("api_key", body.api_key.is_some()),
        ("access_token", body.access_token.is_some()),
        ("refresh_token", body.refresh_token.is_some()),
        ("proxy", body.proxy.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

fn apply(spec: &mut AccountSpec, body: UpdateAccount) -> Result<(), Refusal> {
    if let Some(v) = body.enabled {
        spec.enabled = v;
    }
    if let Some(v) = body.priority {
        spec.priority = v;
    }
    if let Some(v) = body.concurrency {
        spec.concurrency = v;
    }
    if let Some(v) = body.groups {
        spec.groups = v;
    }
    if let Some(v) = body.models {
        spec.models = Some(v);
    }
    if let Some(v) = body.model_map {
        spec.model_map = v;
    }
    if let Some(v) = body.base_url {
        spec.base_url = v.trim_end_matches('/').to_owned();
    }
    if let Some(v) = body.proxy {
        spec.proxy = Some(secret("proxy", v)?);
    }
    if let Some(v) = body.protocols {
        spec.protocols = (!v.is_empty()).then(|| protocols(&v)).transpose()?;
    }
    match &mut spec.credential {
        AccountCredential::ApiKey { api_key } => {
            if body.access_token.is_some() || body.refresh_token.is_some() {
                return Err(bad_request(
                    "access_token/refresh_token: this is an apikey account",
                ));
            }
            if let Some(v) = body.api_key {
                *api_key = secret("api_key", v)?;
            }
        }
        AccountCredential::OAuth {
            access_token,
            refresh_token,
            ..
        } => {
            if body.api_key.is_some() {
                return Err(bad_request("api_key: this is an oauth account"));
            }
            if let Some(v) = body.access_token {
                *access_token = secret("access_token", v)?;
            }
            if let Some(v) = body.refresh_token {
                *refresh_token = Some(secret("refresh_token", v)?);
            }
        }
    }
    Ok(())
}

/// Deletes a stored account; it leaves the live pool at once.
#[utoipa::path(delete, path = "/admin/api/accounts/{name}", tag = "accounts",
    params(("name" = String, Path, description = "Account name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such account, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The account is declared in the config file", body = ErrorBody),
    ))]
pub async fn delete(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Refusal> {
    change(&state, &admin, "account.delete", &name, async || {
        let record = find(&state, &name).await?;
        refuse_config_row("account", &name, record.source)?;
        state
            .store
            .delete_account(&name)
            .await
            .map_err(store_error)?;
        state.pool.remove(&name);
        Ok(Changed {
            answer: StatusCode::NO_CONTENT,
            before: trail(&record, &[]),
            after: None,
        })
    })
    .await
}
