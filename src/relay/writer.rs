//! The downstream writer: one state machine owns the client connection.
//!
//! ```text
//!   Pending ──keepalive──▶ Committed ──output──▶ Output
//!      │                       │                   │
//!      └──finish (any status)──┴──finish (200)─────┴──▶ Closed
//! ```
//! - `Pending`: nothing sent; the status code is still free.
//! - `Committed`: `200` and headers sent, plus only keepalive bytes (`\n` before JSON,
//!   `: keepalive` comments in SSE). The client has seen no content, so failover is allowed.
//! - `Output`: semantic bytes sent. No failover; failures are reported in-protocol.
//!
//! Keepalives are written only from inside [`DownstreamWriter::wait`], by the same object that
//! writes the answer, so two writers can never interleave. A client that went away turns every
//! later write into a no-op; the relay goes on (to learn usage) without noticing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body::Frame;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep_until, Instant};

/// How the answer's body is framed, which decides what a keepalive looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyMode {
    /// One JSON document; keepalive is a `\n` before it (JSON allows leading whitespace).
    Json,
    /// Server-sent events; keepalive is a `: keepalive` comment.
    Sse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterState {
    Pending,
    Committed,
    Output,
    Closed,
}

/// Where the handler waits for the response head (or the whole response).
pub type HeadReceiver = oneshot::Receiver<Response>;

/// Chunks queued towards a slow client before the relay waits for it.
const CHANNEL_DEPTH: usize = 16;
const SSE_KEEPALIVE: &[u8] = b": keepalive\n\n";
const JSON_KEEPALIVE: &[u8] = b"\n";

pub struct DownstreamWriter {
    state: WriterState,
    mode: BodyMode,
    keepalive: Option<Duration>,
    next_keepalive: Option<Instant>,
    head: Option<oneshot::Sender<Response>>,
    body: Option<mpsc::Sender<Bytes>>,
    client_gone: bool,
    request_id: HeaderValue,
    keepalives_sent: u32,
    /// Body bytes handed to the connection (for the access log).
    bytes_out: u64,
}

