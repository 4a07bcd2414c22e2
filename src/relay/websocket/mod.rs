//! Responses over WebSocket: Codex's persistent transport (PROTOCOLS.md, "Responses over
//! WebSocket"), served on every Responses route.
//!
//! The upgrade request is authenticated like an HTTP request (and refused the same way, before
//! the 101). Then each `response.create` text message is one turn, relayed through [`handle`]
//! exactly as a streaming `POST /responses` would be — the same admission, failover, held-back
//! preamble, in-protocol failure after output and usage record (one per turn, with
//! `transport: websocket`) — and the events of its SSE answer go back one text frame each, in
//! order. A turn that reaches a ChatGPT sign-in account goes over the socket's upstream
//! WebSocket (`upstream::websocket`: the relay's attempt finds the socket's `Link` in the
//! request's extensions, and sends only the new items with `previous_response_id` when the
//! upstream socket holds the conversation); every other turn reaches its upstream as one
//! streaming POST carrying the whole conversation (the HTTP bridge). Either way the socket
//! remembers earlier turns' input and output items ([`history`]) and rebuilds the full `input`
//! of a turn that sends only new items with `previous_response_id`, which is then removed (the
//! Codex backend refuses it over HTTP with
//! `store: false`). A prewarm (`generate: false`) is answered here, with no upstream call.
//!
//! The socket survives a failed turn (the failure is an `error` event, or `response.failed`
//! after output). While the socket waits — for a turn's answer or for the next turn — a ping
//! goes out every `gateway.stream_keepalive_interval` of silence (reverse proxies cut idle
//! sockets); a client that leaves two pings in a row unanswered is closed. Bad frames close the
//! socket with RFC 6455's codes: 1002 protocol error, 1003 a binary message, 1007 text that is not
//! UTF-8, 1009 a message over `gateway.max_body_size`.

mod create;
mod frames;
mod history;
mod observe;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::FromRequestParts;
use axum::response::Response;
use bytes::Bytes;
use futures_util::SinkExt;
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::{sleep_until, Instant};

use super::{handle, Endpoint};
use crate::http::refusal::Refusal;
use crate::http::PeerAddr;
use crate::protocol::errors::ErrorShape;
use crate::protocol::sse::SseScanner;
use crate::state::AppState;
use crate::upstream::websocket::{Link, Turn as UpstreamTurn};
use crate::usage::Transport;
use create::Create;
use history::{Continues, History};
use observe::{observe, Observed};

/// RFC 6455 section 7.4.1 close codes.
mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
}

/// Pings a client may leave unanswered in a row before the socket is closed.
const MAX_UNANSWERED_PINGS: u32 = 2;

/// Messages a client may send ahead while a turn runs (Codex sends one turn at a time); their
/// bytes together are bounded by `gateway.max_body_size` too.
const MAX_QUEUED_MESSAGES: usize = 8;

/// Bytes a socket reads at a time.
const READ_BUFFER: usize = 8 * 1024;

/// Request headers that belong to the upgrade, not to the turns relayed over it.
const UPGRADE_HEADERS: &[header::HeaderName] = &[
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::SEC_WEBSOCKET_PROTOCOL,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
];

/// `GET` on a Responses route: a WebSocket upgrade, else 405 as before. Its access line says
/// how the upgrade was answered (101, or the refusal); each turn writes its own.
pub async fn upgrade(state: Arc<AppState>, request: http::Request<Body>) -> Response {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let (response, key) = answer_upgrade(state.clone(), request).await;
    if state.access_log {
        crate::http::access::Access {
            request_id: crate::http::access::NONE,
            method: "GET",
            route: &crate::http::access::route_of(&path),
            status: response.status().as_u16(),
            key: key.as_deref(),
            account: None,
            model: None,
            started,
            bytes: crate::http::access::body_len(&response),
        }
        .write();
    }
    response
}

