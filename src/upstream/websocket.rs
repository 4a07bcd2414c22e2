//! Responses over WebSocket to the upstream: the Codex backend's own persistent transport
//! (`wss://chatgpt.com/backend-api/codex/responses`), used for the turns of a downstream
//! Responses WebSocket that reach a ChatGPT sign-in account.
//!
//! One upstream socket per downstream socket ([`Link`]): opened at the first turn sent to an
//! account, reused by the next turns while they stay on that account, replaced when a turn moves
//! to another account, closed when the downstream socket closes ([`Link::close`]). A turn is one
//! `response.create` text message: only its new input items with `previous_response_id` when
//! the socket already holds the conversation (its last completed response is the one the turn
//! continues), else the whole conversation. The upstream's events come back one text frame each
//! and are handed to the relay as an SSE body ([`TurnBody`]), so the relay's watch, failover,
//! held-back preamble, timeouts and usage work on them exactly as on an HTTP answer. A first
//! message that is an `error` event with a `status` is handed over as an HTTP error answer of
//! that status (a 429 cools the account, a 401 refreshes its token, as on HTTP).
//!
//! Limits: connecting and the handshake within `gateway.connect_timeout` (then the relay's
//! header and first-token waits bound the first event); one upstream message at most
//! `gateway.max_event_bytes` (the bound of one SSE event on HTTP); the relay's idle timeout
//! between events; a ping after `gateway.stream_keepalive_interval` of silence, while a turn
//! waits and between turns ([`Link::idle`], a branch of the downstream session's wait); the
//! upstream's pings are answered by tungstenite while the socket is read. A socket the upstream
//! closes between turns is dropped; one found closed only when a turn is sent on it has that
//! turn sent again on a new socket with the whole conversation.
//!
//! An upstream that refuses the upgrade (an answer but 101 that is not about the account: 404,
//! 405, 426, …) is remembered per account for [`REFUSAL_MEMORY`] ([`Refusals`]) and its turns go
//! over HTTP meanwhile. An upgrade answered 401, 403, 408, 429 or 5xx is that attempt's answer,
//! as it would be to a POST (a refreshed token, a cooldown, the next account). An account with
//! its own proxy (`accounts[].proxy`) opens its socket through it (`super::tunnel`: HTTP
//! `CONNECT` or SOCKS5, as reqwest does for its POSTs), never around it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::send::{Body, Response, SendError};
use super::tunnel::Io;
use crate::domain::Secret;
use crate::runtime_state::{Expiring, ExpiringMap, RuntimeState};

/// How long an account that refused the upgrade is reached over HTTP only.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(3600);

/// The beta flag the Codex backend's WebSocket transport is asked for with (PROTOCOLS.md).
const BETA: &str = "responses_websockets=2026-02-06";

/// Bytes a socket reads at a time (as the downstream socket).
const READ_BUFFER: usize = 8 * 1024;

/// How long closing a socket may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Request headers of the HTTP request that mean nothing on an upgrade.
const NOT_ON_UPGRADE: &[header::HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    header::TRANSFER_ENCODING,
];

type Socket = WebSocketStream<Box<dyn Io>>;

// === Refusals ===

/// Accounts whose upstream refused the WebSocket upgrade, by account name, for
/// [`REFUSAL_MEMORY`].
pub struct Refusals(ExpiringMap<String, u16>);

impl Refusals {
    pub fn new(runtime: &RuntimeState) -> Self {
        Self(runtime.expiring("websocket_refused"))
    }

    /// Whether this account's upstream refused the upgrade lately.
    pub fn refused(&self, account: &str) -> bool {
        self.0.update(&account.to_owned(), None, |v| v.is_some())
    }

    pub fn remember(&self, account: &str, status: u16) {
        self.0
            .update(&account.to_owned(), Some(REFUSAL_MEMORY), |v| {
                *v = Some(status)
            });
    }
}

// === Link ===

/// The upstream side of one downstream socket: at most one open upstream socket, to one
/// account. Held by the downstream session and, during a turn, by the turn's body.
#[derive(Default)]
pub struct Link {
    open: Mutex<Option<Open>>,
}

/// An open upstream socket.
struct Open {
    account: String,
    socket: Socket,
    /// The id of the last response completed on this socket: a turn that continues it sends
    /// only its new items.
    last_response: Option<String>,
}

