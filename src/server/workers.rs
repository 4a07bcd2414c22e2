//! Event-loop workers: `server.workers` single-threaded runtimes, each accepting on its own
//! socket bound to the same address.
//!
//! A request lives on one thread from accept to usage record: its connection, its relay task and
//! the upstream connection it opened are all driven by the same thread, so no wake-up ever
//! crosses threads on the hot path. Against tokio's work-stealing runtime this cut the CPU per
//! request by about a fifth (BENCHMARKS.md). With more than one worker the sockets share the
//! port through `SO_REUSEPORT` and the kernel spreads connections over them.
//!
//! Worker 0 is the main runtime (which also runs the background tasks); workers 1.. are threads
//! named `subrelay-wN`. Each keeps running after it stops accepting until every tracked
//! relay task has finished, because the tasks it spawned can only make progress on its thread.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connections::ConnectionPolicy;

/// Sockets bound and listening, one per worker, all on `addr`.
pub struct Listeners {
    pub addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// Binds `count` listening sockets to `host:port` (with `port` 0, the port the first one got).
pub async fn bind(host: &str, port: u16, count: usize) -> Result<Listeners, String> {
    let wanted = format!("{host}:{port}");
    let cannot = |e: std::io::Error| format!("cannot listen on {wanted}: {e}");
    let mut addr = tokio::net::lookup_host(&wanted)
        .await
        .map_err(cannot)?
        .next()
        .ok_or_else(|| format!("cannot listen on {wanted}: the host name has no address"))?;
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(cannot)?;
        // As `TcpListener::bind` does: a restart can bind while old connections linger.
        socket.set_reuseaddr(true).map_err(cannot)?;
        if count > 1 {
            #[cfg(unix)]
            socket.set_reuseport(true).map_err(cannot)?;
            #[cfg(not(unix))]
            return Err("server.workers above 1 needs SO_REUSEPORT (Linux, BSD, macOS)".into());
        }
        socket.bind(addr).map_err(cannot)?;
        let listener = socket.listen(1024).map_err(cannot)?;
        addr = listener.local_addr().map_err(cannot)?;
        sockets.push(listener.into_std().map_err(cannot)?);
    }
    Ok(Listeners { addr, sockets })
}

impl Listeners {
    /// The first socket (for the main runtime) and the rest (one per extra worker).
    pub fn split(mut self) -> (std::net::TcpListener, Vec<std::net::TcpListener>) {
        let rest = self.sockets.split_off(1);
        let first = self.sockets.remove(0);
        (first, rest)
    }
}

/// Serves `app` on `listener` in the current runtime until `stop`, then until every open
/// connection has finished.
pub async fn accept(
    listener: std::net::TcpListener,
    app: Router,
    stop: CancellationToken,
    policy: Arc<ConnectionPolicy>,
) {
    match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => super::connections::serve(listener, app, stop, policy).await,
        Err(e) => tracing::error!("cannot accept connections: {e}"),
    }
}

/// A worker thread: `stopped` resolves when it no longer serves connections.
pub struct Worker {
    pub stopped: oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    /// Waits for the thread, which ends once every relay task has finished.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Starts worker `index` on its own thread with a single-threaded runtime.
pub fn spawn(
    index: usize,
    listener: std::net::TcpListener,
    app: Router,
    stop: CancellationToken,
    policy: Arc<ConnectionPolicy>,
    tasks: TaskTracker,
) -> Result<Worker, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    let (done, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("subrelay-w{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                accept(listener, app, stop, policy).await;
                let _ = done.send(());
                // Relay tasks spawned here run only while this runtime is driven.
                tasks.wait().await;
            });
        })
        .map_err(|e| format!("cannot start worker {index}: {e}"))?;
    Ok(Worker { stopped, thread })
}
