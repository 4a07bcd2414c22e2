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
use crate::store::{self, StatusFilter, TotalsBy, UsageFilter};

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

/// One request's usage, as the admin API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageRow {
    pub request_id: String,
    /// Unix milliseconds the record was taken.
    pub at_ms: i64,
    pub key: String,
    pub account: Option<String>,
    pub endpoint: String,
    pub model: String,
    /// The model the client asked for, when the group's `model_map` changed it (`model` is the
    /// upstream model the row is priced by).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub success: bool,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    /// False when the model has no price: tokens are recorded, the cost is 0.
    pub priced: bool,
    pub duration_ms: i64,
    pub ttft_ms: Option<i64>,
    /// Accounts tried.
    pub attempts: i32,
    pub client_disconnected: bool,
    /// `http`, or `websocket` for one turn of a Responses WebSocket.
    pub transport: String,
}

impl From<store::UsageRow> for UsageRow {
    fn from(r: store::UsageRow) -> Self {
        Self {
            request_id: r.request_id,
            at_ms: r.at_ms,
            key: r.key,
            account: r.account,
            endpoint: r.endpoint,
            model: r.model,
            client_model: r.client_model,
            stream: r.stream,
            status: r.status,
            success: r.success,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            cache_creation_tokens: r.cache_creation_tokens,
            output_tokens: r.output_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost_usd: r.cost_usd,
            priced: r.priced,
            duration_ms: r.duration_ms,
            ttft_ms: r.ttft_ms,
            attempts: r.attempts,
            client_disconnected: r.client_disconnected,
            transport: r.transport,
        }
    }
}

/// Requests, tokens and cost of one day or one key, as the admin API shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    /// The day (`YYYY-MM-DD`, UTC) or the key name.
    pub bucket: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

impl From<store::UsageTotals> for UsageTotals {
    fn from(t: store::UsageTotals) -> Self {
        Self {
            bucket: t.bucket,
            requests: t.requests,
            input_tokens: t.input_tokens,
            cached_input_tokens: t.cached_input_tokens,
            output_tokens: t.output_tokens,
            cost_usd: t.cost_usd,
        }
    }
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
            rows: rows.into_iter().map(UsageRow::from).collect(),
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
            totals: totals.into_iter().map(UsageTotals::from).collect(),
        })
    }
    .await;
    match outcome {
        Ok(list) => Json(list).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin API's row is its own type now; its JSON is what the store row's was.
    #[test]
    fn a_row_on_the_wire_is_the_stored_row() {
        let stored = store::UsageRow {
            request_id: "0190-abc".into(),
            at_ms: 1_700_000_000_123,
            key: "alice".into(),
            account: Some("acct".into()),
            endpoint: "responses".into(),
            model: "gpt-5".into(),
            client_model: Some("gpt-5.5".into()),
            stream: true,
            status: 200,
            success: true,
            input_tokens: 10,
            cached_input_tokens: 2,
            cache_creation_tokens: 1,
            output_tokens: 5,
            reasoning_tokens: 3,
            cost_usd: 0.25,
            priced: true,
            duration_ms: 900,
            ttft_ms: Some(120),
            attempts: 1,
            client_disconnected: false,
            transport: "http".to_owned(),
        };
        let before = serde_json::to_value(&stored).unwrap();
        assert_eq!(
            serde_json::to_value(UsageRow::from(stored)).unwrap(),
            before
        );
    }
}