/// A turn of a downstream socket, as the relay's request extension: the link, and what the turn
/// continues.
#[derive(Clone)]
pub struct Turn {
    pub link: Arc<Link>,
    /// The downstream `previous_response_id`.
    pub previous: Option<String>,
    /// How many input items at the end of the full body are new in this turn.
    pub new_items: usize,
}

/// Limits of one upstream socket.
#[derive(Clone, Copy)]
pub struct Limits {
    pub connect_timeout: Duration,
    pub max_message: usize,
    pub keepalive: Option<Duration>,
}

/// What sending a turn came to.
pub enum Sent {
    /// The upstream's answer (events as an SSE body, or an error status).
    Answer(Response),
    /// The upstream answered the upgrade with this status: not a WebSocket upstream.
    Refused(StatusCode),
}

impl Link {
    fn take(&self) -> Option<Open> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn put(&self, open: Open) {
        let old = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(open);
        drop(old);
    }

    /// Keeps the upstream socket between turns: reads it (tungstenite answers its pings), pings
    /// it after every `keepalive` of silence, and drops it when the upstream closes it or sends
    /// anything unexpected. Never completes: it is a branch of the session's wait for the next
    /// message, and cancelling it puts the socket back.
    pub async fn idle(&self, keepalive: Option<Duration>) {
        if let Some(open) = self.take() {
            let mut held = Held {
                link: self,
                open: Some(open),
            };
            while let Some(open) = held.open.as_mut() {
                match next_message(&mut open.socket, keepalive).await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    other => {
                        tracing::debug!(
                            account = %open.account,
                            "upstream WebSocket dropped between turns: {other:?}"
                        );
                        held.open = None;
                    }
                }
            }
        }
        std::future::pending::<()>().await;
    }

    /// Closes the upstream socket, if one is open (the downstream socket closed).
    pub async fn close(&self) {
        if let Some(mut open) = self.take() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, open.socket.close(None)).await;
        }
    }
}

/// A socket taken out of its link for a while; dropping it puts the socket back.
struct Held<'a> {
    link: &'a Link,
    open: Option<Open>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            self.link.put(open);
        }
    }
}

/// Sends one turn on the link's socket to `account` (opening one if needed). `body` is the
/// turn's HTTP body as built for this account (the whole conversation as `input`).
pub async fn send(
    turn: &Turn,
    account: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    limits: Limits,
    proxy: Option<&Secret>,
) -> Result<Sent, SendError> {
    let reused = match turn.link.take() {
        Some(open) if open.account == account => Some(open),
        // The conversation moved to another account: that socket is done with.
        Some(mut other) => {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, other.socket.close(None)).await;
            None
        }
        None => None,
    };
    if let Some(mut open) = reused {
        let delta = turn
            .previous
            .as_ref()
            .filter(|p| open.last_response.as_ref() == Some(p))
            .and_then(|p| continuation(body, p, turn.new_items));
        let continued = delta.is_some();
        let message = delta.unwrap_or_else(|| create_message(body));
        let mut first = first_event(&mut open.socket, message, limits.keepalive).await;
        if continued && matches!(&first, First::Event(text) if forgot_previous(text)) {
            // The upstream no longer holds the conversation: once more, whole.
            tracing::debug!(
                account,
                "the upstream WebSocket forgot the previous response; sending the whole conversation"
            );
            first = first_event(&mut open.socket, create_message(body), limits.keepalive).await;
        }
        match first {
            First::Event(text) => {
                return Ok(Sent::Answer(answer(
                    turn,
                    open,
                    text,
                    None,
                    limits.keepalive,
                )))
            }
            // Closed while idle between turns: once more on a new socket, whole.
            First::Gone => {
                tracing::debug!(
                    account,
                    "the upstream WebSocket was closed between turns; reopening it"
                );
            }
            First::Failed(e) => return Err(e),
        }
    }
    let (socket, handshake) = match connect(uri, headers, limits, proxy).await? {
        Connected::Socket(socket, handshake) => (socket, handshake),
        Connected::Failed(answer) => return Ok(Sent::Answer(answer)),
        Connected::Refused(status) => return Ok(Sent::Refused(status)),
    };
    let mut open = Open {
        account: account.to_owned(),
        socket: *socket,
        last_response: None,
    };
    match first_event(&mut open.socket, create_message(body), limits.keepalive).await {
        First::Event(text) => Ok(Sent::Answer(answer(
            turn,
            open,
            text,
            Some(handshake),
            limits.keepalive,
        ))),
        First::Gone => Err(SendError::new(
            false,
            &std::io::Error::other("the upstream closed the WebSocket before any event"),
        )),
        First::Failed(e) => Err(e),
    }
}

