//! Usage: the rows (filtered by key, account, model and time, newest first, paginated) and
//! totals per UTC day or per key.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{bad_request, store_error, Admin, AdminQuery, ErrorBody};
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::{StatusFilter, TotalsBy, UsageFilter, UsageRow, UsageTotals};

const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Key name.
    pub key: Option<String>,
    /// Account name.
    pub account: Option<String>,
    pub model: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub to: Option<i64>,
    /// `ok`, `failed`, or the status code the client got (e.g. `429`).
    pub status: Option<String>,
    /// Rows per page, 1–1000 (default 100).
    pub limit: Option<u32>,
    /// Rows to skip (default 0).
    pub offset: Option<u64>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TotalsQuery {
    /// `day` (UTC, default) or `key`.
    pub by: Option<String>,
    pub key: Option<String>,
    pub account: Option<String>,
    pub model: Option<String>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub to: Option<i64>,
    /// `ok`, `failed`, or the status code the client got (e.g. `429`).
    pub status: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsagePage {
    pub rows: Vec<UsageRow>,
    /// Rows matching the filter, on every page.
    pub total: u64,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct UsageTotalsList {
    /// `day` or `key`.
    pub by: String,
    pub totals: Vec<UsageTotals>,
}

fn filter(
    key: Option<String>,
    account: Option<String>,
    model: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    status: Option<String>,
) -> Result<UsageFilter, Refusal> {
    Ok(UsageFilter {
        key,
        account,
        model,
        from_ms: from.map(|s| s.saturating_mul(1000)),
        to_ms: to.map(|s| s.saturating_mul(1000)),
        status: status
            .map(|s| s.parse::<StatusFilter>())
            .transpose()
            .map_err(bad_request)?,
    })
}

/// Usage rows, newest first.
#[utoipa::path(get, path = "/admin/api/usage", tag = "usage", params(UsageQuery),
    responses(
        (status = 200, description = "One page of rows", body = UsagePage),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list(
    _: Admin,
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<UsageQuery>,
) -> Response {
    let outcome = async {
        let limit = q.limit.unwrap_or(100);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(bad_request("limit: must be 1–1000"));
        }
        let offset = q.offset.unwrap_or(0);
        let filter = filter(q.key, q.account, q.model, q.from, q.to, q.status)?;
        let rows = state
            .store
            .list_usage(&filter, limit, offset)
            .await
            .map_err(store_error)?;
        let total = state
            .store
            .count_usage(&filter)
            .await
            .map_err(store_error)?;
        Ok::<_, Refusal>(UsagePage {
            rows,
            total,
            limit,
            offset,
        })
    }
    .await;
    match outcome {
        Ok(page) => Json(page).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Requests, tokens and cost per UTC day or per key.
#[utoipa::path(get, path = "/admin/api/usage/totals", tag = "usage", params(TotalsQuery),
    responses(
        (status = 200, description = "Totals", body = UsageTotalsList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn totals(
    _: Admin,
    State(state): State<Arc<AppState>>,
    AdminQuery(q): AdminQuery<TotalsQuery>,
) -> Response {
    let outcome = async {
        let (by, label) = match q.by.as_deref().unwrap_or("day") {
            "day" => (TotalsBy::Day, "day"),
            "key" => (TotalsBy::Key, "key"),
            _ => return Err(bad_request("by: must be day or key")),
        };
        let filter = filter(q.key, q.account, q.model, q.from, q.to, q.status)?;
        let totals = state
            .store
            .usage_totals(&filter, by)
            .await
            .map_err(store_error)?;
        Ok::<_, Refusal>(UsageTotalsList {
            by: label.to_owned(),
            totals,
        })
    }
    .await;
    match outcome {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}
