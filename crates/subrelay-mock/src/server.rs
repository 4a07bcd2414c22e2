//! The listening side: [`MockUpstream`] and its accept loop.
//!
//! Tests start one mock per test on their own runtime and drop it at the end, so everything the
//! mock spawns must stop with it: the accept task is aborted on drop, and every connection (and
//! every HTTP/2 stream task) watches a channel whose sender the handle owns, so dropping the
//! handle also ends connections that are hanging on purpose.
//!
//! With [`MockTls`] the mock serves TLS (HTTP/2 or HTTP/1.1 by ALPN); either way it records each
//! connection ([`MockUpstream::connections`]) and can send every open connection a GOAWAY
//! ([`MockUpstream::goaway`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::behavior::Behavior;
use crate::handle::handle;
use crate::ledger::{Ledger, RecordedRequest};
use crate::tls::{self, ConnectionRecord, MockTls};

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running fake upstream (Codex backend, OpenAI API, Anthropic API and their token endpoints)
/// on a local port.
///
/// Serving stops when it is dropped.
#[derive(Debug)]
pub struct MockUpstream {
    addr: SocketAddr,
    ledger: Arc<Ledger>,
    tls: bool,
    connections: Arc<Mutex<Vec<ConnectionRecord>>>,
    accept: JoinHandle<()>,
    /// Each send asks every open connection to shut down gracefully (GOAWAY on HTTP/2).
    goaway: watch::Sender<u64>,
    /// Dropped with the handle; every connection task ends when it sees the channel close.
    _shutdown: watch::Sender<()>,
}