enum Connected {
    Socket(Box<Socket>, HeaderMap),
    /// The upgrade was answered with an error that concerns the account, not the transport
    /// (401, 403, 408, 429, 5xx): the attempt's answer, as over HTTP.
    Failed(Response),
    Refused(StatusCode),
}

/// Whether an answer to the upgrade says the account or the upstream failed (handled like the
/// same answer to a POST) rather than that the transport is not served there.
fn fails_the_attempt(status: StatusCode) -> bool {
    matches!(status.as_u16(), 401 | 403 | 408 | 429) || status.is_server_error()
}

/// Opens a socket to the account's Responses URL within `limits.connect_timeout`, through the
/// account's `proxy` if it has one.
async fn connect(
    uri: &Uri,
    headers: &HeaderMap,
    limits: Limits,
    proxy: Option<&Secret>,
) -> Result<Connected, SendError> {
    let connect_error = |e: &(dyn std::error::Error + 'static)| SendError::new(true, e);
    let tls = uri.scheme_str() == Some("https");
    let host = uri.host().unwrap_or_default().to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let ws_uri: Uri = format!(
        "{}://{}{}",
        if tls { "wss" } else { "ws" },
        uri.authority().map_or("", |a| a.as_str()),
        uri.path_and_query().map_or("/", |p| p.as_str())
    )
    .parse()
    .map_err(|e: http::uri::InvalidUri| connect_error(&e))?;
    let mut request = ws_uri
        .into_client_request()
        .map_err(|e| connect_error(&e))?;
    for (name, value) in headers {
        if !NOT_ON_UPGRADE.contains(name) {
            request.headers_mut().append(name.clone(), value.clone());
        }
    }
    request
        .headers_mut()
        .insert("openai-beta", HeaderValue::from_static(BETA));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message));
    let open = async {
        let tcp: Box<dyn Io> = match proxy {
            None => Box::new(
                super::h2_connection::connect_tcp(&host, port)
                    .await
                    .map_err(|e| connect_error(&e))?,
            ),
            Some(proxy) => super::tunnel::open(proxy.expose(), &host, port)
                .await
                .map_err(|e| connect_error(&e))?,
        };
        let stream: Box<dyn Io> = if tls {
            let mut config = super::trust::client_config()
                .map_err(|e| connect_error(&std::io::Error::other(e)))?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| connect_error(&e))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| connect_error(&e))?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
            Ok((socket, response)) => Ok(Connected::Socket(
                Box::new(socket),
                response.headers().clone(),
            )),
            Err(tungstenite::Error::Http(response)) if fails_the_attempt(response.status()) => {
                let (parts, body) = response.into_parts();
                let body = Bytes::from(body.unwrap_or_default());
                let mut answer = http::Response::new(Body::Socket(Box::new(TurnBody::done(body))));
                *answer.status_mut() = parts.status;
                *answer.headers_mut() = parts.headers;
                Ok(Connected::Failed(answer))
            }
            Err(tungstenite::Error::Http(response)) => Ok(Connected::Refused(response.status())),
            Err(e) => Err(connect_error(&e)),
        }
    };
    match tokio::time::timeout(limits.connect_timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(connect_error(&std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "the WebSocket handshake with {host}:{port} took longer than gateway.connect_timeout"
            ),
        ))),
    }
}

enum First {
    Event(tungstenite::Utf8Bytes),
    /// The socket was closed (or broke) before any event.
    Gone,
    Failed(SendError),
}

/// Sends the message and reads the first event of its answer.
async fn first_event(socket: &mut Socket, message: String, keepalive: Option<Duration>) -> First {
    if socket.send(Message::text(message)).await.is_err() {
        return First::Gone;
    }
    loop {
        match next_message(socket, keepalive).await {
            Some(Ok(Message::Text(text))) => return First::Event(text),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Binary(_))) => {
                return First::Failed(SendError::new(
                    false,
                    &std::io::Error::other("the upstream sent a binary WebSocket message"),
                ))
            }
            Some(Ok(Message::Close(_))) | None => return First::Gone,
            Some(Err(tungstenite::Error::Capacity(e))) => {
                return First::Failed(SendError::new(false, &e))
            }
            Some(Err(_)) => return First::Gone,
        }
    }
}

