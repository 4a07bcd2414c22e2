//! The admin API under `/admin/api/`: the pool's live state, and the store's groups, keys,
//! accounts, prices and usage. Protected by `admin.token` (Bearer); without a token configured it is
//! off (404 everywhere). `subrelay accounts`, `subrelay keys` and `subrelay usage` are clients.
//!
//! Every error is the JSON shape `{"error":{"message","type","code"}}`, extractor rejections
//! included ([`AdminJson`], [`AdminQuery`]). The OpenAPI document is generated from these
//! handlers ([`openapi`]) and served at `/admin/api/openapi.json`.

mod accounts;
mod audit;
mod change;
pub mod dashboard;
mod groups;
mod keys;
pub mod openapi;
mod pool;
mod prices;
mod reload;
mod usage;

/// Changes behind the admin API's handlers, for the snapshot lock's tests
/// (`server::snapshot_tests`).
#[cfg(test)]
pub(crate) use groups::delete_group;
#[cfg(test)]
pub(crate) use keys::{create_key, update_key, UpdateKey};

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::request::Parts;
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::refusal::Refusal;
use crate::http::throttle;
use crate::state::AppState;
use crate::store::audit::Actor;
use crate::store::{Source, StoreError};

/// The admin API and the dashboard; `console` holds the dashboard's sessions and sign-in flows.
pub fn routes(console: Arc<dashboard::Console>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/api/openapi.json", get(openapi::serve))
        .route(
            "/admin/api/accounts",
            get(pool::list_accounts).post(accounts::create),
        )
        .route(
            "/admin/api/accounts/{name}",
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete),
        )
        .route(
            "/admin/api/accounts/{name}/reset",
            post(pool::reset_account),
        )
        .route("/admin/api/accounts/{name}/test", post(pool::test_account))
        .route(
            "/admin/api/accounts/{name}/refresh",
            post(pool::refresh_account),
        )
        .route("/admin/api/groups", get(groups::list).post(groups::create))
        .route(
            "/admin/api/groups/{name}",
            get(groups::get)
                .patch(groups::update)
                .delete(groups::delete),
        )
        .route("/admin/api/keys", get(keys::list).post(keys::create))
        .route(
            "/admin/api/keys/{name}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/admin/api/keys/{name}/disable", post(keys::disable))
        .route("/admin/api/prices", get(prices::list))
        .route(
            "/admin/api/prices/{model}",
            axum::routing::put(prices::set).delete(prices::delete),
        )
        .route("/admin/api/usage", get(usage::list))
        .route("/admin/api/usage/totals", get(usage::totals))
        .route("/admin/api/reload", post(reload::reload))
        .route("/admin/api/audit", get(audit::list))
        .merge(dashboard::routes())
        .layer(axum::Extension(console))
}

/// Proof that the request carried the admin token, or (without an `Authorization` header) a
/// live dashboard session and, for a state-changing method, its CSRF token from this origin.
/// Taking it as a handler argument is the whole authorization; the comparison takes the same
/// time whatever the guess. `actor` says who it was, for the audit trail: `admin-token`, `cli`
/// (the token, sent by `subrelay`'s own client), or `dashboard (session …)`.
pub struct Admin {
    pub actor: Actor,
}

/// The `User-Agent` of `subrelay`'s own admin client (src/cli/admin_client.rs).
pub const CLI_AGENT: &str = "subrelay-cli/";

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client = state.clients.client_of(&parts.extensions, &parts.headers);
        let actor = |who: String| Admin {
            actor: Actor::new(who, Some(client.to_string())),
        };
        if !parts.headers.contains_key(http::header::AUTHORIZATION) {
            admin_on(state).map_err(IntoResponse::into_response)?;
            let console = parts.extensions.get::<Arc<dashboard::Console>>();
            if let Some(console) = console {
                console.sessions.load(&parts.headers).await;
            }
            if let Some(outcome) = console.and_then(|console| {
                dashboard::authorize_session(&console.sessions, &parts.method, &parts.headers)
            }) {
                return outcome.map(actor).map_err(IntoResponse::into_response);
            }
        }
        authorize(state, &parts.headers, client).map_err(IntoResponse::into_response)?;
        let from_cli = parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|agent| agent.starts_with(CLI_AGENT));
        Ok(actor(
            if from_cli { "cli" } else { "admin-token" }.to_owned(),
        ))
    }
}

