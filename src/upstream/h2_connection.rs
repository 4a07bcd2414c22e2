//! One HTTP/2 connection to a provider: dialled over TLS (ALPN `h2`), driven by its own task
//! with PING keepalive, and counted so the pool ([`super::h2_pool`]) knows how many of its
//! streams are open against the limit the server announced.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::send::SendError;

/// How long dialling (DNS, TCP, TLS, the server's first SETTINGS) may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A PING goes out after this long; a connection silent for it (NAT tables, proxies) may be
/// dead without either side knowing.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// A PING unanswered this long closes the connection: its streams fail now, instead of after
/// the relay's data timeout, and new streams go to a new connection.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// A connection without streams this long is closed (as hyper-util's pool does at 90 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Flow-control window per stream: a long stream read as it arrives never waits on it, and
/// what a stream may buffer unread is bounded by it.
const STREAM_WINDOW: u32 = 1024 * 1024;
/// Window of the whole connection, shared by its streams (up to about 100 at once).
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Largest response header block accepted.
const MAX_HEADER_LIST: u32 = 64 * 1024;

/// The HTTP/2 streams of a dialled connection, or the news that the server chose HTTP/1.1.
pub(super) enum Dialed {
    Http2(Arc<H2Connection>),
    /// ALPN did not agree on `h2`; the origin is served over HTTP/1.1.
    NotHttp2,
}

/// A live HTTP/2 connection and the count of its streams in flight.
pub(super) struct H2Connection {
    send: h2::client::SendRequest<Bytes>,
    open: AtomicUsize,
    /// Set when the connection may take no new stream: a GOAWAY, an error, a keepalive timeout,
    /// or its task ended.
    closed: AtomicBool,
}

impl H2Connection {
    /// Takes one stream slot if the server's limit leaves one; the slot is given back when the
    /// returned guard drops (the stream's answer was read or abandoned).
    pub(super) fn try_open(self: &Arc<Self>) -> Option<StreamSlot> {
        if self.is_closed() {
            return None;
        }
        let limit = self.send.current_max_send_streams();
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < limit).then_some(open + 1)
            })
            .ok()
            .map(|_| StreamSlot(Arc::clone(self)))
    }

    /// Takes a slot beyond the server's limit: h2 holds the stream until one frees up.
    pub(super) fn open_over_limit(self: &Arc<Self>) -> StreamSlot {
        self.open.fetch_add(1, Ordering::AcqRel);
        StreamSlot(Arc::clone(self))
    }

    pub(super) fn open_streams(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// No new stream goes here (a GOAWAY was seen); streams in flight go on.
    pub(super) fn retire(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub(super) fn sender(&self) -> h2::client::SendRequest<Bytes> {
        self.send.clone()
    }
}

/// One stream's claim on its connection's capacity.
pub(super) struct StreamSlot(Arc<H2Connection>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Dials `host:port` over TLS offering `h2` and `http/1.1`. On `h2`, the connection is ready
/// once the server's SETTINGS (its stream limit) are known; its task ends with `closing`.
pub(super) async fn dial(
    host: &str,
    port: u16,
    tls: &tokio_rustls::TlsConnector,
    closing: &CancellationToken,
) -> Result<Dialed, SendError> {
    let connect_error = |e: &(dyn std::error::Error + 'static)| SendError::new(true, e);
    let name =
        rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| connect_error(&e))?;
    let tcp = connect_tcp(host, port)
        .await
        .map_err(|e| connect_error(&e))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| connect_error(&e))?;
    if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
        return Ok(Dialed::NotHttp2);
    }
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| connect_error(&e))?;
    let Some(mut ping) = connection.ping_pong() else {
        unreachable!("a new connection's PingPong is there to take");
    };
    // The server's SETTINGS come before its PING acknowledgement: after this round trip the
    // stream limit is the server's, not h2's assumption.
    tokio::select! {
        pong = ping.ping(h2::Ping::opaque()) => { pong.map_err(|e| connect_error(&e))?; }
        ended = &mut connection => {
            let why = ended.err().map_or_else(|| "closed at once".to_owned(), |e| e.to_string());
            return Err(SendError::new(true, &std::io::Error::other(format!("HTTP/2 connection {why}"))));
        }
    }
    let live = Arc::new(H2Connection {
        send,
        open: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    // Not on a TaskTracker: the task is the connection itself and ends with it. It stops when
    // the account's pool goes (`closing`, cancelled when its sender drops at shutdown or when
    // the account is replaced), when the peer closes, on a PING timeout or after the idle
    // timeout; nothing waits for it at shutdown, since it only holds a socket.
    #[allow(
        clippy::disallowed_methods,
        reason = "the connection's own task; it ends with the pool's cancellation token"
    )]
    tokio::spawn(drive(connection, ping, Arc::clone(&live), closing.clone()));
    Ok(Dialed::Http2(live))
}