/// The socket's next message; a ping goes out after each `keepalive` of silence (a ping that
/// cannot be sent ends the socket like a broken read).
async fn next_message(
    socket: &mut Socket,
    keepalive: Option<Duration>,
) -> Option<Result<Message, tungstenite::Error>> {
    let Some(every) = keepalive else {
        return socket.next().await;
    };
    loop {
        // `next` is cancel-safe: a message half read stays in the stream's buffer.
        match tokio::time::timeout(every, socket.next()).await {
            Ok(next) => return next,
            Err(_) => {
                if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The relay's view of the answer that starts with `first`.
fn answer(
    turn: &Turn,
    open: Open,
    first: tungstenite::Utf8Bytes,
    handshake: Option<HeaderMap>,
    keepalive: Option<Duration>,
) -> Response {
    let mut headers = HeaderMap::new();
    // The upgrade's answer may carry the account's quota headers.
    if let Some(handshake) = handshake {
        for (name, value) in &handshake {
            let name_str = name.as_str();
            if name_str.starts_with("x-codex-") || name_str.starts_with("x-ratelimit") {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let error = error_status(first.as_str());
    if let Some((status, body)) = error {
        // The socket stays usable after an error event, except one whose credential was
        // refused: it was opened with that credential, and a retry needs a new one.
        if status != StatusCode::UNAUTHORIZED {
            turn.link.put(open);
        }
        let mut response = http::Response::new(Body::Socket(Box::new(TurnBody::done(body))));
        *response.status_mut() = status;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        *response.headers_mut() = headers;
        return response;
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    let body = TurnBody {
        first: Some(first),
        open: Some(open),
        link: Arc::clone(&turn.link),
        keepalive,
        ended: None,
    };
    let mut response = http::Response::new(Body::Socket(Box::new(body)));
    *response.headers_mut() = headers;
    response
}

/// `{"type":"error","status":429,"error":{…}}`: the status and `{"error":{…}}`.
fn error_status(text: &str) -> Option<(StatusCode, Bytes)> {
    #[derive(serde::Deserialize)]
    struct ErrorEvent<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
        status: Option<u16>,
        #[serde(borrow)]
        error: Option<&'a serde_json::value::RawValue>,
    }
    let event: ErrorEvent<'_> = serde_json::from_str(text).ok()?;
    if event.kind != "error" {
        return None;
    }
    let status = StatusCode::from_u16(event.status?).ok()?;
    if !(status.is_client_error() || status.is_server_error()) {
        return None;
    }
    let error = event.error.map_or("{}", |e| e.get());
    Some((status, Bytes::from(format!(r#"{{"error":{error}}}"#))))
}

/// An `error` event saying the upstream does not know the `previous_response_id` it was sent.
fn forgot_previous(text: &str) -> bool {
    text.contains("previous_response_not_found")
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|event| {
            event["type"] == "error" && event["error"]["code"] == "previous_response_not_found"
        })
}

/// `{"type":"response.create", …body}`.
fn create_message(body: &Bytes) -> String {
    let text = String::from_utf8_lossy(body);
    let rest = text.trim_start().strip_prefix('{').unwrap_or("}");
    let rest = rest.trim_start();
    if rest.starts_with('}') {
        return r#"{"type":"response.create"}"#.to_owned();
    }
    format!(r#"{{"type":"response.create",{rest}"#)
}

/// The turn's message with only its last `new_items` input items and `previous_response_id`:
/// `None` when the body cannot be taken apart (the whole one is sent instead).
fn continuation(body: &Bytes, previous: &str, new_items: usize) -> Option<String> {
    use indexmap::IndexMap;
    use serde_json::value::RawValue;
    let mut fields: IndexMap<String, Box<RawValue>> = serde_json::from_slice(body).ok()?;
    let input: Vec<Box<RawValue>> = serde_json::from_str(fields.get("input")?.get()).ok()?;
    let tail = &input[input.len().checked_sub(new_items)?..];
    fields.insert(
        "input".to_owned(),
        serde_json::value::to_raw_value(tail).ok()?,
    );
    fields.insert(
        "previous_response_id".to_owned(),
        serde_json::value::to_raw_value(previous).ok()?,
    );
    let mut message: IndexMap<String, Box<RawValue>> = IndexMap::with_capacity(fields.len() + 1);
    message.insert(
        "type".to_owned(),
        serde_json::value::to_raw_value("response.create").ok()?,
    );
    message.extend(fields);
    serde_json::to_string(&message).ok()
}

// === TurnBody ===

/// A turn's events as an SSE body. At the turn's terminal event the socket goes back to the
/// link (with the completed response's id); a socket that broke or was closed mid-turn is
/// dropped, and the body ends without a terminal event (the relay tells the client in-protocol).
pub struct TurnBody {
    first: Option<tungstenite::Utf8Bytes>,
    open: Option<Open>,
    link: Arc<Link>,
    keepalive: Option<Duration>,
    /// An error answer's body, handed over once.
    ended: Option<Bytes>,
}

impl TurnBody {
    fn done(body: Bytes) -> Self {
        Self {
            first: None,
            open: None,
            link: Arc::new(Link::default()),
            keepalive: None,
            ended: Some(body),
        }
    }

    pub(super) async fn chunk(&mut self) -> Option<Result<Bytes, SendError>> {
        if let Some(body) = self.ended.take() {
            return Some(Ok(body));
        }
        if let Some(first) = self.first.take() {
            return Some(Ok(self.event(&first)));
        }
        let open = self.open.as_mut()?;
        loop {
            let next = next_message(&mut open.socket, self.keepalive).await;
            match next {
                Some(Ok(Message::Text(text))) => return Some(Ok(self.event(&text))),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Binary(_))) => {
                    self.open = None;
                    return Some(Err(SendError::new(
                        false,
                        &std::io::Error::other("the upstream sent a binary WebSocket message"),
                    )));
                }
                Some(Ok(Message::Close(_))) | None => {
                    self.open = None;
                    return None;
                }
                Some(Err(e)) => {
                    self.open = None;
                    return Some(Err(SendError::new(false, &e)));
                }
            }
        }
    }

    /// One upstream message as an SSE event; a terminal one gives the socket back.
    fn event(&mut self, text: &str) -> Bytes {
        #[derive(serde::Deserialize)]
        struct Head<'a> {
            #[serde(rename = "type", borrow)]
            kind: Option<std::borrow::Cow<'a, str>>,
            response: Option<Id>,
        }
        #[derive(serde::Deserialize)]
        struct Id {
            id: Option<String>,
        }
        let head: Option<Head<'_>> = serde_json::from_str(text).ok();
        let kind = head
            .as_ref()
            .and_then(|h| h.kind.as_deref())
            .unwrap_or("message")
            .to_owned();
        let terminal = matches!(
            kind.as_str(),
            "response.completed" | "response.incomplete" | "response.failed" | "error"
        );
        if terminal {
            if let Some(mut open) = self.open.take() {
                if kind == "response.completed" {
                    open.last_response = head.and_then(|h| h.response).and_then(|r| r.id);
                }
                self.link.put(open);
            }
        }
        let mut out = BytesMut::with_capacity(text.len() + kind.len() + 16);
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\n");
        for line in text.split('\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line.trim_end_matches('\r').as_bytes());
            out.extend_from_slice(b"\n");
        }
        out.extend_from_slice(b"\n");
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// A socket pair over an in-memory pipe: the gateway's end and the upstream's.
    async fn pair() -> (Socket, WebSocketStream<tokio::io::DuplexStream>) {
        use tokio_tungstenite::tungstenite::protocol::Role;
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let ours: Box<dyn Io> = Box::new(ours);
        let client = WebSocketStream::from_raw_socket(ours, Role::Client, None).await;
        let server = WebSocketStream::from_raw_socket(theirs, Role::Server, None).await;
        (client, server)
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_waiting_in_silence_pings_the_upstream_and_a_completed_turn_gives_the_socket_back(
    ) {
        let (socket, mut upstream) = pair().await;
        let link = Arc::new(Link::default());
        let mut body = TurnBody {
            first: None,
            open: Some(Open {
                account: "a".to_owned(),
                socket,
                last_response: None,
            }),
            link: Arc::clone(&link),
            keepalive: Some(Duration::from_secs(10)),
            ended: None,
        };
        let upstream_side = async {
            let first = upstream.next().await.unwrap().unwrap();
            assert!(matches!(first, Message::Ping(_)), "{first:?}");
            upstream
                .send(Message::text(
                    r#"{"type":"response.completed","response":{"id":"resp_9"}}"#,
                ))
                .await
                .unwrap();
        };
        let (chunk, ()) = tokio::join!(body.chunk(), upstream_side);
        let chunk = chunk.unwrap().unwrap();
        assert!(
            chunk.starts_with(b"event: response.completed\ndata: {"),
            "{chunk:?}"
        );
        let open = link.take().expect("the socket went back to the link");
        assert_eq!(open.last_response.as_deref(), Some("resp_9"));
        assert!(body.chunk().await.is_none(), "the turn ended");
    }

    #[tokio::test]
    async fn a_socket_closed_mid_turn_ends_the_body_and_is_not_reused() {
        let (socket, mut upstream) = pair().await;
        let link = Arc::new(Link::default());
        let mut body = TurnBody {
            first: Some(r#"{"type":"response.created"}"#.into()),
            open: Some(Open {
                account: "a".to_owned(),
                socket,
                last_response: None,
            }),
            link: Arc::clone(&link),
            keepalive: None,
            ended: None,
        };
        let first = body.chunk().await.unwrap().unwrap();
        assert!(first.starts_with(b"event: response.created\n"));
        upstream.close(None).await.unwrap();
        assert!(body.chunk().await.is_none());
        assert!(link.take().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn between_turns_the_socket_is_pinged_and_dropped_once_the_upstream_closes_it() {
        let (socket, mut upstream) = pair().await;
        let link = Link::default();
        link.put(Open {
            account: "a".to_owned(),
            socket,
            last_response: None,
        });
        let upstream_side = async {
            let first = upstream.next().await.unwrap().unwrap();
            assert!(matches!(first, Message::Ping(_)), "{first:?}");
            upstream.close(None).await.unwrap();
            while upstream.next().await.is_some() {}
        };
        tokio::select! {
            () = link.idle(Some(Duration::from_secs(10))) => unreachable!("idle never ends"),
            () = upstream_side => {}
        }
        assert!(link.take().is_none(), "a closed socket is not kept");
    }

    #[tokio::test]
    async fn a_cancelled_wait_between_turns_keeps_the_socket() {
        let (socket, _upstream) = pair().await;
        let link = Link::default();
        link.put(Open {
            account: "a".to_owned(),
            socket,
            last_response: Some("resp_1".to_owned()),
        });
        tokio::select! {
            biased;
            () = link.idle(None) => unreachable!("idle never ends"),
            () = std::future::ready(()) => {}
        }
        let open = link.take().expect("the socket is back in the link");
        assert_eq!(open.last_response.as_deref(), Some("resp_1"));
    }

    #[test]
    fn a_continuation_carries_only_the_new_items_and_the_previous_id() {
        let body = Bytes::from_static(
            br#"{"model":"gpt-5","input":[{"a":1},{"b":2},{"c":3}],"store":false}"#,
        );
        let message = continuation(&body, "resp_1", 1).unwrap();
        let v: serde_json::Value = serde_json::from_str(&message).unwrap();
        assert_eq!(v["type"], "response.create");
        assert_eq!(v["previous_response_id"], "resp_1");
        assert_eq!(v["input"], serde_json::json!([{"c": 3}]));
        assert_eq!(v["store"], false);
        assert!(continuation(&body, "resp_1", 4).is_none());
    }

    #[test]
    fn a_whole_turn_is_the_body_with_its_type() {
        let body = Bytes::from_static(br#"{"model":"gpt-5","input":[]}"#);
        let v: serde_json::Value = serde_json::from_str(&create_message(&body)).unwrap();
        assert_eq!(v["type"], "response.create");
        assert_eq!(v["model"], "gpt-5");
    }

    #[test]
    fn an_error_event_with_a_status_is_an_error_answer() {
        let (status, body) = error_status(
            r#"{"type":"error","status":429,"error":{"type":"usage_limit_reached","message":"m"}}"#,
        )
        .unwrap();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "usage_limit_reached");
        assert!(error_status(r#"{"type":"response.created"}"#).is_none());
        assert!(error_status(r#"{"type":"error","error":{}}"#).is_none());
    }
}