/// The upgrade's answer, and the key's name once it is known.
async fn answer_upgrade(
    state: Arc<AppState>,
    request: http::Request<Body>,
) -> (Response, Option<String>) {
    let shape = ErrorShape::OpenAi;
    let (mut parts, _) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let wants_websocket = parts
        .headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if !wants_websocket {
        let refusal = Refusal::MethodNotAllowed {
            method: parts.method.to_string(),
            path,
        };
        return (refusal.response(shape), None);
    }
    // Authenticated like HTTP, before the 101: a refused client gets the status and JSON body.
    let key = match state.keys.authenticate(&parts.headers) {
        Ok(key) => key,
        Err(refusal) => return (refusal.response(shape), None),
    };
    let name = Some(key.name.clone());
    if key.platform != Endpoint::Responses.platform() {
        let refusal = Refusal::WrongPlatform {
            group: key.group.clone(),
            platform: key.platform,
            endpoint: Endpoint::Responses.as_str(),
        };
        return (refusal.response(shape), name);
    }
    let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(ws) => ws,
        Err(rejection) => {
            let refusal = Refusal::InvalidRequest(rejection.body_text());
            return (refusal.response(shape), name);
        }
    };
    let limit = state.gateway().max_body_size;
    let mut headers = parts.headers;
    for name in UPGRADE_HEADERS {
        headers.remove(name);
    }
    // The WebSocket beta flag means nothing to an upstream reached over HTTP.
    if headers
        .get("openai-beta")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("responses_websockets"))
    {
        headers.remove("openai-beta");
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let peer = parts.extensions.get::<PeerAddr>().copied();
    // The session runs in axum's upgrade task; the token keeps shutdown waiting for it.
    let tracked = state.tasks.token();
    let response = ws
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite's 128 KiB default read buffer was most of an idle socket's memory: 142 KiB
        // RSS per open idle socket with it, 18 KiB with 8 KiB (an idle HTTP keep-alive
        // connection: 12 KiB; 1,000 sockets, debug build). A large message takes more reads.
        .read_buffer_size(READ_BUFFER)
        .on_failed_upgrade(|e| tracing::debug!("WebSocket upgrade failed: {e}"))
        .on_upgrade(move |socket| async move {
            let _tracked = tracked;
            let keepalive = state.gateway().stream_keepalive_interval;
            let link = Arc::new(Link::default());
            Session {
                state,
                socket,
                headers,
                peer,
                path,
                history: History::default(),
                keepalive,
                next_ping: keepalive.map(|every| Instant::now() + every),
                unanswered: 0,
                queued: VecDeque::new(),
                link: Arc::clone(&link),
            }
            .run()
            .await;
            // The downstream socket is closed: so is the upstream one.
            link.close().await;
        });
    (response, name)
}

/// One open socket.
struct Session {
    state: Arc<AppState>,
    socket: WebSocket,
    /// The upgrade request's headers (credentials, session ids, Codex's metadata), sent with
    /// every turn.
    headers: HeaderMap,
    peer: Option<PeerAddr>,
    /// The route the socket was opened on (each turn's access line names it).
    path: String,
    history: History,
    keepalive: Option<Duration>,
    /// When the next ping is due (an interval after the last frame sent).
    next_ping: Option<Instant>,
    unanswered: u32,
    /// Messages that arrived while a turn ran.
    queued: VecDeque<Utf8Bytes>,
    /// The upstream socket of this socket's turns, for accounts reached over WebSocket.
    link: Arc<Link>,
}

/// What a client frame means for the session.
enum Client {
    Text(Utf8Bytes),
    /// A ping, a pong: the client is there.
    Alive,
    /// Close the socket with this code and reason.
    Refuse(u16, String),
    /// The client closed the socket or it broke.
    Gone,
}

/// Whether the socket stays open after a step.
#[derive(PartialEq, Eq)]
enum Flow {
    Open,
    Closed,
}

impl Session {
    async fn run(mut self) {
        loop {
            let Some(text) = self.next_message().await else {
                return;
            };
            if self.turn(text).await == Flow::Closed {
                return;
            }
            if self.state.shutdown.is_cancelled() {
                self.close(close::GOING_AWAY, "the gateway is shutting down")
                    .await;
                return;
            }
        }
    }

