//! The Responses WebSocket transport, as the Codex backend serves it (PROTOCOLS.md, "Responses
//! over WebSocket"): `GET /backend-api/codex/responses` (or `/v1/responses`) with
//! `Upgrade: websocket`, then one `response.create` text message per turn, answered by the same
//! events as the SSE stream, one text frame each.
//!
//! Each turn is checked and scripted like a POST on the same route (the credential's next step,
//! else the model-name options), so a test scripts a socket's turns exactly as it scripts
//! requests. A turn may continue a response completed earlier on the same socket with
//! `previous_response_id` (sending only its new input items); one this socket has not seen is
//! refused with an `error` event (`previous_response_not_found`). A scripted error status is
//! answered as `{"type":"error","status":…,"error":{…}}` and the socket stays open; a scripted
//! cut drops the connection without a close frame.
//!
//! [`MockUpstream::refuse_websocket`](crate::MockUpstream::refuse_websocket) makes the upgrade
//! fail with a status (as an upstream without the transport does); the ledger counts upgrade
//! attempts apart from calls, and records each turn as a request with the method `WS`.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::body::MockBody;
use crate::errors::{Dialect, Rejection};
use crate::handle::{compose, Ask};
use crate::ledger::Ledger;
use crate::model_options;
use crate::reply::Reply;
use crate::request::{self, ResponsesRoute};

/// Largest message the mock reads (as its largest POST body).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// The Responses route a WebSocket upgrade request is for, if it is one.
pub(crate) fn wants_upgrade(request: &Request<Incoming>) -> Option<ResponsesRoute> {
    let upgrade = request
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if request.method() != Method::GET || !upgrade {
        return None;
    }
    match request.uri().path() {
        "/backend-api/codex/responses" => Some(ResponsesRoute::CodexResponses),
        "/v1/responses" => Some(ResponsesRoute::ApiResponses),
        _ => None,
    }
}

