//! A request's life in the mock, on one screen.
//!
//! Phases, in order:
//! 1. route: control routes (`/__mock/...`) answer at once and are never recorded;
//! 2. read the whole body;
//! 3. count and record the request (before any delay, so tests see calls that still hang);
//! 4. unknown paths get a 404; bodies that break the imitated upstream's rules get a 400
//!    (these do not consume a scripted step);
//! 5. choose the behaviour: the credential's next scripted step, else the model-name options;
//! 6. wait before the headers (`delay_headers`, `hang_before_headers`);
//! 7. answer: scripted error, stream, JSON response or compaction, plus the extra headers.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::answer::{self, Reply};
use crate::behavior::Behavior;
use crate::body::MockBody;
use crate::ledger::Ledger;
use crate::model_options;
use crate::request::{self, Ask, Route, Target};

/// Largest request body the mock reads; Codex conversations can be large.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// Answers one request.
pub(crate) async fn handle(ledger: Arc<Ledger>, request: Request<Incoming>) -> Response<MockBody> {
    // 1. Route.
    let target = Target::of(request.method(), request.uri().path());
    match target {
        Target::Counts => return counts(&ledger),
        Target::Reset => {
            ledger.reset();
            return plain(StatusCode::NO_CONTENT, MockBody::empty());
        }
        Target::Api(_) | Target::Unknown => {}
    }

    // 2. Read the body.
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let message = format!("subrelay-mock could not read the request body: {err}");
            let reply = answer::error(
                StatusCode::BAD_REQUEST,
                &message,
                "invalid_request_error",
                None,
                None,
            );
            return respond(reply, &[], None);
        }
    };

    // 3. Count and record.
    let credential = request::credential(&parts.headers);
    ledger.arrive(&parts, &body, credential);
    let counted = Some(&ledger);

    // 4. Refuse what the imitated upstream refuses.
    let Target::Api(route) = target else {
        let message = format!("Invalid URL ({} {})", parts.method, parts.uri.path());
        let reply = answer::error(
            StatusCode::NOT_FOUND,
            &message,
            "invalid_request_error",
            Some("unknown_url"),
            None,
        );
        return respond(reply, &[], counted);
    };
    let ask = match request::read_body(route, &body) {
        Ok(ask) => ask,
        Err(rejection) => {
            let reply = answer::error(
                StatusCode::BAD_REQUEST,
                &rejection.message,
                "invalid_request_error",
                Some(rejection.code),
                rejection.param,
            );
            return respond(reply, &[], counted);
        }
    };

    // 5. Choose the behaviour.
    let (model, options) = model_options::split_model(&ask.model);
    let behavior = match ledger.next_step(credential) {
        Some(step) => step,
        None => match options.map(model_options::parse) {
            None => Behavior::default(),
            Some(Ok(behavior)) => behavior,
            Some(Err(err)) => {
                let reply = answer::error(
                    StatusCode::BAD_REQUEST,
                    &err.to_string(),
                    "invalid_request_error",
                    Some("invalid_value"),
                    Some("model"),
                );
                return respond(reply, &[], counted);
            }
        },
    };

    // 6. Wait before the headers.
    if behavior.hang_before_headers {
        std::future::pending::<()>().await;
    }
    if !behavior.delay_headers.is_zero() {
        tokio::time::sleep(behavior.delay_headers).await;
    }

    // 7. Answer.
    let reply = compose(route, &ask, model, &behavior);
    respond(reply, &behavior.headers, counted)
}

/// The answer a behaviour asks for on this route.
fn compose(
    route: Route,
    ask: &Ask,
    model: &str,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    if let Some(code) = behavior.status {
        match StatusCode::from_u16(code) {
            Ok(status) if status.is_success() => {}
            Ok(status) if status.as_u16() >= 300 => return answer::scripted_error(status),
            _ => {
                let message = format!(
                    "subrelay-mock: scripted status {code} cannot be answered (use 200..=999)"
                );
                return answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &message,
                    "server_error",
                    Some("server_error"),
                    None,
                );
            }
        }
    }
    match route {
        Route::CodexResponses | Route::ApiResponses if ask.stream => {
            answer::stream(model, ask.store, behavior)
        }
        Route::CodexResponses | Route::ApiResponses => {
            answer::response_json(model, ask.store, behavior)
        }
        Route::CodexCompact | Route::ApiCompact => answer::compaction(behavior),
    }
}

/// Turns a reply into a response with its extra headers (which replace defaults of the same
/// name); counts it in `completed` when a ledger is given.
fn respond(
    reply: Result<Reply, serde_json::Error>,
    extra: &[(String, String)],
    ledger: Option<&Arc<Ledger>>,
) -> Response<MockBody> {
    let reply = reply.unwrap_or_else(|_| Reply::unwritable());
    let stream = reply.content_type == "text/event-stream";
    let mut headers = HeaderMap::with_capacity(2 + extra.len());
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(reply.content_type));
    if stream {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    let mut extras = HeaderMap::with_capacity(extra.len());
    for (name, value) in extra {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                extras.append(name, value);
            }
            _ => {
                let message = format!(
                    "subrelay-mock: scripted header '{name}: {value}' is not a valid HTTP header"
                );
                let reply = answer::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &message,
                    "server_error",
                    Some("server_error"),
                    None,
                );
                return respond(reply, &[], ledger);
            }
        }
    }
    headers.extend(extras);
    let body = match ledger {
        Some(ledger) => reply.body.counted(Arc::clone(ledger)),
        None => reply.body,
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    *response.headers_mut() = headers;
    response
}

/// `GET /__mock/calls`.
fn counts(ledger: &Ledger) -> Response<MockBody> {
    match serde_json::to_vec(&ledger.counts()) {
        Ok(json) => {
            let mut response = plain(StatusCode::OK, MockBody::full(Bytes::from(json)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(_) => respond(Ok(Reply::unwritable()), &[], None),
    }
}

fn plain(status: StatusCode, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
