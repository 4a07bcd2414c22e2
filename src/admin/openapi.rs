//! The admin API's OpenAPI document, generated from the handlers' annotations (so it cannot
//! drift from the code) and served at `/admin/api/openapi.json`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::dashboard::{settings, signin};
use super::{accounts, admin_on, audit, groups, keys, pool, prices, reload, usage};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "subrelay admin API",
        description = "Groups, API keys, accounts, prices and usage of a subrelay gateway. Every call needs `Authorization: Bearer <admin.token>` (the dashboard at `/admin/` sends its session cookie instead, with `X-CSRF-Token` on state-changing calls); errors are `{\"error\":{\"message\",\"type\",\"code\"}}`."
    ),
    paths(
        pool::list_accounts,
        pool::reset_account,
        pool::test_account,
        pool::refresh_account,
        accounts::create,
        accounts::get,
        accounts::update,
        accounts::delete,
        signin::start,
        signin::finish,
        groups::list,
        groups::create,
        groups::get,
        groups::update,
        groups::delete,
        keys::list,
        keys::create,
        keys::get,
        keys::update,
        keys::disable,
        keys::delete,
        prices::list,
        prices::set,
        prices::delete,
        usage::list,
        usage::totals,
        settings::get,
        reload::reload,
        audit::list,
    ),
    modifiers(&AdminToken),
    security(("admin_token" = []))
)]
pub struct AdminApi;

struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document itself needs no token (it holds no secret), only a running admin API.
pub async fn serve(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    Json(AdminApi::openapi()).into_response()
}