/// The headers every answer carries.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl DownstreamWriter {
    /// `keepalive` is the interval for this request's mode (`None` = off).
    pub fn new(
        mode: BodyMode,
        keepalive: Option<Duration>,
        request_id: &str,
    ) -> (Self, HeadReceiver) {
        let (tx, rx) = oneshot::channel();
        let writer = Self {
            state: WriterState::Pending,
            mode,
            keepalive,
            next_keepalive: None,
            head: Some(tx),
            body: None,
            client_gone: false,
            request_id: HeaderValue::from_str(request_id)
                .unwrap_or(HeaderValue::from_static("invalid")),
            keepalives_sent: 0,
            bytes_out: 0,
        };
        (writer, rx)
    }

    pub fn state(&self) -> WriterState {
        self.state
    }

    pub fn mode(&self) -> BodyMode {
        self.mode
    }

    /// True while the client has seen no content: another account may still answer.
    pub fn can_fail_over(&self) -> bool {
        matches!(self.state, WriterState::Pending | WriterState::Committed)
    }

    pub fn client_gone(&self) -> bool {
        self.client_gone
    }

    #[cfg(test)]
    pub fn keepalives_sent(&self) -> u32 {
        self.keepalives_sent
    }

    pub fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Awaits `fut`. While it is pending, a keepalive goes out every interval; the first one an
    /// interval after the first wait began (so a fast answer or a fast failure is unaffected),
    /// later ones an interval after the last byte written.
    pub async fn wait<F: Future>(&mut self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let Some(interval) = self.keepalive.filter(|_| self.state != WriterState::Closed) else {
            return fut.await;
        };
        loop {
            let deadline = *self
                .next_keepalive
                .get_or_insert_with(|| Instant::now() + interval);
            let client_here = !self.client_gone;
            tokio::select! {
                biased;
                out = &mut fut => return out,
                _ = sleep_until(deadline), if client_here => {
                    self.send_keepalive();
                    self.next_keepalive = Some(Instant::now() + interval);
                }
            }
        }
    }

    /// A wait in a queue (for a slot, not for an upstream). Only a streaming client gets
    /// keepalives here: a blank line would commit a JSON answer to 200 before the request even
    /// reached an account, and turn a "pool busy" 429 into an error body.
    pub async fn wait_in_queue<F: Future>(&mut self, fut: F) -> F::Output {
        match self.mode {
            BodyMode::Sse => self.wait(fut).await,
            BodyMode::Json => fut.await,
        }
    }

    fn send_keepalive(&mut self) {
        let bytes = match self.mode {
            BodyMode::Json if self.state == WriterState::Output => return,
            BodyMode::Json => JSON_KEEPALIVE,
            BodyMode::Sse => SSE_KEEPALIVE,
        };
        if self.state == WriterState::Pending {
            self.commit(StatusCode::OK, HeaderMap::new());
            if self.client_gone {
                return;
            }
            self.state = WriterState::Committed;
        }
        if let Some(body) = &self.body {
            // A keepalive is dropped rather than awaited when the client is slow: real bytes
            // are already queued, and they keep the connection busy just as well.
            match body.try_send(Bytes::from_static(bytes)) {
                Ok(()) => {
                    self.keepalives_sent += 1;
                    if let Some(metrics) = crate::metrics::get() {
                        metrics.keepalive_bytes(bytes.len());
                    }
                    self.bytes_out += bytes.len() as u64;
                }
                Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => self.gone(),
            }
        }
    }

    /// Sends the head of a streamed answer and opens the body channel.
    fn commit(&mut self, status: StatusCode, extra: HeaderMap) {
        let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
        let mut response = Response::new(Body::new(ChannelBody { rx }));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.extend(extra);
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static(match self.mode {
                BodyMode::Json => "application/json",
                BodyMode::Sse => "text/event-stream",
            }),
        );
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx not to buffer: a buffered keepalive never reaches the client.
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        headers.insert(REQUEST_ID, self.request_id.clone());
        self.body = Some(tx);
        self.send_head(response);
    }

    /// Hands the head to the waiting handler; if it is gone, so is the client.
    fn send_head(&mut self, response: Response) {
        let sent = self
            .head
            .take()
            .is_some_and(|head| head.send(response).is_ok());
        if !sent {
            self.gone();
        }
    }

    fn gone(&mut self) {
        self.client_gone = true;
        self.body = None;
    }

    /// Writes semantic stream bytes. The first call commits `200` with `headers` if nothing was
    /// sent yet. After this, failover is over.
    pub async fn write_output(&mut self, headers: HeaderMap, bytes: Bytes) {
        if self.state == WriterState::Pending {
            self.commit(StatusCode::OK, headers);
        }
        if self.state != WriterState::Closed {
            self.state = WriterState::Output;
        }
        self.push(bytes).await;
        if let Some(interval) = self.keepalive {
            self.next_keepalive = Some(Instant::now() + interval);
        }
    }

    async fn push(&mut self, bytes: Bytes) {
        if let Some(body) = &self.body {
            let len = bytes.len() as u64;
            if body.send(bytes).await.is_err() {
                self.gone();
            } else {
                self.bytes_out += len;
            }
        }
    }

    /// Ends the answer with a complete body. While pending, `status` and `headers` are sent as
    /// they are (with a `Content-Length`); after a commit the status stays 200 and the body
    /// follows the keepalive bytes.
    pub async fn finish(&mut self, status: StatusCode, headers: HeaderMap, body: Bytes) {
        let whole_answer_handed_over = match self.state {
            WriterState::Pending => {
                self.bytes_out += body.len() as u64;
                let mut response = Response::new(Body::from(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                response
                    .headers_mut()
                    .insert(REQUEST_ID, self.request_id.clone());
                self.send_head(response);
                true
            }
            WriterState::Committed | WriterState::Output => {
                self.push(body).await;
                false
            }
            WriterState::Closed => false,
        };
        self.close();
        if whole_answer_handed_over {
            // Let the connection's task write the answer before this task goes on to the
            // bookkeeping (account state, sticky binding, usage record): on a single-threaded
            // runtime it would otherwise wait for all of it.
            tokio::task::yield_now().await;
        }
    }

    /// Ends the answer; dropping the channel ends the chunked body cleanly.
    pub fn close(&mut self) {
        self.state = WriterState::Closed;
        self.body = None;
        self.head = None;
    }
}

/// The body of a committed answer: chunks from the relay, in order.
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

#[cfg(test)]
mod tests;
