//! Account groups (pools) and their platform: list, create, delete. A key names a group; the
//! group's platform decides which protocol the key reaches.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{
    check_name, conflict, not_found, refuse_config_row, store_error, Admin, AdminJson, ErrorBody,
};
use crate::domain::Platform;
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::{audit, now_secs, GroupRecord, Source};

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupView {
    pub name: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = String)]
    pub platform: Platform,
    pub source: Source,
    pub created_at: i64,
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
}

fn view(g: GroupRecord) -> GroupView {
    GroupView {
        name: g.name,
        platform: g.platform,
        source: g.source,
        created_at: g.created_at,
    }
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
) -> Response {
    let outcome = async {
        check_name("group", &body.name)?;
        let platform = body.platform;
        let exists = state
            .store
            .list_groups()
            .await
            .map_err(store_error)?
            .iter()
            .any(|g| g.name == body.name);
        if exists {
            return Err(conflict(format!("a group named {:?} exists", body.name)));
        }
        let record = GroupRecord {
            name: body.name,
            platform,
            source: Source::Admin,
            created_at: now_secs(),
        };
        let _snapshot = state.snapshot_writes.lock().await;
        state
            .store
            .upsert_group(&record)
            .await
            .map_err(store_error)?;
        state.keys.set_group(&record.name, platform);
        audit::record(
            state.store.as_ref(),
            &admin.actor,
            "group.create",
            &record.name,
            None,
            serde_json::to_value(view(record.clone())).ok(),
        )
        .await;
        Ok::<_, Refusal>(record)
    }
    .await;
    match outcome {
        Ok(record) => (StatusCode::CREATED, Json(view(record))).into_response(),
        Err(e) => e.into_response(),
    }
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
) -> Response {
    let outcome = async {
        let group = state
            .store
            .list_groups()
            .await
            .map_err(store_error)?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or_else(|| not_found("group", &name))?;
        refuse_config_row("group", &name, group.source)?;
        let keys = state.store.list_keys().await.map_err(store_error)?;
        let accounts = state.store.list_accounts().await.map_err(store_error)?;
        if keys.iter().any(|k| k.group == name) || accounts.iter().any(|a| a.groups.contains(&name))
        {
            return Err(conflict(format!(
                "group {name:?} is still used by a key or an account"
            )));
        }
        let _snapshot = state.snapshot_writes.lock().await;
        state.store.delete_group(&name).await.map_err(store_error)?;
        state.keys.remove_group(&name);
        audit::record(
            state.store.as_ref(),
            &admin.actor,
            "group.delete",
            &name,
            serde_json::to_value(view(group)).ok(),
            None,
        )
        .await;
        Ok::<_, Refusal>(())
    }
    .await;
    match outcome {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
