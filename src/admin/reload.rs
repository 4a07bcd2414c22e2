//! `POST /admin/api/reload` (`subrelay reload`): the server re-reads its configuration file, as
//! on SIGHUP (`server/reload.rs`), and says what took effect.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{Admin, ErrorBody};
use crate::config::ReloadReport;
use crate::http::refusal::Refusal;
use crate::state::AppState;

/// Re-reads the configuration file the server started with. Accounts, API keys, groups, prices,
/// `gateway.*` and `log.level` take effect for the next request; requests in flight finish as
/// they started. A file that does not load is refused whole and the running configuration stays.
#[utoipa::path(post, path = "/admin/api/reload", tag = "settings",
    responses(
        (status = 200, description = "Reloaded: what took effect, and the keys that need a restart", body = ReloadReport),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 422, description = "The file was refused; the running configuration stays", body = ErrorBody),
    ))]
pub async fn reload(admin: Admin, State(state): State<Arc<AppState>>) -> Response {
    let Admin { actor } = admin;
    match state.reload.reload(actor.who, actor.client).await {
        Ok(report) => Json(report).into_response(),
        Err(why) => Refusal::ReloadRefused(why).into_response(),
    }
}
