//! An account's HTTP/2 connections to its provider, and sending one request over them.
//!
//! hyper-util's legacy client keeps one HTTP/2 connection per origin and hands every request to
//! it; once the server's `SETTINGS_MAX_CONCURRENT_STREAMS` (often 100) are open, the next
//! requests wait inside hyper's connection task for a stream to end — a queue nobody sees. It
//! also does not retry a stream the server refused (RST_STREAM REFUSED_STREAM) or one that a
//! GOAWAY left unprocessed, though neither reached the server's application. So for `https://`
//! origins that agree on `h2`, requests go through this pool instead:
//!
//! - a request takes a stream on the least busy connection with a free stream; when all are at
//!   their server's limit, another connection is dialled (up to [`MAX_CONNECTIONS`]; beyond it
//!   the request waits on the least busy one, with a warning);
//! - a stream refused before any answer (REFUSED_STREAM, or beyond a GOAWAY's last stream) is
//!   sent again on another connection, up to [`MAX_TRIES`] times; the connection that sent a
//!   GOAWAY takes no new stream, its streams in flight finish;
//! - each connection's task sends PINGs and closes it when they go unanswered or it was idle
//!   too long; flow-control windows are sized in `h2_connection`.
//!
//! An origin whose server picks HTTP/1.1 is remembered and served by the legacy client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::h2_connection::{dial, Dialed, H2Connection, StreamSlot};
use super::send::SendError;

/// HTTP/2 connections per origin, per account.
pub(super) const MAX_CONNECTIONS: usize = 8;
/// Sends of one request when its stream is refused before any answer.
const MAX_TRIES: usize = 3;

/// Headers that name a property of an HTTP/1.1 connection; HTTP/2 forbids them (RFC 9113
/// §8.2.2), and `host` travels as `:authority`.
const CONNECTION_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The outcome of offering a request to the pool.
pub(super) enum Sent {
    Answer(http::Response<H2Body>),
    /// The origin speaks HTTP/1.1: send it the usual way. The request comes back unsent.
    Http1(http::Request<Bytes>),
}

/// An answer's body on an HTTP/2 stream; holds the stream's slot until dropped.
pub struct H2Body {
    stream: h2::RecvStream,
    _slot: StreamSlot,
}

impl H2Body {
    /// The next chunk of data, `None` at the end (trailers are skipped). Each chunk read opens
    /// the flow-control window again by its size.
    pub(super) async fn chunk(&mut self) -> Option<Result<Bytes, SendError>> {
        let data = std::future::poll_fn(|cx| self.stream.poll_data(cx)).await?;
        Some(match data {
            Ok(data) => {
                // Only fails once the stream is gone, when nothing is owed any more.
                let _ = self.stream.flow_control().release_capacity(data.len());
                Ok(data)
            }
            Err(e) => Err(SendError::new(false, &e)),
        })
    }
}

/// The pools of one account, per origin.
pub(super) struct H2Pools {
    tls: tokio_rustls::TlsConnector,
    origins: Mutex<HashMap<String, Arc<Origin>>>,
    /// Cancelled when the account's sender goes: every connection task ends.
    closing: CancellationToken,
}

/// One origin: its connections, and whether it speaks HTTP/2 at all.
#[derive(Default)]
struct Origin {
    connections: Mutex<Vec<Arc<H2Connection>>>,
    http1: std::sync::atomic::AtomicBool,
    /// One dial at a time: requests arriving together share the new connection instead of each
    /// opening their own.
    dialing: tokio::sync::Mutex<()>,
}

impl Drop for H2Pools {
    fn drop(&mut self) {
        self.closing.cancel();
    }
}

impl H2Pools {
    pub(super) fn new(tls: rustls::ClientConfig) -> H2Pools {
        let mut tls = tls;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        H2Pools {
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
            origins: Mutex::new(HashMap::new()),
            closing: CancellationToken::new(),
        }
    }

