//! Accepting connections and serving HTTP/1.1 on them until shutdown.
//!
//! hyper's HTTP/1 server directly, not axum's `serve`: that one first reads a few bytes to tell
//! HTTP/2 from HTTP/1 and hands them back through a rewinding wrapper, and hyper's read buffer
//! then grows from 8 to 16 KiB on the second read of every connection (heaptrack: the largest
//! allocation of an open stream). The listener speaks HTTP/1.1 only; TLS and HTTP/2 towards
//! clients belong to the proxy in front (nginx, Cloudflare), which talks HTTP/1.1 to its origin.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long to wait before accepting again after an error that is not about one connection
/// (out of file descriptors, out of memory): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop`; then every open connection finishes its request in
/// flight and closes, and this returns when all have.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                // Which worker took it (its thread: `main` or `subrelay-wN`); off unless
                // `log.level` enables debug for this module.
                tracing::debug!(
                    worker = std::thread::current().name().unwrap_or("unnamed"),
                    "connection accepted"
                );
                connections.spawn(serve_connection(tcp, app.clone(), stop.clone()));
            }
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

async fn serve_connection(tcp: TcpStream, app: Router, stop: CancellationToken) {
    // Every SSE event should leave at once, not wait for Nagle.
    let _ = tcp.set_nodelay(true);
    // No timer: hyper's header-read timeout would then also close idle keep-alive connections
    // after 30 s and arm a timer for every request.
    let connection = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        // A connection that ends with an error (the client went away mid-request) has nothing
        // left to tell anyone: the request's own outcome is in its log line and usage record.
        _ = connection.as_mut() => {}
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
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