/// Answers the upgrade: 101 and a session task that ends when the mock does, or the refusal.
pub(crate) fn upgrade(
    ledger: Arc<Ledger>,
    closed: watch::Receiver<()>,
    route: ResponsesRoute,
    mut request: Request<Incoming>,
) -> Response<MockBody> {
    let credential = request::credential(request.headers()).map(str::to_owned);
    ledger.note_upgrade(&request, credential.as_deref());
    if let Some(status) = ledger.websocket_refusal(credential.as_deref()) {
        let body = Bytes::from(format!(
            r#"{{"error":{{"message":"subrelay-mock: WebSocket transport refused with {status}","type":"invalid_request_error","code":"websocket_unsupported","param":null}}}}"#
        ));
        let mut response = Response::new(MockBody::full(body));
        *response.status_mut() =
            StatusCode::from_u16(status).unwrap_or(StatusCode::UPGRADE_REQUIRED);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return response;
    }
    let Some(key) = request.headers().get(SEC_WEBSOCKET_KEY) else {
        let mut response = Response::new(MockBody::empty());
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let headers = request.headers().clone();
    let path = request.uri().path().to_owned();
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(crate::server::until_closed(closed, async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let session = Session {
            ledger,
            route,
            credential,
            headers,
            path,
            known: HashSet::new(),
        };
        session.run(socket).await;
    }));
    let mut response = Response::new(MockBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// One open socket.
struct Session {
    ledger: Arc<Ledger>,
    route: ResponsesRoute,
    credential: Option<String>,
    /// The upgrade request's headers.
    headers: HeaderMap,
    path: String,
    /// Responses completed on this socket: what `previous_response_id` may name.
    known: HashSet<String>,
}

/// Whether the socket goes on after a turn.
enum Flow {
    Open,
    /// Dropped without a close frame (a scripted cut, or the client left).
    Cut,
}

/// Counts a session as open for as long as it lives.
struct OpenGuard(Arc<Ledger>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.websocket_open(false);
    }
}

impl Session {
    async fn run(mut self, mut socket: Socket) {
        self.ledger.websocket_open(true);
        let _open = OpenGuard(Arc::clone(&self.ledger));
        while let Some(Ok(message)) = socket.next().await {
            let text = match message {
                Message::Text(text) => text,
                Message::Close(_) | Message::Binary(_) => return,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            };
            let body = Bytes::copy_from_slice(text.as_bytes());
            self.ledger
                .note_turn(&self.path, &self.headers, &body, self.credential.as_deref());
            if let Flow::Cut = self.turn(&body, &mut socket).await {
                return;
            }
        }
    }

    async fn turn(&mut self, text: &[u8], socket: &mut Socket) -> Flow {
        let mut fields = match serde_json::from_slice::<Value>(text) {
            Ok(Value::Object(fields)) => fields,
            _ => {
                let message = "a WebSocket message must be one JSON object";
                return error_event(socket, 400, &invalid(message, "invalid_json")).await;
            }
        };
        if fields.remove("type") != Some(Value::String("response.create".to_owned())) {
            let message = "unsupported message type: send response.create";
            return error_event(socket, 400, &invalid(message, "invalid_type")).await;
        }
        match fields.remove("previous_response_id") {
            None => {}
            Some(Value::String(id))
                if self.known.contains(&id) && !self.ledger.websocket_forgets() => {}
            Some(other) => {
                let message = format!("Previous response with id {other} not found.");
                let error = invalid(&message, "previous_response_not_found");
                return error_event(socket, 400, &error).await;
            }
        }
        fields.remove("generate");
        let body = match serde_json::to_vec(&fields) {
            Ok(body) => body,
            Err(_) => return Flow::Cut,
        };
        let ask = match request::read_body(self.route, &body) {
            Ok(ask) => ask,
            Err(rejection) => return self.rejected(socket, &rejection).await,
        };
        let credential = self.credential.as_deref();
        let (model, options) = model_options::split_model(&ask.model);
        let model = model.to_owned();
        let behavior = match self.ledger.next_step(credential) {
            Some(step) => step,
            None => match options.map(model_options::parse) {
                None => crate::Behavior::default(),
                Some(Ok(behavior)) => behavior,
                Some(Err(err)) => {
                    let rejection =
                        Rejection::invalid(err.to_string(), Some("invalid_value"), None);
                    return self.rejected(socket, &rejection).await;
                }
            },
        };
        if behavior.hang_before_headers {
            std::future::pending::<()>().await;
        }
        if !behavior.delay_headers.is_zero() {
            tokio::time::sleep(behavior.delay_headers).await;
        }
        let ask = Ask::Responses(self.route, ask);
        let reply = compose(
            &ask,
            &model,
            credential,
            &behavior,
            Dialect::OpenAi,
            &self.headers,
            &body,
        )
        .unwrap_or_else(|_| Reply::unwritable());
        if !reply.status.is_success() {
            let status = reply.status.as_u16();
            let bytes = collect(reply.body).await;
            return error_event(socket, status, &inner_error(&bytes)).await;
        }
        self.stream(reply.body.counted(Arc::clone(&self.ledger)), socket)
            .await
    }

    /// The SSE answer, one text frame per event's data.
    async fn stream(&mut self, mut body: MockBody, socket: &mut Socket) -> Flow {
        let mut pending = BytesMut::new();
        loop {
            let chunk = match body.frame().await {
                None => return Flow::Open,
                Some(Err(_)) => return Flow::Cut,
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue,
                },
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = find(&pending, b"\n\n") {
                let event = pending.split_to(end + 2);
                let data = data_of(&event);
                if data.is_empty() {
                    continue;
                }
                self.note(&data);
                if socket.send(Message::text(data)).await.is_err() {
                    return Flow::Cut;
                }
            }
        }
    }

    /// Remembers a completed response's id.
    fn note(&mut self, data: &str) {
        if !data.contains("\"response.completed\"") {
            return;
        }
        if let Ok(event) = serde_json::from_str::<Value>(data) {
            if let Some(id) = event.pointer("/response/id").and_then(Value::as_str) {
                self.known.insert(id.to_owned());
            }
        }
    }

    async fn rejected(&self, socket: &mut Socket, rejection: &Rejection) -> Flow {
        let reply = Dialect::OpenAi
            .reject(rejection)
            .unwrap_or_else(|_| Reply::unwritable());
        let status = reply.status.as_u16();
        let bytes = collect(reply.body).await;
        error_event(socket, status, &inner_error(&bytes)).await
    }
}

fn invalid(message: &str, code: &str) -> Value {
    serde_json::json!({
        "type": "invalid_request_error",
        "code": code,
        "message": message,
        "param": null,
    })
}

/// `{"error":{…}}`'s inner object.
fn inner_error(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|mut v| v.get_mut("error").map(Value::take))
        .unwrap_or_else(|| invalid("subrelay-mock: unreadable error", "server_error"))
}

async fn error_event(socket: &mut Socket, status: u16, error: &Value) -> Flow {
    let event = serde_json::json!({"type": "error", "status": status, "error": error});
    match socket.send(Message::text(event.to_string())).await {
        Ok(()) => Flow::Open,
        Err(_) => Flow::Cut,
    }
}

async fn collect(body: MockBody) -> Bytes {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `data:` lines of one SSE event, joined.
fn data_of(event: &[u8]) -> String {
    let text = String::from_utf8_lossy(event);
    let mut data = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(rest.strip_prefix(' ').unwrap_or(rest));
        }
    }
    data
}
