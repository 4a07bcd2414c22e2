//! `GET /admin/api/audit`: the audit trail, newest first, paged by cursor, filtered by action
//! prefix and time. The rows are written where the changes happen (`store::audit::record`).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{bad_request, store_error, Admin, AdminQuery, ErrorBody};
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::audit::MAX_PAGE;
use crate::store::{AuditFilter, AuditRow};

/// The longest action prefix a query may give.
const MAX_ACTION: usize = 200;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Actions starting with this (`key.` or `key.create`).
    #[param(max_length = 200)]
    pub action: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    /// Rows per page, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: rows older than it.
    pub cursor: Option<i64>,
}

/// One admin change.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// `admin-token`, `cli`, `dashboard (session …)`, `reload (SIGHUP)`, `reload (API)`,
    /// `reload (watch)`.
    pub actor: String,
    /// The client's address, when the change came over HTTP.
    pub client: Option<String>,
    /// E.g. `key.create`, `account.update`, `group.delete`, `config.reload`.
    pub action: String,
    /// The key, account or group name, or the configuration file.
    pub target: String,
    /// The thing before the change, secrets redacted (`null` for a creation).
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The thing after the change, secrets redacted (`null` for a deletion).
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        let parse = |text: Option<String>| {
            text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        };
        Self {
            id: r.id,
            at_ms: r.at_ms,
            actor: r.actor,
            client: r.client,
            action: r.action,
            target: r.target,
            before: parse(r.before),
            after: parse(r.after),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<i64>,
    pub limit: u32,
}

/// The audit trail, newest first.
#[utoipa::path(get, path = "/admin/api/audit", tag = "settings", params(AuditQuery),
    responses(
        (status = 200, description = "One page of the trail", body = AuditPage),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<AuditQuery>,
) -> Response {
    let outcome = async {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(bad_request("limit: must be 1–1000"));
        }
        if q.action
            .as_ref()
            .is_some_and(|a| a.chars().count() > MAX_ACTION)
        {
            return Err(bad_request("action: at most 200 characters"));
        }
        let filter = AuditFilter {
            action_prefix: q.action.filter(|a| !a.is_empty()),
            since_ms: q.since.map(|s| s.saturating_mul(1000)),
            until_ms: q.until.map(|s| s.saturating_mul(1000)),
            before_id: q.cursor,
        };
        let rows = state
            .store
            .list_audit(&filter, limit)
            .await
            .map_err(store_error)?;
        let full = rows.len() == usize::try_from(limit).unwrap_or(usize::MAX);
        let next_cursor = rows.last().filter(|_| full).map(|r| r.id);
        Ok::<_, Refusal>(AuditPage {
            entries: rows.into_iter().map(AuditEntry::from).collect(),
            next_cursor,
            limit,
        })
    }
    .await;
    match outcome {
        Ok(page) => Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}