    /// Waits for the next text message, pinging while it waits.
    async fn next_message(&mut self) -> Option<Utf8Bytes> {
        if let Some(text) = self.queued.pop_front() {
            return Some(text);
        }
        // Between turns the upstream socket (if any) is kept alive too.
        let link = Arc::clone(&self.link);
        loop {
            let ping_at = self.next_ping;
            tokio::select! {
                () = link.idle(self.keepalive) => {}
                message = self.socket.recv() => match self.classify(message) {
                    Client::Text(text) => return Some(text),
                    Client::Alive => {}
                    Client::Refuse(code, reason) => {
                        self.close(code, &reason).await;
                        return None;
                    }
                    Client::Gone => return None,
                },
                () = sleep_until(ping_at.unwrap_or_else(Instant::now)), if ping_at.is_some() => {
                    if self.ping().await == Flow::Closed {
                        return None;
                    }
                }
                () = self.state.shutdown.cancelled() => {
                    self.close(close::GOING_AWAY, "the gateway is shutting down").await;
                    return None;
                }
            }
        }
    }

    fn classify(&mut self, message: Option<Result<Message, axum::Error>>) -> Client {
        let message = match message {
            None => return Client::Gone,
            Some(Ok(message)) => message,
            Some(Err(error)) => return refused_frame(error),
        };
        self.unanswered = 0;
        match message {
            Message::Text(text) => Client::Text(text),
            Message::Binary(_) => Client::Refuse(
                close::UNSUPPORTED_DATA,
                "binary messages are not supported: send response.create as a text message"
                    .to_owned(),
            ),
            // tungstenite answers a ping with a pong by itself.
            Message::Ping(_) | Message::Pong(_) => Client::Alive,
            Message::Close(_) => Client::Gone,
        }
    }

    /// A message that arrived during a turn: kept for after it.
    async fn client_during_turn(&mut self, message: Option<Result<Message, axum::Error>>) -> Flow {
        match self.classify(message) {
            Client::Text(text)
                if self.queued.len() < MAX_QUEUED_MESSAGES
                    && self.queued.iter().map(|t| t.len()).sum::<usize>() + text.len()
                        <= self.state.gateway().max_body_size =>
            {
                self.queued.push_back(text);
                Flow::Open
            }
            Client::Text(_) => {
                self.close(
                    close::POLICY,
                    "too many messages sent while a turn was running",
                )
                .await;
                Flow::Closed
            }
            Client::Alive => Flow::Open,
            Client::Refuse(code, reason) => {
                self.close(code, &reason).await;
                Flow::Closed
            }
            Client::Gone => Flow::Closed,
        }
    }

