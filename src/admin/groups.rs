//! Account groups (pools), their platform and routing settings (`translate`, `model_map`,
//! `model_fallback`): list, get, create, change, delete. A key names a group; the group's
//! platform decides which protocol the key reaches, unless the group translates. A change
//! applies to the next request at once (and, on a shared store, on every instance through the
//! change follower).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::change::{change, trail, Changed};
use super::{
    bad_request, check_name, conflict, not_found, refuse_config_row, store_error, Admin, AdminJson,
    ErrorBody,
};
use crate::domain::Platform;
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::{now_secs, GroupRecord, GroupSettingsRecord, Source};

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = String)]
    pub platform: Platform,
    pub source: Source,
    pub created_at: i64,
    /// A key of the group may call every client API; accounts that do not speak it get the
    /// request translated.
    pub translate: bool,
    /// Client model name (`*` wildcards) → upstream model name, before account selection.
    pub model_map: BTreeMap<String, String>,
    /// Model → the models to try instead, in order, when no account can serve it now.
    pub model_fallback: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupList {
    pub groups: Vec<GroupView>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    #[schema(pattern = r"^[A-Za-z0-9._@-]{1,64}$")]
    pub name: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = String, pattern = "^(openai|anthropic)$")]
    pub platform: Platform,
    /// Default `false`.
    #[serde(default)]
    pub translate: bool,
    /// Keys and values: 1–256 bytes, at most 256 entries.
    #[serde(default)]
    pub model_map: BTreeMap<String, String>,
    /// 1–8 models per model, none falling back to itself.
    #[serde(default)]
    pub model_fallback: BTreeMap<String, Vec<String>>,
}

/// What a change sets; a field left out stays as it is, a map given replaces the old one whole.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroup {
    pub translate: Option<bool>,
    pub model_map: Option<BTreeMap<String, String>>,
    pub model_fallback: Option<BTreeMap<String, Vec<String>>>,
}

fn view(g: GroupRecord) -> GroupView {
    GroupView {
        name: g.name,
        platform: g.platform,
        source: g.source,
        created_at: g.created_at,
        translate: g.settings.translate,
        model_map: g.settings.model_map,
        model_fallback: g.settings.model_fallback,
    }
}

/// The checks the config file's groups get, as a 400 naming the field.
fn check_settings(settings: &GroupSettingsRecord) -> Result<(), Refusal> {
    crate::domain::ModelMap::new(&settings.model_map)
        .map_err(|m| bad_request(format!("model_map: {m}")))?;
    crate::domain::check_model_fallback(&settings.model_fallback).map_err(|(model, m)| {
        if model.is_empty() {
            bad_request(format!("model_fallback: {m}"))
        } else {
            bad_request(format!("model_fallback.{model}: {m}"))
        }
    })
}

/// The running snapshot takes `group`'s settings (`None`: it was deleted) for the next request.
/// Called with `snapshot_writes` held, after the store took the change.
fn apply_settings(state: &AppState, name: &str, group: Option<&GroupRecord>) {
    let mut settings = (*state.group_settings()).clone();
    settings.routing.remove(name);
    settings.model_fallback.remove(name);
    if let Some(group) = group {
        let one = crate::store::startup::group_settings(std::slice::from_ref(group));
        settings.routing.extend(one.routing);
        settings.model_fallback.extend(one.model_fallback);
    }
    state.groups.set(settings);
    crate::relay::warm_token_counter(state);
}

async fn find(state: &AppState, name: &str) -> Result<GroupRecord, Refusal> {
    state
        .store
        .list_groups()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|g| g.name == name)
        .ok_or_else(|| not_found("group", name))
}

/// Every group.
#[utoipa::path(get, path = "/admin/api/groups", tag = "groups",
    responses(
        (status = 200, description = "Every group", body = GroupList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    match state.store.list_groups().await {
        Ok(groups) => Json(GroupList {
            groups: groups.into_iter().map(view).collect(),
        })
        .into_response(),
        Err(e) => store_error(e).into_response(),
    }
}

/// One group.
#[utoipa::path(get, path = "/admin/api/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such group, or the admin API is off", body = ErrorBody),
    ))]