impl MockUpstream {
    /// Starts a mock on `127.0.0.1` with a free port.
    ///
    /// # Panics
    /// If no local port can be bound (a test helper has no better answer).
    #[expect(
        clippy::expect_used,
        reason = "test helper: a machine that cannot bind a loopback port cannot run the tests"
    )]
    pub async fn start() -> MockUpstream {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("subrelay-mock: bind 127.0.0.1:0")
    }

    /// Starts a mock listening on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<MockUpstream> {
        Self::listen(addr, None).await
    }

    /// Starts a TLS mock on `127.0.0.1` with a free port; its [`url`](Self::url) names
    /// `localhost`, so a client sends that name (SNI) and checks the certificate against it.
    pub async fn start_tls(tls: MockTls) -> std::io::Result<MockUpstream> {
        Self::start_tls_on(SocketAddr::from(([127, 0, 0, 1], 0)), tls).await
    }

    /// Starts a TLS mock listening on `addr`.
    pub async fn start_tls_on(addr: SocketAddr, tls: MockTls) -> std::io::Result<MockUpstream> {
        Self::listen(addr, Some(tls)).await
    }

    async fn listen(addr: SocketAddr, tls: Option<MockTls>) -> std::io::Result<MockUpstream> {
        let (shutdown, closed) = watch::channel(());
        let serving = Serving::new(tls.as_ref(), closed.clone())?;
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let ledger = Arc::new(Ledger::new());
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (goaway, goaway_seen) = watch::channel(0);
        let shared = Shared {
            ledger: Arc::clone(&ledger),
            connections: Arc::clone(&connections),
            closed,
            goaway: goaway_seen,
        };
        let accept = tokio::spawn(accept_loop(listener, serving, shared));
        Ok(MockUpstream {
            addr,
            ledger,
            tls: tls.is_some(),
            connections,
            accept,
            goaway,
            _shutdown: shutdown,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` when serving TLS.
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Every connection accepted so far, in order of its handshake's end (plain connections
    /// when accepted).
    pub fn connections(&self) -> Vec<ConnectionRecord> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Asks every open connection to shut down gracefully: HTTP/2 connections get a GOAWAY
    /// (streams in flight finish, new ones must go elsewhere), HTTP/1.1 ones close after the
    /// answer in flight. Connections accepted later are not affected.
    pub fn goaway(&self) {
        self.goaway.send_modify(|generation| *generation += 1);
    }

    /// Queues behaviours for requests carrying this credential; each request pops one. When the
    /// queue is empty the behaviour comes from the model name.
    pub fn script(&self, credential: &str, steps: Vec<Behavior>) {
        self.ledger.script(credential, steps);
    }

    /// Makes WebSocket upgrades on the Responses routes fail with this status (404, 426, ...)
    /// as an upstream without that transport does; `None` accepts them again (the default).
    pub fn refuse_websocket(&self, status: Option<u16>) {
        self.ledger.set_websocket_refusal(status);
    }

    /// Makes this credential's WebSocket upgrades fail with this status (429, 401, ...), whatever
    /// [`refuse_websocket`](Self::refuse_websocket) says.
    pub fn refuse_websocket_for(&self, credential: &str, status: u16) {
        self.ledger.set_websocket_refusal_for(credential, status);
    }

    /// Makes every `previous_response_id` on a WebSocket unknown (`true`), as an upstream that
    /// lost a socket's state answers: an `error` event with code `previous_response_not_found`.
    pub fn websocket_forgets(&self, forgets: bool) {
        self.ledger.set_websocket_forgets(forgets);
    }

    /// WebSocket upgrade requests received on the Responses routes, refused ones included
    /// (not counted in [`calls`](Self::calls)).
    pub fn websocket_upgrades(&self) -> usize {
        self.ledger.transports().0
    }

    /// `response.create` messages received over WebSockets (each one is also a call, recorded
    /// with the method `WS`).
    pub fn websocket_turns(&self) -> usize {
        self.ledger.transports().1
    }

    /// WebSocket sessions open now (a session ends when the client closes its socket or drops
    /// the connection).
    pub fn open_websockets(&self) -> usize {
        self.ledger.open_websockets()
    }

    /// POST requests received on the API routes (token endpoints aside).
    pub fn posts(&self) -> usize {
        self.ledger.transports().2
    }

    /// Gives this credential usage windows that move with use (see [`Quota`]), replacing any it
    /// had.
    pub fn set_quota(&self, credential: &str, quota: crate::Quota) {
        self.ledger.set_quota(credential, quota);
    }

    /// This credential's usage windows now, if it was given some.
    pub fn quota(&self, credential: &str) -> Option<crate::Quota> {
        self.ledger.quota(credential)
    }

    /// Requests received with this credential (any route but the control ones and the token
    /// endpoints).
    pub fn calls(&self, credential: &str) -> usize {
        self.ledger.calls(credential)
    }

    /// The most API answers that were in flight at once (from arrival until their body was
    /// written or dropped); [`reset`](Self::reset) starts over from those in flight then.
    pub fn max_in_flight(&self) -> usize {
        self.ledger.max_in_flight()
    }

    /// All requests received (any route but the control ones and the token endpoints, which
    /// [`token_calls`](Self::token_calls) counts).
    pub fn total_calls(&self) -> usize {
        self.ledger.total_calls()
    }

    /// Answers written to their end: a stream through its terminal event, or a whole JSON body
    /// (error bodies included). Cut, hanging and abandoned answers never count, nor do token
    /// endpoint answers.
    pub fn completed(&self) -> usize {
        self.ledger.completed()
    }

    /// Every recorded request, in arrival order (token endpoint requests included, with
    /// `credential: None`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ledger.requests()
    }

    /// Clears counts, records and scripts, and the token endpoints' calls, issued tokens and
    /// spent refresh tokens. The token lifetime and delay are kept, and new tokens never repeat
    /// earlier ones.
    pub fn reset(&self) {
        self.ledger.reset();
    }

    /// Whether [`requests`](Self::requests) keeps copies of requests (default `true`). The binary
    /// turns this off so long benchmark runs do not grow in memory; counts are kept either way.
    pub fn keep_records(&self, keep: bool) {
        self.ledger.set_keep_records(keep);
    }
}

// === token endpoints ===

impl MockUpstream {
    /// Refresh requests received on `POST /oauth/token` and `POST /v1/oauth/token`, whatever
    /// their outcome (counted on arrival, before the token delay).
    pub fn token_calls(&self) -> usize {
        self.ledger.tokens.calls()
    }

    /// The `expires_in` (seconds) of tokens issued from now on (default 3600).
    pub fn set_token_lifetime(&self, secs: u64) {
        self.ledger.tokens.set_lifetime(secs);
    }

    /// How long token endpoints wait before answering (default zero). The outcome is decided on
    /// arrival, so a held refresh has already spent its refresh token.
    pub fn set_token_delay(&self, delay: Duration) {
        self.ledger.tokens.set_delay(delay);
    }

    /// Access tokens issued by successful refreshes, in order (`at-1`, `at-2`, ...).
    pub fn issued_access_tokens(&self) -> Vec<String> {
        self.ledger.tokens.issued_access_tokens()
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What every connection task needs.
#[derive(Clone)]
struct Shared {
    ledger: Arc<Ledger>,
    connections: Arc<Mutex<Vec<ConnectionRecord>>>,
    closed: watch::Receiver<()>,
    goaway: watch::Receiver<u64>,
}

impl Shared {
    fn record(&self, connection: ConnectionRecord) {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(connection);
    }
}

/// The protocol set-up shared by every connection: hyper's server (HTTP/1.1 and HTTP/2), and the
/// TLS acceptor when serving TLS.
struct Serving {
    builder: auto::Builder<UntilClosed>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Serving {
    /// hyper's background tasks (HTTP/2 streams) end when `closed` does.
    fn new(tls: Option<&MockTls>, closed: watch::Receiver<()>) -> std::io::Result<Serving> {
        let mut builder = auto::Builder::new(UntilClosed(closed));
        if let Some(max) = tls.and_then(|tls| tls.max_concurrent_streams) {
            builder.http2().max_concurrent_streams(max);
        }
        Ok(Serving {
            builder,
            tls: tls.map(tls::acceptor).transpose()?,
        })
    }
}

/// Accepts connections until aborted, serving each on its own task.
async fn accept_loop(listener: TcpListener, serving: Serving, shared: Shared) {
    let serving = Arc::new(serving);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _peer)) => tcp,
            Err(err) => {
                // Usually out of file descriptors: wait instead of spinning.
                tracing::debug!(%err, "subrelay-mock: accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        // The mock is the latency baseline: never let Nagle hold back a small write.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "subrelay-mock: TCP_NODELAY failed");
        }
        let (serving, shared) = (Arc::clone(&serving), shared.clone());
        tokio::spawn(until_closed(shared.closed.clone(), async move {
            connection(tcp, &serving, shared).await;
        }));
    }
}

/// One connection: the TLS handshake if any, then HTTP until the client or a GOAWAY ends it.
async fn connection(tcp: TcpStream, serving: &Serving, shared: Shared) {
    let Some(acceptor) = &serving.tls else {
        shared.record(ConnectionRecord::plain());
        serve(TokioIo::new(tcp), serving, shared).await;
        return;
    };
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
    match handshake {
        Ok(Ok(stream)) => {
            shared.record(ConnectionRecord::of(stream.get_ref().1));
            serve(TokioIo::new(stream), serving, shared).await;
        }
        Ok(Err(err)) => shared.record(ConnectionRecord::failed(&err)),
        Err(_) => shared.record(ConnectionRecord::failed(&std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        ))),
    }
}

/// Serves HTTP on one connection; a GOAWAY request turns into a graceful shutdown.
async fn serve<I>(io: TokioIo<I>, serving: &Serving, shared: Shared)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ledger = Arc::clone(&shared.ledger);
    let closed = shared.closed.clone();
    let service = service_fn(move |request| {
        let ledger = Arc::clone(&ledger);
        let closed = closed.clone();
        async move { handle(ledger, closed, request).await }
    });
    let connection = serving.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut goaway = shared.goaway;
    goaway.mark_unchanged();
    tokio::select! {
        // A connection error is the client's business (or a scripted cut).
        _ = connection.as_mut() => return,
        changed = goaway.changed() => {
            if changed.is_ok() {
                connection.as_mut().graceful_shutdown();
            }
        }
    }
    let _ = connection.await;
}

/// Runs `work` until it finishes or the mock's handle is dropped.
pub(crate) async fn until_closed(mut closed: watch::Receiver<()>, work: impl Future<Output = ()>) {
    tokio::select! {
        () = work => {}
        _ = closed.changed() => {}
    }
}

/// Spawns hyper's background tasks (HTTP/2 streams) so they too end with the handle.
#[derive(Clone)]
struct UntilClosed(watch::Receiver<()>);

impl<F> hyper::rt::Executor<F> for UntilClosed
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, work: F) {
        tokio::spawn(until_closed(self.0.clone(), async move {
            work.await;
        }));
    }
}
