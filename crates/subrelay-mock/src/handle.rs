//! A request's life in the mock, on one screen.
//!
//! Phases, in order:
//! 1. route: control routes (`/__mock/...`) answer at once and are never recorded;
//! 2. read the whole body;
//! 3. token endpoints are recorded (not counted as API calls) and answered by the token desk;
//!    every other request is counted and recorded (before any delay, so tests see calls that
//!    still hang);
//! 4. unknown paths get a 404; requests that break the imitated upstream's rules (body keys,
//!    Anthropic's auth and version headers, thinking signatures) are refused in that API's error
//!    shape (these do not consume a scripted step);
//! 5. choose the behaviour: the credential's next scripted step, else the model-name options;
//! 6. wait before the headers (`delay_headers`, `hang_before_headers`), or refuse the stream
//!    (`refuse_stream`: RST_STREAM REFUSED_STREAM on HTTP/2, a closed connection on HTTP/1.1);
//! 7. answer: scripted error, or the route's answer (stream, JSON, compaction, token count),
//!    plus the extra headers.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::answer;
use crate::anthropic;
use crate::behavior::Behavior;
use crate::body::MockBody;
use crate::chat;
use crate::errors::{Dialect, Rejection};
use crate::ledger::Ledger;
use crate::model_options;
use crate::reply::Reply;
use crate::request::{self, ResponsesRoute, Route, Target};
use crate::tools;

/// Largest request body the mock reads; Codex conversations can be large.
const MAX_BODY: usize = 256 * 1024 * 1024;

/// What an accepted request asks for, per API.
pub(crate) enum Ask {
    Responses(ResponsesRoute, request::Ask),
    Anthropic(anthropic::Ask),
    Chat(chat::Ask),
}

impl Ask {
    /// Checks the request against the rules of its route.
    fn read(route: Route, headers: &HeaderMap, body: &[u8]) -> Result<Self, Rejection> {
        match route {
            Route::Responses(route) => {
                request::read_body(route, body).map(|ask| Self::Responses(route, ask))
            }
            Route::Messages => anthropic::read(false, headers, body).map(Self::Anthropic),
            Route::CountTokens => anthropic::read(true, headers, body).map(Self::Anthropic),
            Route::ChatCompletions => chat::read(body).map(Self::Chat),
        }
    }

    /// The `model` as sent, options included.
    fn model(&self) -> &str {
        match self {
            Self::Responses(_, ask) => &ask.model,
            Self::Anthropic(ask) => &ask.model,
            Self::Chat(ask) => &ask.model,
        }
    }
}

/// Answers one request; `Err` resets the stream (HTTP/2 RST_STREAM with the error's reason;
/// on HTTP/1.1 the connection closes without an answer).
pub(crate) async fn handle(
    ledger: Arc<Ledger>,
    closed: tokio::sync::watch::Receiver<()>,
    request: Request<Incoming>,
) -> Result<Response<MockBody>, h2::Error> {
    // The Responses WebSocket transport: an upgrade, then turns on a task of their own.
    if let Some(route) = crate::websocket::wants_upgrade(&request) {
        return Ok(crate::websocket::upgrade(ledger, closed, route, request));
    }
    let in_flight = matches!(
        Target::of(request.method(), request.uri().path()),
        Target::Api(_)
    )
    .then(|| ledger.enter());
    let response = answer(ledger, request).await;
    if response.extensions().get::<RefuseStream>().is_some() {
        return Err(h2::Error::from(h2::Reason::REFUSED_STREAM));
    }
    let (parts, mut body) = response.into_parts();
    body.in_flight = in_flight;
    Ok(Response::from_parts(parts, body))
}

/// Marks an answer that must not be sent: the stream is refused instead (`refuse_stream`).
#[derive(Clone, Copy)]
struct RefuseStream;