fn authorize(state: &AppState, headers: &HeaderMap, client: IpAddr) -> Result<(), Refusal> {
    admin_on(state)?;
    let Some(expected) = &state.admin_token else {
        return Err(admin_off());
    };
    let throttle = &state.clients.admin_failures;
    let presented = headers.get(http::header::AUTHORIZATION);
    if presented.is_some() {
        throttle::gate(throttle, client)?;
    }
    let given = presented
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let same =
        Sha256::digest(given.as_bytes()).ct_eq(&Sha256::digest(expected.expose().as_bytes()));
    if bool::from(same) {
        throttle.succeeded(client);
        Ok(())
    } else {
        // A request without any token is not a guess (a browser, a forgotten flag).
        if presented.is_some() {
            throttle::record_failure(throttle, client, "admin API token");
        }
        Err(Refusal::InvalidAdminToken)
    }
}

fn admin_on(state: &AppState) -> Result<(), Refusal> {
    if state.admin_token.is_some() {
        Ok(())
    } else {
        Err(admin_off())
    }
}

fn admin_off() -> Refusal {
    Refusal::AdminOff
}

/// A JSON body whose rejection (bad JSON, wrong field types) is a 400 in the admin error shape.
pub struct AdminJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AdminJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(bad_request(json_problem(&rejection)).into_response()),
        }
    }
}

fn json_problem(rejection: &JsonRejection) -> String {
    format!("invalid JSON body: {}", rejection.body_text())
}

/// Query parameters whose rejection is a 400 in the admin error shape.
pub struct AdminQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AdminQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // A NUL character is no key, account or model name, and PostgreSQL refuses it in any
        // text it is given: without this, a filter with one answered 503 there (SQLite took it).
        if parts.uri.query().is_some_and(|q| q.contains("%00")) {
            return Err(
                bad_request("invalid query: a value contains a NUL character").into_response(),
            );
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(bad_request(query_problem(&rejection)).into_response()),
        }
    }
}

fn query_problem(rejection: &QueryRejection) -> String {
    format!("invalid query: {}", rejection.body_text())
}

/// The error body of every admin answer that is not a success (for the OpenAPI document).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
    pub param: Option<String>,
}

pub fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal::AdminBadRequest(message.into())
}

pub fn not_found(what: &'static str, name: &str) -> Refusal {
    Refusal::AdminNotFound {
        what,
        name: name.to_owned(),
    }
}

pub fn conflict(message: impl Into<String>) -> Refusal {
    Refusal::Conflict(message.into())
}

/// Config rows are rewritten from the file at every start: an edit here would vanish.
pub fn refuse_config_row(what: &'static str, name: &str, source: Source) -> Result<(), Refusal> {
    if source == Source::Config {
        return Err(Refusal::DeclaredInConfig {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub fn store_error(error: StoreError) -> Refusal {
    match error {
        StoreError::NotFound(name) => Refusal::StoreNotFound(name),
        StoreError::Conflict(what) => conflict(format!("already exists ({what})")),
        StoreError::Database(e) => {
            if let Some(metrics) = crate::metrics::get() {
                metrics.store_error();
            }
            tracing::error!("admin API: store error: {e}");
            Refusal::StoreUnavailable
        }
    }
}

pub use crate::domain::{valid_name, NAME_RULE};

/// [`valid_name`], as the admin API's 400.
pub fn check_name(what: &str, name: &str) -> Result<(), Refusal> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(bad_request(format!("{what} name {name:?}: {NAME_RULE}")))
    }
}
