//! Model prices (USD per million tokens): the running table, and the prices set through the admin
//! API. They live in the store (`prices` rows), so on a shared store every instance prices alike:
//! a change is followed by the others like a change of keys (`server::follow`).
//!
//! A price the config declares is rewritten from the file at every start and reload, so it is
//! refused here (409) like other config rows; deleting an admin price puts the shipped default
//! (or no price) back.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde::Serialize;

use super::change::{change, trail, Changed};
use super::{bad_request, not_found, refuse_config_row, store_error, Admin, AdminJson, ErrorBody};
use crate::http::refusal::Refusal;
use crate::pricing::{PriceSpec, PriceTable};
use crate::state::AppState;
use crate::store::{now_secs, PriceRecord, Source};

/// Longest model name a price is set for.
const MAX_MODEL_LEN: usize = 200;

/// Where a price in the running table comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    /// Shipped with subrelay.
    Default,
    /// The config file's `prices:`.
    Config,
    /// Set through the admin API.
    Admin,
}

/// A model's price in effect, USD per million tokens.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PriceView {
    pub model: String,
    pub input: f64,
    /// Input served from the prompt cache.
    pub cached_input: f64,
    pub output: f64,
    /// Anthropic prompt-cache writes.
    pub cache_creation: f64,
    pub source: PriceSource,
    /// Unix seconds of the last change; absent for a shipped default.
    pub updated_at: Option<i64>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PriceList {
    pub prices: Vec<PriceView>,
}

fn stored_view(row: &PriceRecord) -> PriceView {
    let price = row.price.price();
    PriceView {
        model: row.model.clone(),
        input: price.input,
        cached_input: price.cached_input,
        output: price.output,
        cache_creation: price.cache_creation,
        source: match row.source {
            Source::Config => PriceSource::Config,
            Source::Admin => PriceSource::Admin,
        },
        updated_at: Some(row.updated_at),
    }
}

/// Every priced model: the shipped defaults, replaced or extended by the store's prices.
#[utoipa::path(get, path = "/admin/api/prices", tag = "prices",
    responses(
        (status = 200, description = "The price table in effect, by model", body = PriceList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn list(_: Admin, State(state): State<Arc<AppState>>) -> Response {
    let rows = match state.store.list_prices().await {
        Ok(rows) => rows,
        Err(e) => return store_error(e).into_response(),
    };
    let mut prices: Vec<PriceView> = PriceTable::defaults()
        .filter(|(model, _)| !rows.iter().any(|r| r.model == *model))
        .map(|(model, price)| PriceView {
            model: model.to_owned(),
            input: price.input,
            cached_input: price.cached_input,
            output: price.output,
            cache_creation: price.cache_creation,
            source: PriceSource::Default,
            updated_at: None,
        })
        .chain(rows.iter().map(stored_view))
        .collect();
    prices.sort_by(|a, b| a.model.cmp(&b.model));
    Json(PriceList { prices }).into_response()
}

/// A model name a price may be set for: 1–200 characters, no spaces or control characters.
fn check_model(model: &str) -> Result<(), Refusal> {
    if model.is_empty()
        || model.len() > MAX_MODEL_LEN
        || model.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad_request(format!(
            "model {model:?}: a model name is 1 to {MAX_MODEL_LEN} characters without spaces or control characters"
        )));
    }
    Ok(())
}

/// Sets a model's price (added to or replacing the shipped one), for every instance.
#[utoipa::path(put, path = "/admin/api/prices/{model}", tag = "prices", request_body = PriceSpec,
    params(("model" = String, Path, description = "Model name, as requests name it (after a group's model_map)")),
    responses(
        (status = 200, description = "Set", body = PriceView),
        (status = 400, description = "Invalid model name or price", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 409, description = "The config declares this model's price", body = ErrorBody),
    ))]
pub async fn set(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
    AdminJson(body): AdminJson<PriceSpec>,
) -> Result<Json<PriceView>, Refusal> {
    check_model(&model)?;
    if let Some((field, value)) = body.invalid_field() {
        return Err(bad_request(format!(
            "{field} = {value}: must be a price in USD per million tokens, 0 or more"
        )));
    }
    let record = change(&state, &admin, "price.set", &model, async || {
        let before = find(&state, &model).await?;
        if let Some(old) = &before {
            refuse_config_row("price", &model, old.source)?;
        }
        let record = PriceRecord {
            model: model.clone(),
            price: body,
            source: Source::Admin,
            updated_at: now_secs(),
        };
        state
            .store
            .upsert_price(&record)
            .await
            .map_err(store_error)?;
        take_prices(&state).await?;
        Ok(Changed {
            before: before.as_ref().and_then(|b| trail(stored_view(b))),
            after: trail(stored_view(&record)),
            answer: record,
        })
    })
    .await?;
    Ok(Json(stored_view(&record)))
}

#[utoipa::path(delete, path = "/admin/api/prices/{model}", tag = "prices",
    params(("model" = String, Path, description = "Model name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No price was set for this model, or the admin API is off", body = ErrorBody),
        (status = 409, description = "The config declares this model's price", body = ErrorBody),
    ))]
pub async fn delete(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Path(model): Path<String>,
) -> Result<StatusCode, Refusal> {
    change(&state, &admin, "price.delete", &model, async || {
        let before = find(&state, &model)
            .await?
            .ok_or_else(|| not_found("price set for a model", &model))?;
        refuse_config_row("price", &model, before.source)?;
        state
            .store
            .delete_price(&model)
            .await
            .map_err(store_error)?;
        take_prices(&state).await?;
        Ok(Changed {
            answer: StatusCode::NO_CONTENT,
            before: trail(stored_view(&before)),
            after: None,
        })
    })
    .await
}

async fn find(state: &AppState, model: &str) -> Result<Option<PriceRecord>, Refusal> {
    Ok(state
        .store
        .list_prices()
        .await
        .map_err(store_error)?
        .into_iter()
        .find(|p| p.model == model))
}

/// This instance's table takes the store's prices (the others follow the change counter).
async fn take_prices(state: &AppState) -> Result<(), Refusal> {
    let table = crate::store::startup::price_table(state.store.as_ref())
        .await
        .map_err(|e| {
            tracing::error!("admin API: {e}");
            Refusal::StoreUnavailable
        })?;
    state.prices.set(table);
    Ok(())
}