/// TCP to the first address of `host` that answers, within [`CONNECT_TIMEOUT`].
pub(super) async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let attempt = async {
        let mut last = None;
        for addr in tokio::net::lookup_host((host, port)).await? {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    tcp.set_nodelay(true)?;
                    return Ok(tcp);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            )
        }))
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("connecting to {host}:{port} timed out"),
            ))
        })
}

/// Runs the connection until it ends, the pool goes (`closing`), a PING goes unanswered, or it
/// was idle for [`IDLE_TIMEOUT`]. Dropping the connection closes it.
async fn drive<T>(
    connection: h2::client::Connection<T, Bytes>,
    mut ping: h2::PingPong,
    live: Arc<H2Connection>,
    closing: CancellationToken,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::pin!(connection);
    let mut idle_for = Duration::ZERO;
    loop {
        tokio::select! {
            ended = &mut connection => {
                if let Err(e) = ended {
                    tracing::debug!("upstream HTTP/2 connection ended: {e}");
                }
                break;
            }
            () = closing.cancelled() => break,
            () = tokio::time::sleep(KEEPALIVE_INTERVAL) => {}
        }
        if live.open_streams() == 0 {
            idle_for += KEEPALIVE_INTERVAL;
            if idle_for >= IDLE_TIMEOUT {
                break;
            }
        } else {
            idle_for = Duration::ZERO;
        }
        let pong = tokio::select! {
            ended = &mut connection => {
                if let Err(e) = ended {
                    tracing::debug!("upstream HTTP/2 connection ended: {e}");
                }
                break;
            }
            () = closing.cancelled() => break,
            pong = tokio::time::timeout(KEEPALIVE_TIMEOUT, ping.ping(h2::Ping::opaque())) => pong,
        };
        if !matches!(pong, Ok(Ok(_))) {
            tracing::warn!(
                "upstream HTTP/2 connection closed: no PING answer within {} s",
                KEEPALIVE_TIMEOUT.as_secs()
            );
            break;
        }
    }
    live.retire();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    #![allow(clippy::disallowed_methods, reason = "tests may spawn freely")]

    use super::*;

    /// A client connection over an in-memory pipe, driven by [`drive`], and the server's end.
    /// `answering`: the server's connection is polled (it answers PINGs); otherwise it is held
    /// but never polled after the handshake, like a peer that went away silently.
    async fn driven(answering: bool) -> (Arc<H2Connection>, CancellationToken) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.unwrap();
            if answering {
                // Until the connection ends; an error ends it too (`accept` would report it
                // again on every call, a busy loop that stops paused time from advancing).
                while let Some(Ok(_)) = connection.accept().await {}
            } else {
                std::future::pending::<()>().await;
            }
        });
        let (send, mut connection) = h2::client::handshake(client_io).await.unwrap();
        let ping = connection.ping_pong().unwrap();
        let live = Arc::new(H2Connection {
            send,
            open: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });
        let closing = CancellationToken::new();
        tokio::spawn(drive(connection, ping, Arc::clone(&live), closing.clone()));
        // The server task lives as long as the runtime: the test's.
        drop(server);
        (live, closing)
    }

    /// A PING unanswered for the keepalive timeout retires the connection (long before the idle
    /// timeout could); a peer that answers keeps it until the idle timeout.
    #[tokio::test(start_paused = true)]
    async fn an_unanswered_ping_closes_the_connection_an_answered_one_keeps_it() {
        let second = Duration::from_secs(1);
        let (silent, _closing) = driven(false).await;
        let (answering, _closing2) = driven(true).await;

        tokio::time::sleep(KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT - second).await;
        assert!(!silent.is_closed(), "the PING is still within its timeout");
        tokio::time::sleep(2 * second).await;
        assert!(silent.is_closed(), "no PING answer within the timeout");
        assert!(!answering.is_closed(), "control: its PING was answered");

        tokio::time::sleep(IDLE_TIMEOUT).await;
        assert!(answering.is_closed(), "idle for {IDLE_TIMEOUT:?}");
    }

    /// The pool going away ends every connection's task.
    #[tokio::test(start_paused = true)]
    async fn closing_ends_the_connection_task() {
        let (live, closing) = driven(true).await;
        closing.cancel();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(live.is_closed());
    }
}