async fn answer(ledger: Arc<Ledger>, request: Request<Incoming>) -> Response<MockBody> {
    // 1. Route.
    let target = Target::of(request.method(), request.uri().path());
    match target {
        Target::Counts => return counts(&ledger),
        Target::Reset => {
            ledger.reset();
            return plain(StatusCode::NO_CONTENT, MockBody::empty());
        }
        Target::Authorize => {
            let query = request.uri().query().unwrap_or_default();
            let (reply, location) = match ledger.tokens.authorize(query) {
                Ok(answer) => answer,
                Err(_) => (Reply::unwritable(), None),
            };
            let extra: Vec<(String, String)> = location
                .map(|l| ("location".to_owned(), l))
                .into_iter()
                .collect();
            return respond(Ok(reply), &extra, None, target.dialect());
        }
        Target::Api(_) | Target::Token(_) | Target::Models | Target::Unknown => {}
    }
    let dialect = target.dialect();

    // 2. Read the body.
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            let message = format!("subrelay-mock could not read the request body: {err}");
            let reply = dialect.reject(&Rejection::invalid(message, None, None));
            return respond(reply, &[], None, dialect);
        }
    };

    // 3. Token endpoints apart; count and record the rest.
    if let Target::Token(issuer) = target {
        ledger.note_token_request(&parts, &body);
        let reply = ledger.tokens.answer(issuer, &parts.headers, &body).await;
        return respond(Ok(reply), &[], None, dialect);
    }
    let credential = request::credential(&parts.headers);
    ledger.arrive(&parts, &body, credential);
    let counted = Some(&ledger);

    // The model list: free, scriptable to fail.
    if target == Target::Models {
        let step = ledger.next_step(credential).unwrap_or_default();
        let reply = match step.status.and_then(|s| StatusCode::from_u16(s).ok()) {
            Some(status) if status.as_u16() >= 300 => {
                scripted_error(status, &step, dialect, &parts.headers)
            }
            _ => Ok(Reply::json(
                StatusCode::OK,
                Bytes::from_static(
                    br#"{"object":"list","data":[{"id":"gpt-5","object":"model","owned_by":"subrelay-mock"}]}"#,
                ),
            )),
        };
        return respond(reply, &step.headers, counted, dialect);
    }

    // 4. Refuse what the imitated upstream refuses.
    let Target::Api(route) = target else {
        let message = format!("Invalid URL ({} {})", parts.method, parts.uri.path());
        let reply = dialect.reject(&Rejection {
            status: StatusCode::NOT_FOUND,
            ..Rejection::invalid(message, Some("unknown_url"), None)
        });
        return respond(reply, &[], counted, dialect);
    };
    let ask = match Ask::read(route, &parts.headers, &body) {
        Ok(ask) => ask,
        Err(rejection) => return respond(dialect.reject(&rejection), &[], counted, dialect),
    };

    // 5. Choose the behaviour.
    let (model, options) = model_options::split_model(ask.model());
    let mut behavior = match ledger.next_step(credential) {
        Some(step) => step,
        None => match options.map(model_options::parse) {
            None => Behavior::default(),
            Some(Ok(behavior)) => behavior,
            Some(Err(err)) => {
                let reply = dialect.reject(&Rejection::invalid(
                    err.to_string(),
                    Some("invalid_value"),
                    Some("model"),
                ));
                return respond(reply, &[], counted, dialect);
            }
        },
    };

    // A credential with usage windows: report them, use some, refuse when one is full. A
    // scripted error is answered as scripted.
    if behavior.status.is_none_or(|s| (200..300).contains(&s)) {
        let free = route == Route::CountTokens;
        if let Some((windows, refused)) = ledger.spend_quota(credential, free) {
            if refused {
                behavior.status = Some(429);
                behavior.error_code = Some("usage_limit_reached".to_owned());
            }
            let mut headers = windows.headers(dialect, refused);
            headers.append(&mut behavior.headers);
            behavior.headers = headers;
        }
    }

    // 6. Wait before the headers, or refuse the stream.
    if behavior.refuse_stream {
        let mut refused = plain(StatusCode::SERVICE_UNAVAILABLE, MockBody::empty());
        refused.extensions_mut().insert(RefuseStream);
        return refused;
    }
    if behavior.hang_before_headers {
        std::future::pending::<()>().await;
    }
    if !behavior.delay_headers.is_zero() {
        tokio::time::sleep(behavior.delay_headers).await;
    }

    // 7. Answer.
    let reply = compose(
        &ask,
        model,
        credential,
        &behavior,
        dialect,
        &parts.headers,
        &body,
    );
    respond(reply, &behavior.headers, counted, dialect)
}

