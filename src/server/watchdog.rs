//! Per-connection timers: how long a client may take to send a request head, and how long a
//! kept-alive connection may sit between requests.
//!
//! hyper's own header-read timeout starts whenever it waits for a head, so it would also be the
//! idle timeout; these two need different lengths. A connection is in one of three phases:
//!
//! - `HEAD`: waiting for a request head to be complete (from the connection's start, or from
//!   the first byte after the previous response) → `server.header_read_timeout`;
//! - `BUSY`: a request is being served and its response sent (a stream may take hours; its body
//!   upload has its own `server.body_read_timeout`) → no timer;
//! - `IDLE`: the last response is sent, no byte of the next request yet → `server.idle_timeout`.
//!
//! [`Watched`] sees the bytes read (`IDLE` → `HEAD`), [`Activity::begin`] the request handed to
//! the router (→ `BUSY`), and dropping its [`InFlight`] (with the response body, once hyper has
//! written it) ends it (→ `IDLE`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

const HEAD: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;

/// Which timer ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    HeaderRead,
    Idle,
}

/// The phase of one connection, shared by its socket wrapper, its service and its watchdog.
pub struct Activity {
    phase: AtomicU8,
    in_flight: AtomicUsize,
    changed: Notify,
}

impl Activity {
    /// A new connection waits for its first request head.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            phase: AtomicU8::new(HEAD),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    fn set(&self, phase: u8) {
        if self.phase.swap(phase, Ordering::AcqRel) != phase {
            self.changed.notify_one();
        }
    }

    /// Bytes arrived: between requests, that starts the next head.
    fn bytes_read(&self) {
        if self
            .phase
            .compare_exchange(IDLE, HEAD, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A request head was read and goes to the router; the connection is busy until the
    /// returned guard is dropped (with the response body).
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.set(BUSY);
        InFlight(Arc::clone(self))
    }

    /// Resolves when the current phase's timer runs out; never while a request is in flight.
    pub async fn expired(&self, header_read: Duration, idle: Duration) -> Expired {
        loop {
            let (limit, what) = match self.phase.load(Ordering::Acquire) {
                HEAD => (Some(header_read), Expired::HeaderRead),
                IDLE => (Some(idle), Expired::Idle),
                _ => (None, Expired::Idle),
            };
            match limit {
                // A change stored as a permit while we were not waiting wakes us at once.
                None => self.changed.notified().await,
                Some(limit) => {
                    tokio::select! {
                        () = self.changed.notified() => {}
                        () = tokio::time::sleep(limit) => return what,
                    }
                }
            }
        }
    }
}

/// A request being served; dropped when hyper is done with its response body.
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.set(IDLE);
        }
    }
}

/// The client socket, telling [`Activity`] when bytes arrive. Writes pass straight through,
/// except hyper's own empty-bodied 400/414/431, which get a JSON body ([`super::hyper_errors`]).
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    /// Our answer in place of hyper's automatic one, and how much of it is written.
    replacement: Option<(Vec<u8>, usize)>,
    /// The connection's `server.max_connections` slot, held by the socket itself: a connection
    /// upgraded to a WebSocket leaves hyper (and `serve_connection`) but keeps its slot until the
    /// socket closes.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            replacement: None,
            _slot: None,
        }
    }

    /// Holds `slot` for as long as the socket lives.
    pub fn holding(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }
}

impl<T: AsyncWrite + Unpin> Watched<T> {
    /// Writes what is left of the replacement answer, if any.
    fn write_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written >= bytes.len() {
                self.replacement = None;
                break;
            }
            match Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// When `head` is hyper's automatic error answer (never while a request is served), takes
    /// it as written and starts writing ours instead.
    fn replace(&mut self, cx: &mut Context<'_>, head: &[u8]) -> Option<Poll<io::Result<usize>>> {
        if self.activity.phase.load(Ordering::Acquire) == BUSY {
            return None;
        }
        let status = super::hyper_errors::automatic_error(head)?;
        self.replacement = Some((super::hyper_errors::json_answer(status), 0));
        // What is not written yet goes out on the flush hyper does next.
        Some(match self.write_replacement(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(head.len())),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

/// hyper's automatic answers are about 120 bytes; anything longer is not one.
const LONGEST_AUTOMATIC_ANSWER: usize = 160;

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.write_replacement(cx) {
            return Poll::Ready(Err(e));
        }
        if this.replacement.is_some() {
            return Poll::Pending;
        }
        if let Some(done) = this.replace(cx, buf) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(Err(e)) = this.write_replacement(cx) {
            return Poll::Ready(Err(e));
        }
        if this.replacement.is_some() {
            return Poll::Pending;
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let starts_like_a_head = bufs
            .iter()
            .find(|b| !b.is_empty())
            .is_some_and(|b| b.starts_with(b"H"));
        if starts_like_a_head && total <= LONGEST_AUTOMATIC_ANSWER {
            let joined: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            if let Some(done) = this.replace(cx, &joined) {
                return done;
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.write_replacement(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.write_replacement(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::disallowed_methods,
        reason = "tests may block and spawn freely"
    )]
    use super::*;

    const HEADER: Duration = Duration::from_secs(30);
    const IDLE_LIMIT: Duration = Duration::from_secs(120);

    const HYPER_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 00:03:08 GMT\r\n\r\n";

    async fn written_through(activity: Arc<Activity>, bytes: &[u8]) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, mut theirs) = tokio::io::duplex(4096);
        let mut watched = Watched::new(ours, activity);
        watched.write_all(bytes).await.unwrap();
        watched.shutdown().await.unwrap();
        drop(watched);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn hypers_automatic_answer_is_replaced_but_never_a_served_requests() {
        let waiting = Activity::new();
        let got = written_through(waiting, HYPER_431).await;
        let text = String::from_utf8(got).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.contains("\"code\":\"headers_too_large\""), "{text}");
        // The same bytes while a request is served are that request's: passed on untouched.
        let serving = Activity::new();
        let _request = serving.begin();
        assert_eq!(written_through(serving, HYPER_431).await, HYPER_431);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_connection_has_the_header_read_timeout() {
        let activity = Activity::new();
        let started = tokio::time::Instant::now();
        assert_eq!(
            activity.expired(HEADER, IDLE_LIMIT).await,
            Expired::HeaderRead
        );
        assert_eq!(started.elapsed(), HEADER);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_timed_out_and_idle_follows_it() {
        let activity = Activity::new();
        let request = activity.begin();
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move {
                let expired = activity.expired(HEADER, IDLE_LIMIT).await;
                (expired, tokio::time::Instant::now())
            }
        });
        // A response streaming for an hour: no timer runs.
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert!(!watchdog.is_finished());
        let done = tokio::time::Instant::now();
        drop(request);
        let (expired, at) = watchdog.await.unwrap();
        assert_eq!(expired, Expired::Idle);
        assert_eq!(at - done, IDLE_LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_byte_after_a_response_starts_the_header_timer() {
        let activity = Activity::new();
        drop(activity.begin());
        let watchdog = tokio::spawn({
            let activity = Arc::clone(&activity);
            async move {
                let expired = activity.expired(HEADER, IDLE_LIMIT).await;
                (expired, tokio::time::Instant::now())
            }
        });
        tokio::time::sleep(Duration::from_secs(100)).await;
        let first_byte = tokio::time::Instant::now();
        activity.bytes_read();
        let (expired, at) = watchdog.await.unwrap();
        assert_eq!(expired, Expired::HeaderRead);
        assert_eq!(at - first_byte, HEADER);
    }
}
