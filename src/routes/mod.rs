//! The router: every path the gateway serves and the handler behind it. The relayed protocol
//! routes go to [`crate::relay::handle`], `/admin/...` to [`crate::admin::routes`], and the
//! small ones (`/v1/models`, `/healthz`, `/readyz` in `ready.rs`, `/`, the 404 and 405
//! fallbacks) are answered here.
//!
//! [`app`] builds the router from the shared state, so tests can drive it without a socket. It
//! sits above `http` (the request-side parts every route shares), `relay` and `admin`.

mod models;
pub mod ready;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::http::access;
use crate::http::refusal::Refusal;
use crate::relay::{handle, Endpoint};
use crate::state::AppState;

/// Path prefixes under which the Responses API is served: OpenAI SDKs use `/v1`, some clients
/// none, and Codex's ChatGPT mode the backend's own path.
const RESPONSES_PREFIXES: &[&str] = &["/v1", "", "/backend-api/codex"];

/// The whole router; `console` is the dashboard's runtime state ([`crate::admin::routes`]).
pub fn app(state: Arc<AppState>, console: Arc<crate::admin::dashboard::Console>) -> Router {
    // The routes that do not write their own access line get the access-log layer; the relayed
    // ones write theirs (they know the key, account and streamed bytes), as do the fallbacks.
    let logged_by_layer = Router::new()
        .route("/v1/models", get(models::list))
        .route("/models", get(models::list))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready::readyz))
        .route("/", get(root).head(root))
        .merge(crate::admin::routes(console))
        .layer(axum::middleware::from_fn_with_state(
            access::AccessLogOn(state.access_log),
            access::layer,
        ));
    let mut router = Router::new();
    for prefix in RESPONSES_PREFIXES {
        router = router
            .route(
                &format!("{prefix}/responses"),
                post(responses).get(responses_websocket),
            )
            .route(&format!("{prefix}/responses/compact"), post(compact));
    }
    router
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .merge(logged_by_layer)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn responses(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Responses, request).await
}

/// `GET` with `Upgrade: websocket`: Codex's Responses WebSocket (relay/websocket).
async fn responses_websocket(State(state): State<Arc<AppState>>, request: Request) -> Response {
    crate::relay::websocket::upgrade(state, request).await
}

async fn compact(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Compact, request).await
}

async fn chat(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Chat, request).await
}

async fn messages(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::Messages, request).await
}

async fn count_tokens(State(state): State<Arc<AppState>>, request: Request) -> Response {
    handle(state, Endpoint::CountTokens, request).await
}

async fn healthz() -> impl IntoResponse {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// Clients probe `/` (Claude Code sends `HEAD /`) before they start.
async fn root() -> impl IntoResponse {
    "subrelay\n"
}

/// Paths under `/v1/messages` answer in Anthropic's shape, everything else in OpenAI's.
fn shape_of(path: &str) -> crate::protocol::errors::ErrorShape {
    if path.starts_with("/v1/messages") {
        crate::protocol::errors::ErrorShape::Anthropic
    } else {
        crate::protocol::errors::ErrorShape::OpenAi
    }
}

async fn not_found(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = tokio::time::Instant::now();
    let refusal = Refusal::UnknownRoute {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    let response = refusal.response(shape_of(request.uri().path()));
    log_fallback(&state, &request, &response, started);
    response
}

async fn method_not_allowed(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = tokio::time::Instant::now();
    let refusal = Refusal::MethodNotAllowed {
        method: request.method().to_string(),
        path: request.uri().path().to_owned(),
    };
    let response = refusal.response(shape_of(request.uri().path()));
    log_fallback(&state, &request, &response, started);
    response
}

/// The access line of a request no route took.
fn log_fallback(
    state: &AppState,
    request: &Request,
    response: &Response,
    started: tokio::time::Instant,
) {
    if let Some(metrics) = crate::metrics::get() {
        let status = response.status().as_u16();
        metrics.request(
            None,
            "unknown",
            status,
            crate::metrics::NO_GROUP,
            started.elapsed(),
            None,
        );
    }
    if !state.access_log {
        return;
    }
    access::Access {
        request_id: access::NONE,
        method: request.method().as_str(),
        route: &access::route_of(request.uri().path()),
        status: response.status().as_u16(),
        key: None,
        account: None,
        model: None,
        started,
        bytes: access::body_len(response),
    }
    .write();
}