    /// One `response.create`, answered in full.
    async fn turn(&mut self, text: Utf8Bytes) -> Flow {
        let create = match create::parse(text.as_str()) {
            Ok(create) => create,
            Err(refusal) => return self.refuse(&refusal).await,
        };
        let at = match self.history.continues(create.previous.as_deref()) {
            Ok(at) => at,
            Err(_) => {
                let refusal = Refusal::PreviousResponseNotFound {
                    id: create.previous.unwrap_or_default(),
                };
                return self.refuse(&refusal).await;
            }
        };
        if create.prewarm {
            return self.prewarm(at, create).await;
        }
        let body = create::full_body(&create, self.history.before(at));
        let turn = UpstreamTurn {
            link: Arc::clone(&self.link),
            previous: create.previous.clone(),
            new_items: create.input.len(),
        };
        let request = self.request(body, turn);

        let head = handle(Arc::clone(&self.state), Endpoint::Responses, request);
        let mut head = std::pin::pin!(head);
        // The client may go away while the relay waits for an account: the relay task goes on
        // (and records the turn) without it.
        let response = loop {
            let ping_at = self.next_ping;
            tokio::select! {
                biased;
                response = &mut head => break response,
                message = self.socket.recv() => {
                    if self.client_during_turn(message).await == Flow::Closed {
                        return Flow::Closed;
                    }
                }
                () = sleep_until(ping_at.unwrap_or_else(Instant::now)), if ping_at.is_some() => {
                    if self.ping().await == Flow::Closed {
                        return Flow::Closed;
                    }
                }
            }
        };
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            // Refused before any output: the relay's error JSON, as an `error` event.
            let limit = self.state.gateway().max_event_bytes;
            let bytes = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let event = error_event(parts.status, &bytes);
            return self.send_text(event).await;
        }
        let observed = match self.stream(body).await {
            Some(observed) => observed,
            None => return Flow::Closed,
        };
        let Some(id) = observed.completed else {
            // Failed or cut: the turn is not part of the conversation; the socket stays.
            return Flow::Open;
        };
        let bytes = self
            .history
            .completed(at, id, create.into_input(), observed.output);
        if bytes > self.state.gateway().websocket_max_history_bytes {
            self.close(
                close::NORMAL,
                "the conversation outgrew gateway.websocket_max_history_bytes: reconnect and send it whole",
            )
            .await;
            return Flow::Closed;
        }
        Flow::Open
    }

    /// The turn's SSE answer, one text frame per event. `None` when the client went away.
    async fn stream(&mut self, mut body: Body) -> Option<Observed> {
        let mut scanner = SseScanner::new();
        let mut observed = Observed::default();
        // A chunk's events: (whether `observe` reads it, its data).
        let mut events: Vec<(bool, Bytes)> = Vec::new();
        loop {
            let ping_at = self.next_ping;
            tokio::select! {
                biased;
                frame = body.frame() => {
                    let Some(Ok(frame)) = frame else {
                        return Some(observed);
                    };
                    let Ok(chunk) = frame.into_data() else { continue };
                    if scanner.pending() > 0 || !frames::whole_events(&chunk, &mut events) {
                        scanner.feed(&chunk, |event| {
                            // `: keepalive` comments: the socket's own pings keep it alive.
                            if event.raw().first() == Some(&b':') {
                                return;
                            }
                            let notable = frames::notable(event.name());
                            events.push((notable, frames::data_of(&chunk, event.data())));
                        });
                    }
                    // The chunk's events are queued as frames and written with one flush: one
                    // write to the socket per upstream read, as the HTTP stream does, instead of
                    // one per event (a system call each).
                    let mut queued = false;
                    for (notable, data) in events.drain(..) {
                        if notable {
                            observe(&data, &mut observed);
                        }
                        let text = Utf8Bytes::try_from(data.clone()).unwrap_or_else(|_| {
                            String::from_utf8_lossy(&data).into_owned().into()
                        });
                        queued = true;
                        if self.queue(Message::Text(text)).await == Flow::Closed {
                            // Dropping the body tells the relay the client left; it reads the
                            // upstream on for the usage.
                            return None;
                        }
                    }
                    if queued && self.flush().await == Flow::Closed {
                        return None;
                    }
                }
                message = self.socket.recv() => {
                    if self.client_during_turn(message).await == Flow::Closed {
                        return None;
                    }
                }
                () = sleep_until(ping_at.unwrap_or_else(Instant::now)), if ping_at.is_some() => {
                    if self.ping().await == Flow::Closed {
                        return None;
                    }
                }
            }
        }
    }

    /// `generate: false`: Codex warms the connection up with its instructions. Answered here
    /// (no upstream call, no usage): the input is remembered for the turn that continues it.
    async fn prewarm(&mut self, at: Continues, create: Create<'_>) -> Flow {
        let id = format!("resp_{:032x}", rand::random::<u128>());
        let model = create.field("model").map_or("null", |m| m.get()).to_owned();
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let response = |status: &str, usage: &str| {
            format!(
                r#"{{"id":"{id}","object":"response","created_at":{created_at},"status":"{status}","model":{model},"output":[]{usage}}}"#
            )
        };
        let created = format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response("in_progress", "")
        );
        let completed = format!(
            r#"{{"type":"response.completed","sequence_number":1,"response":{}}}"#,
            response(
                "completed",
                r#","usage":{"input_tokens":0,"output_tokens":0,"total_tokens":0}"#
            )
        );
        if self.send_text(created).await == Flow::Closed
            || self.send_text(completed).await == Flow::Closed
        {
            return Flow::Closed;
        }
        self.history
            .completed(at, id, create.into_input(), Vec::new());
        Flow::Open
    }

    /// The turn as the `POST` the relay serves.
    fn request(&self, body: String, turn: UpstreamTurn) -> http::Request<Body> {
        let mut request = http::Request::new(Body::from(body));
        *request.method_mut() = Method::POST;
        if let Ok(uri) = self.path.parse() {
            *request.uri_mut() = uri;
        }
        *request.headers_mut() = self.headers.clone();
        request.extensions_mut().insert(Transport::WebSocket);
        request.extensions_mut().insert(turn);
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(peer);
        }
        request
    }

    /// A turn refused by the gateway itself: an `error` event; the socket stays open.
    async fn refuse(&mut self, refusal: &Refusal) -> Flow {
        let event = error_event(refusal.status(), &refusal.body(ErrorShape::OpenAi));
        self.send_text(event).await
    }

    async fn ping(&mut self) -> Flow {
        if self.unanswered >= MAX_UNANSWERED_PINGS {
            tracing::debug!(path = %self.path, "WebSocket closed: the client answered no ping");
            let reason = "the client answered no ping";
            self.close(close::POLICY, reason).await;
            return Flow::Closed;
        }
        self.unanswered += 1;
        self.send(Message::Ping(Bytes::new())).await
    }

    async fn send_text(&mut self, text: String) -> Flow {
        self.send(Message::Text(text.into())).await
    }

    async fn send(&mut self, message: Message) -> Flow {
        if self.queue(message).await == Flow::Closed {
            return Flow::Closed;
        }
        self.flush().await
    }

    /// Queues a frame without writing it out (unless the socket's write buffer is full):
    /// [`Session::flush`] writes what is queued.
    async fn queue(&mut self, message: Message) -> Flow {
        match self.socket.feed(message).await {
            Ok(()) => Flow::Open,
            Err(_) => Flow::Closed,
        }
    }

    /// Writes out what is queued; the next ping is due an interval after it.
    async fn flush(&mut self) -> Flow {
        self.next_ping = self.keepalive.map(|every| Instant::now() + every);
        match self.socket.flush().await {
            Ok(()) => Flow::Open,
            Err(_) => Flow::Closed,
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
    }
}

