//! Accepting connections and serving HTTP/1.1 on them until shutdown.
//!
//! hyper's HTTP/1 server directly, not axum's `serve`: that one first reads a few bytes to tell
//! HTTP/2 from HTTP/1 and hands them back through a rewinding wrapper, and hyper's read buffer
//! then grows from 8 to 16 KiB on the second read of every connection (heaptrack: the largest
//! allocation of an open stream). The listener speaks HTTP/1.1 only; TLS and HTTP/2 towards
//! clients belong to the proxy in front (nginx, Cloudflare), which talks HTTP/1.1 to its origin.
//!
//! Every connection holds one of `server.max_connections` slots (shared by all workers); one
//! accepted beyond them is closed at once, so those already open (a load balancer's `/healthz`
//! included) keep being served. Its head and its idle time between requests are bounded by
//! [`super::watchdog`]. A connection upgraded to a WebSocket keeps its slot (the socket holds
//! it) until the socket closes; the head timeout applies to its upgrade request.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::body_timer::TimedBody;
use super::watchdog::{Activity, Expired, Watched};
use crate::http::PeerAddr;

/// How long to wait before accepting again after an error that is not about one connection
/// (out of file descriptors, out of memory): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// hyper's read buffer of a connection, at most. hyper starts each connection with 8 KiB and
/// doubles the buffer while reads fill it, by default up to about 400 KiB: a request with a
/// large body (a conversation of a few hundred KiB) left the connection holding a buffer of
/// half its size or more for as long as the answer streams (heaptrack: 128 KiB per open stream
/// after a 256 KiB body). Capped here (`max_buf_size`; hyper allows no cap below 8 KiB, and the
/// buffer may overshoot it by one growth step), a large body takes more, smaller reads. The
/// cap is a soft limit on the head, so the head gets the same limit as a hard one
/// (`max_header_size`): a request line and headers over 32 KiB are refused with 431 (nginx's
/// default `large_client_header_buffers 4 8k` also allows 32 KiB of header lines).
const READ_BUFFER_LIMIT: usize = 32 * 1024;

/// At most one log line per this with the connections refused over the cap.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The limits every connection of every worker shares.
pub struct ConnectionPolicy {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_read_timeout: Duration,
    /// `server.max_connections`, for the log.
    cap: usize,
    slots: Arc<Semaphore>,
    refusals: Refusals,
}

impl ConnectionPolicy {
    pub fn new(
        header_read_timeout: Duration,
        idle_timeout: Duration,
        body_read_timeout: Duration,
        cap: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            header_read_timeout,
            idle_timeout,
            body_read_timeout,
            cap,
            slots: Arc::new(Semaphore::new(cap.min(Semaphore::MAX_PERMITS))),
            refusals: Refusals::default(),
        })
    }
}

/// Connections refused since the last log line about them.
#[derive(Default)]
struct Refusals(Mutex<RefusalCount>);

#[derive(Default)]
struct RefusalCount {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    /// Counts one refusal; answers the count to log when a line is due.
    fn count(&self, now: Instant) -> Option<u64> {
        let mut count = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        count.unlogged += 1;
        let due = count
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_EVERY);
        if !due {
            return None;
        }
        count.logged_at = Some(now);
        Some(std::mem::take(&mut count.unlogged))
    }
}

/// Serves `app` on `listener` until `stop`; then every open connection finishes its request in
/// flight and closes, and this returns when all have.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    stop: CancellationToken,
    policy: Arc<ConnectionPolicy>,
) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((tcp, peer)) => match Arc::clone(&policy.slots).try_acquire_owned() {
                Ok(slot) => {
                    // Which worker took it (its thread: `main` or `subrelay-wN`); off unless
                    // `log.level` enables debug for this module.
                    tracing::debug!(
                        worker = std::thread::current().name().unwrap_or("unnamed"),
                        "connection accepted"
                    );
                    connections.spawn(serve_connection(
                        tcp,
                        peer,
                        app.clone(),
                        stop.clone(),
                        Arc::clone(&policy),
                        slot,
                    ));
                }
                Err(_) => {
                    drop(tcp);
                    if let Some(n) = policy.refusals.count(Instant::now()) {
                        tracing::warn!(
                            refused = n,
                            "server.max_connections ({}) reached: refused {n} new connection(s) since the last such line",
                            policy.cap
                        );
                    }
                }
            },
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!("cannot accept a connection: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    app: Router,
    stop: CancellationToken,
    policy: Arc<ConnectionPolicy>,
    slot: OwnedSemaphorePermit,
) {
    // Every SSE event should leave at once, not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(Watched::new(tcp, Arc::clone(&activity)).holding(slot));
    let router = TowerToHyperService::new(app);
    let body_read_timeout = policy.body_read_timeout;
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: http::Request<Incoming>| {
            let mut request = request.map(|body| TimedBody::new(body, body_read_timeout));
            request.extensions_mut().insert(PeerAddr(peer));
            let in_flight = activity.begin();
            let call = hyper::service::Service::call(&router, request);
            async move {
                let response = call.await?;
                // The guard lives as long as the response body: until hyper has sent its last
                // byte (or the client left), the connection is busy, never idle.
                Ok::<_, std::convert::Infallible>(response.map(move |body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                }))
            }
        })
    };
    // No hyper timer: its header-read timeout would also be the idle timeout, see watchdog.
    // Upgrades on: a Responses WebSocket takes the socket (and its slot) over from hyper, and
    // this future ends when the 101 went out.
    // hyper writes vectored (`writev`) on its own, since the socket supports it: the answer's
    // chunks are queued, not copied into its 8 KiB head buffer.
    let connection = hyper::server::conn::http1::Builder::new()
        .max_buf_size(READ_BUFFER_LIMIT)
        .max_header_size(READ_BUFFER_LIMIT)
        .serve_connection(io, service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let expired = activity.expired(policy.header_read_timeout, policy.idle_timeout);
    let mut expired = std::pin::pin!(expired);
    tokio::select! {
        // A connection that ends with an error (the client went away mid-request) has nothing
        // left to tell anyone: the request's own outcome is in its log line and usage record.
        _ = connection.as_mut() => {}
        why = expired.as_mut() => closed(why, peer),
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                _ = connection.as_mut() => {}
                why = expired.as_mut() => closed(why, peer),
            }
        }
    }
}

/// Dropping the connection closes the socket; hyper sends nothing (no 408) for a head that
/// never completed, and neither do we.
fn closed(why: Expired, peer: SocketAddr) {
    match why {
        Expired::HeaderRead => tracing::debug!(%peer, "closed: server.header_read_timeout"),
        Expired::Idle => tracing::debug!(%peer, "closed: server.idle_timeout"),
    }
}

/// Errors that concern one connection only (it was reset before we took it).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_per_interval_with_their_count() {
        let refusals = Refusals::default();
        let start = Instant::now();
        assert_eq!(refusals.count(start), Some(1), "the first one at once");
        for i in 1..1000 {
            assert_eq!(refusals.count(start + Duration::from_millis(i)), None);
        }
        assert_eq!(
            refusals.count(start + REFUSAL_LOG_EVERY),
            Some(1000),
            "then the count of all since"
        );
    }
}