    /// Sends `request` (an `https://` URI) over HTTP/2, or gives it back when its origin speaks
    /// HTTP/1.1.
    pub(super) async fn send(&self, request: http::Request<Bytes>) -> Result<Sent, SendError> {
        let Some((host, port)) = host_port(request.uri()) else {
            return Ok(Sent::Http1(request));
        };
        let origin = self.origin(&host, port);
        if origin.http1.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(Sent::Http1(request));
        }
        let (mut parts, body) = request.into_parts();
        for name in CONNECTION_HEADERS {
            parts.headers.remove(*name);
        }
        let mut refused_on: Vec<Arc<H2Connection>> = Vec::new();
        let mut last_refusal = None;
        for _ in 0..MAX_TRIES {
            let (connection, slot) = match self.stream(&origin, &host, port, &refused_on).await? {
                Some(taken) => taken,
                None => {
                    origin
                        .http1
                        .store(true, std::sync::atomic::Ordering::Release);
                    return Ok(Sent::Http1(http::Request::from_parts(parts, body)));
                }
            };
            match exchange(&connection, &parts, &body).await {
                Ok(response) => {
                    return Ok(Sent::Answer(response.map(|stream| H2Body {
                        stream,
                        _slot: slot,
                    })))
                }
                Err(e) if unprocessed(&e) => {
                    tracing::debug!(
                        "upstream HTTP/2 stream refused before any answer, sending again: {e}"
                    );
                    if e.is_go_away() {
                        connection.retire();
                    }
                    refused_on.push(connection);
                    last_refusal = Some(e);
                }
                Err(e) => return Err(SendError::new(false, &e)),
            }
        }
        let e = last_refusal.map_or_else(
            || SendError::new(false, &std::io::Error::other("no HTTP/2 stream")),
            |e| SendError::new(false, &e),
        );
        Err(e)
    }

    fn origin(&self, host: &str, port: u16) -> Arc<Origin> {
        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(origins.entry(format!("{host}:{port}")).or_default())
    }

    /// A stream slot on a connection of `origin` other than those in `avoid`, dialling one if
    /// all are full; `None` when the origin turned out to speak HTTP/1.1.
    async fn stream(
        &self,
        origin: &Origin,
        host: &str,
        port: u16,
        avoid: &[Arc<H2Connection>],
    ) -> Result<Option<(Arc<H2Connection>, StreamSlot)>, SendError> {
        if let Some(taken) = origin.free_stream(avoid) {
            return Ok(Some(taken));
        }
        let _dialing = origin.dialing.lock().await;
        // Another request may have dialled while this one waited.
        if let Some(taken) = origin.free_stream(avoid) {
            return Ok(Some(taken));
        }
        if origin.live_connections() >= MAX_CONNECTIONS {
            if let Some(busiest) = origin.least_busy(avoid) {
                tracing::warn!(
                    "all {MAX_CONNECTIONS} HTTP/2 connections to {host} are at the server's stream limit; this request waits for a stream"
                );
                let slot = busiest.open_over_limit();
                return Ok(Some((busiest, slot)));
            }
        }
        match dial(host, port, &self.tls, &self.closing).await? {
            Dialed::NotHttp2 => Ok(None),
            Dialed::Http2(connection) => {
                let slot = connection.open_over_limit();
                origin
                    .connections
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Arc::clone(&connection));
                Ok(Some((connection, slot)))
            }
        }
    }
}

impl Origin {
    /// Drops closed connections, then takes a stream on the least busy one with room.
    fn free_stream(&self, avoid: &[Arc<H2Connection>]) -> Option<(Arc<H2Connection>, StreamSlot)> {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.retain(|c| !c.is_closed());
        connections.sort_by_key(|c| c.open_streams());
        connections
            .iter()
            .filter(|c| !avoid.iter().any(|a| Arc::ptr_eq(a, c)))
            .find_map(|c| c.try_open().map(|slot| (Arc::clone(c), slot)))
    }

    fn live_connections(&self) -> usize {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections.iter().filter(|c| !c.is_closed()).count()
    }

    fn least_busy(&self, avoid: &[Arc<H2Connection>]) -> Option<Arc<H2Connection>> {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        connections
            .iter()
            .filter(|c| !c.is_closed() && !avoid.iter().any(|a| Arc::ptr_eq(a, c)))
            .min_by_key(|c| c.open_streams())
            .cloned()
    }
}

/// One request on one stream: the head, the body within the flow-control window, the answer's
/// head.
async fn exchange(
    connection: &H2Connection,
    parts: &http::request::Parts,
    body: &Bytes,
) -> Result<http::Response<h2::RecvStream>, h2::Error> {
    let mut send = connection.sender().ready().await?;
    let head = http::Request::from_parts(parts.clone(), ());
    let (answer, mut stream) = send.send_request(head, body.is_empty())?;
    let mut rest = body.clone();
    while !rest.is_empty() {
        stream.reserve_capacity(rest.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            // The stream ended (the server answered early or reset it): its answer says why.
            None => break,
        };
        if granted > 0 {
            let chunk = rest.split_to(granted.min(rest.len()));
            stream.send_data(chunk, rest.is_empty())?;
        }
    }
    answer.await
}

/// A stream the server did not process, which may go again (RFC 9113 §8.7): refused, or beyond
/// the last stream of a graceful GOAWAY.
fn unprocessed(e: &h2::Error) -> bool {
    let remote = e.is_remote();
    let refused = e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM);
    let graceful_goaway = e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR);
    remote && (refused || graceful_goaway)
}

/// Host and port of an `https://` URI.
fn host_port(uri: &http::Uri) -> Option<(String, u16)> {
    if uri.scheme() != Some(&http::uri::Scheme::HTTPS) {
        return None;
    }
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_owned(), uri.port_u16().unwrap_or(443)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_uris_go_over_the_pool() {
        let uri: http::Uri = "https://api.openai.com/v1/responses"
            .parse()
            .unwrap_or_default();
        assert_eq!(host_port(&uri), Some(("api.openai.com".to_owned(), 443)));
        let uri: http::Uri = "https://[::1]:8443/v1".parse().unwrap_or_default();
        assert_eq!(host_port(&uri), Some(("::1".to_owned(), 8443)));
        let uri: http::Uri = "http://127.0.0.1:80/v1".parse().unwrap_or_default();
        assert_eq!(host_port(&uri), None);
    }
}