pub async fn get(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Response {
    match find(&state, &name).await {
        Ok(group) => Json(view(group)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Creates a group.
#[utoipa::path(post, path = "/admin/api/groups", tag = "groups", request_body = CreateGroup,
    responses(
        (status = 201, description = "Created", body = GroupView),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 409, description = "A group with this name exists", body = ErrorBody),
    ))]
pub async fn create(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    AdminJson(body): AdminJson<CreateGroup>,
) -> Result<(StatusCode, Json<GroupView>), Refusal> {
    check_name("group", &body.name)?;
    let platform = body.platform;
    let settings = GroupSettingsRecord {
        translate: body.translate,
        model_map: body.model_map,
        model_fallback: body.model_fallback,
    };
    check_settings(&settings)?;
    let name = body.name;
    let record = change(&state, &admin, "group.create", &name, async || {
        let exists = state
            .store
            .list_groups()
            .await
            .map_err(store_error)?
            .iter()
            .any(|g| g.name == name);
        if exists {
            return Err(conflict(format!("a group named {name:?} exists")));
        }
        let record = GroupRecord {
            name: name.clone(),
            platform,
            source: Source::Admin,
            created_at: now_secs(),
            settings,
        };
        state
            .store
            .upsert_group(&record)
            .await
            .map_err(store_error)?;
        state.keys.set_group(&record.name, platform);
        apply_settings(&state, &record.name, Some(&record));
        Ok(Changed {
            before: None,
            after: trail(view(record.clone())),
            answer: record,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view(record))))
}

/// Changes a group's `translate`, `model_map` or `model_fallback` (not its platform); the next
/// request uses them.
#[utoipa::path(patch, path = "/admin/api/groups/{name}", tag = "groups", request_body = UpdateGroup,
    params(("name" = String, Path, description = "Group name")),
    responses(
        (status = 200, description = "The group after the change", body = GroupView),
        (status = 400, description = "Invalid fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such group, or the admin API is off", body = ErrorBody),
        (status = 409, description = "Declared in the config, or it holds accounts of the other platform and would stop translating", body = ErrorBody),
    ))]
pub async fn update(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    AdminJson(body): AdminJson<UpdateGroup>,
) -> Result<Json<GroupView>, Refusal> {
    let record = change(&state, &admin, "group.update", &name, async || {
        let mut record = find(&state, &name).await?;
        refuse_config_row("group", &name, record.source)?;
        let before = trail(view(record.clone()));
        if let Some(translate) = body.translate {
            record.settings.translate = translate;
        }
        if let Some(map) = body.model_map {
            record.settings.model_map = map;
        }
        if let Some(fallback) = body.model_fallback {
            record.settings.model_fallback = fallback;
        }
        check_settings(&record.settings)?;
        if !record.settings.translate {
            // Only a translating group may hold accounts of both platforms (as in the config).
            let accounts = state.store.list_accounts().await.map_err(store_error)?;
            if let Some(other) = accounts
                .iter()
                .find(|a| a.groups.contains(&name) && a.platform != record.platform)
            {
                return Err(conflict(format!(
                    "translate: group {name:?} holds the {} account {:?}; move it out first",
                    other.platform.as_str(),
                    other.name
                )));
            }
        }
        state
            .store
            .upsert_group(&record)
            .await
            .map_err(store_error)?;
        apply_settings(&state, &name, Some(&record));
        Ok(Changed {
            before,
            after: trail(view(record.clone())),
            answer: record,
        })
    })
    .await?;
    Ok(Json(view(record)))
}

/// Deletes a group no key and no account uses.
#[utoipa::path(delete, path = "/admin/api/groups/{name}", tag = "groups",
    params(("name" = String, Path, description = "Group name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such group, or the admin API is off", body = ErrorBody),
        (status = 409, description = "Declared in the config, or still used", body = ErrorBody),
    ))]
pub async fn delete(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Refusal> {
    delete_group(&state, &admin, &name).await
}

pub(crate) async fn delete_group(
    state: &AppState,
    admin: &Admin,
    name: &str,
) -> Result<StatusCode, Refusal> {
    change(state, admin, "group.delete", name, async || {
        let group = find(state, name).await?;
        refuse_config_row("group", name, group.source)?;
        let keys = state.store.list_keys().await.map_err(store_error)?;
        let accounts = state.store.list_accounts().await.map_err(store_error)?;
        let in_use = keys.iter().any(|k| k.group == name)
            || accounts.iter().any(|a| a.groups.iter().any(|g| g == name));
        if in_use {
            return Err(conflict(format!(
                "group {name:?} is still used by a key or an account"
            )));
        }
        state.store.delete_group(name).await.map_err(store_error)?;
        state.keys.remove_group(name);
        apply_settings(state, name, None);
        Ok(Changed {
            answer: StatusCode::NO_CONTENT,
            before: trail(view(group)),
            after: None,
        })
    })
    .await
}