/// The answer a behaviour asks for on this request's route.
pub(crate) fn compose(
    ask: &Ask,
    model: &str,
    credential: Option<&str>,
    behavior: &Behavior,
    dialect: Dialect,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Reply, serde_json::Error> {
    if let Some(code) = behavior.status {
        match StatusCode::from_u16(code) {
            Ok(status) if status.is_success() => {}
            // hyper writes a 101 without a body (and no other 1xx at all).
            Ok(StatusCode::SWITCHING_PROTOCOLS) => {
                return Ok(Reply {
                    status: StatusCode::SWITCHING_PROTOCOLS,
                    content_type: "text/plain",
                    body: MockBody::empty(),
                })
            }
            Ok(status) if status.as_u16() >= 300 => {
                return scripted_error(status, behavior, dialect, headers)
            }
            _ => {
                let message = format!(
                    "subrelay-mock: scripted status {code} cannot be answered (use 101 or 200..=999)"
                );
                return dialect.reject(&Rejection::unscriptable(message));
            }
        }
    }
    let with_calls = match ask {
        Ask::Responses(ResponsesRoute::CodexResponses | ResponsesRoute::ApiResponses, ask) => {
            Some((tools::Api::Responses, ask.stream))
        }
        Ask::Chat(ask) => Some((tools::Api::Chat, ask.stream)),
        Ask::Anthropic(ask) if !ask.count_tokens => Some((tools::Api::Messages, ask.stream)),
        _ => None,
    };
    if let Some((api, stream)) = with_calls.filter(|_| !behavior.fail_before_output) {
        if let Some(names) = tools::calls(api, body, behavior) {
            return tools::answer(api, model, stream, &names, behavior);
        }
    }
    match ask {
        Ask::Responses(ResponsesRoute::CodexResponses | ResponsesRoute::ApiResponses, ask)
            if ask.stream =>
        {
            answer::stream(model, ask.store, behavior)
        }
        Ask::Responses(ResponsesRoute::CodexResponses | ResponsesRoute::ApiResponses, ask) => {
            answer::response_json(model, ask.store, behavior)
        }
        Ask::Responses(ResponsesRoute::CodexCompact | ResponsesRoute::ApiCompact, _) => {
            answer::compaction(behavior)
        }
        Ask::Anthropic(ask) => anthropic::answer(ask, model, credential, behavior),
        Ask::Chat(ask) => chat::answer(ask, model, behavior),
    }
}

/// A scripted error status: in the API's error shape, or (hostile) an HTML page; either may
/// quote the request's credential headers.
fn scripted_error(
    status: StatusCode,
    behavior: &Behavior,
    dialect: Dialect,
    headers: &HeaderMap,
) -> Result<Reply, serde_json::Error> {
    let echo = behavior.echo_credential.then(|| {
        ["authorization", "x-api-key"]
            .iter()
            .filter_map(|name| {
                let value = headers.get(*name)?.to_str().ok()?;
                Some(format!("{name}: {value}"))
            })
            .collect::<Vec<_>>()
            .join(", ")
    });
    if behavior.text_error {
        let page = format!(
            "<html><head><title>{status}</title></head><body><h1>{status}</h1><p>{}</p></body></html>",
            echo.as_deref().unwrap_or("subrelay-mock: scripted HTML error page")
        );
        return Ok(Reply {
            status,
            content_type: "text/html",
            body: MockBody::full(Bytes::from(page)),
        });
    }
    dialect.scripted(status, behavior.error_code.as_deref(), echo.as_deref())
}

/// Turns a reply into a response with its extra headers (which replace defaults of the same
/// name); counts it in `completed` when a ledger is given.
fn respond(
    reply: Result<Reply, serde_json::Error>,
    extra: &[(String, String)],
    ledger: Option<&Arc<Ledger>>,
    dialect: Dialect,
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
                let reply = dialect.reject(&Rejection::unscriptable(message));
                return respond(reply, &[], ledger, dialect);
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
        Err(_) => respond(Ok(Reply::unwritable()), &[], None, Dialect::OpenAi),
    }
}

fn plain(status: StatusCode, body: MockBody) -> Response<MockBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