/// The close a broken frame earns (RFC 6455 7.4.1); a connection that broke gets none.
fn refused_frame(error: axum::Error) -> Client {
    let Ok(error) = error.into_inner().downcast::<tungstenite::Error>() else {
        return Client::Gone;
    };
    match *error {
        tungstenite::Error::Capacity(_) => Client::Refuse(
            close::TOO_BIG,
            "message larger than gateway.max_body_size".to_owned(),
        ),
        tungstenite::Error::Utf8(_) => Client::Refuse(
            close::INVALID_DATA,
            "a text message that is not UTF-8".to_owned(),
        ),
        tungstenite::Error::Protocol(e) => Client::Refuse(close::PROTOCOL_ERROR, e.to_string()),
        _ => Client::Gone,
    }
}

/// `{"type":"error","status":…,"error":{…}}` from an error answer's JSON.
fn error_event(status: StatusCode, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Wrapped {
        error: Box<RawValue>,
    }
    let error = serde_json::from_slice::<Wrapped>(body)
        .map(|w| w.error.get().to_owned())
        .unwrap_or_else(|_| {
            serde_json::json!({
                "type": "upstream_error",
                "message": String::from_utf8_lossy(body),
            })
            .to_string()
        });
    format!(
        r#"{{"type":"error","status":{},"error":{error}}}"#,
        status.as_u16()
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn an_error_answer_becomes_an_error_event_with_its_status() {
        let body = Refusal::InvalidApiKey.body(ErrorShape::OpenAi);
        let event: serde_json::Value =
            serde_json::from_str(&error_event(StatusCode::UNAUTHORIZED, &body)).unwrap();
        assert_eq!(event["type"], "error");
        assert_eq!(event["status"], 401);
        assert_eq!(event["error"]["code"], "invalid_api_key");
    }
}
