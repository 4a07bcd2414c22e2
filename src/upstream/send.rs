//! Sending one request to an account's upstream and reading its answer.
//!
//! Accounts without a proxy (the usual case) send directly: `https://` origins that agree on
//! HTTP/2 through the account's pool of HTTP/2 connections (`h2_pool.rs`), everything else
//! through hyper-util's pooled client. reqwest's layers on top of that same client cost about 6%
//! of the relay's CPU per request: its redirect bookkeeping turns the URI back into text and
//! parses it as a URL twice, copies the header map and boxes the body, even with redirects off.
//! Accounts with a proxy, and every account while proxy variables are set in the environment,
//! keep reqwest, whose proxy handling (HTTP forwarding and CONNECT, SOCKS5, `NO_PROXY`) is
//! complete and tested.
//!
//! The paths behave alike: TLS by rustls with the process's trust (`trust.rs`: the webpki roots
//! and `upstream.ca_file`), ALPN offering HTTP/2 and HTTP/1.1, TCP_NODELAY, `gateway.connect_timeout` to
//! connect, idle connections kept 90 s (up to 256 per host on HTTP/1.1), no redirects followed,
//! no compression asked for, and a stream the server refused before answering (REFUSED_STREAM,
//! a graceful GOAWAY) sent again (reqwest's default retry policy does the same).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::h2_pool::{H2Body, H2Pools, Sent};
use crate::domain::Secret;

const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const POOL_MAX_IDLE_PER_HOST: usize = 256;

/// The variables reqwest reads for a system proxy.
const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

type DirectClient = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How an account's requests leave: directly, or through reqwest and a proxy.
#[derive(Clone)]
pub enum Sender {
    Direct(Arc<Direct>),
    Proxied(reqwest::Client),
}

/// The direct path: HTTP/2 origins through the account's own pool of HTTP/2 connections
/// (`h2_pool.rs`: several connections when one is at its stream limit, refused streams sent
/// again), everything else through hyper-util's pooled client.
pub struct Direct {
    http1: DirectClient,
    http2: H2Pools,
}

/// An upstream answer; its body is read with [`Body::chunk`].
pub type Response = http::Response<Body>;

/// An upstream answer's body.
pub enum Body {
    Direct(hyper::body::Incoming),
    Http2(H2Body),
    Proxied(reqwest::Body),
    /// A turn's events on an upstream WebSocket, as SSE (`websocket.rs`).
    Socket(Box<super::websocket::TurnBody>),
}

/// A request that got no answer, or an answer whose body broke off.
#[derive(Debug)]
pub struct SendError {
    /// The connection could not be made (refused, timed out, TLS handshake failed).
    pub connect: bool,
    /// It failed for want of a local resource (open files, socket buffers, local ports): the
    /// gateway's trouble, not the upstream's.
    pub local: bool,
    /// The error and all its causes, which is where the useful part is (`Connection refused`).
    pub message: String,
}

impl Sender {
    /// The sender of an account with this proxy; `client` is the account's reqwest client, used
    /// when a proxy is involved (it was built with the same `connect_timeout`).
    pub fn new(
        proxy: Option<&Secret>,
        client: &reqwest::Client,
        connect_timeout: Duration,
    ) -> Self {
        let system_proxy = PROXY_VARIABLES
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
        if proxy.is_some() || system_proxy {
            return Self::Proxied(client.clone());
        }
        match direct(connect_timeout) {
            Ok(direct) => Self::Direct(Arc::new(direct)),
            // Cannot happen with the bundled TLS provider; reqwest still works if it does.
            Err(e) => {
                tracing::warn!("{e}; this account sends through reqwest");
                Self::Proxied(client.clone())
            }
        }
    }

    pub async fn send(&self, request: http::Request<Bytes>) -> Result<Response, SendError> {
        match self {
            Self::Direct(direct) => {
                let request = match direct.http2.send(request).await? {
                    Sent::Answer(response) => return Ok(response.map(Body::Http2)),
                    Sent::Http1(request) => request,
                };
                direct
                    .http1
                    .request(request.map(Full::new))
                    .await
                    .map(|response| response.map(Body::Direct))
                    .map_err(|e| SendError::new(e.is_connect(), &e))
            }
            Self::Proxied(client) => {
                let request = reqwest::Request::try_from(request.map(reqwest::Body::from))
                    .map_err(|e| SendError::new(false, &e))?;
                client
                    .execute(request)
                    .await
                    .map(|response| http::Response::from(response).map(Body::Proxied))
                    .map_err(|e| SendError::new(e.is_connect(), &e))
            }
        }
    }
}

impl Body {
    /// The next chunk of data, `None` at the end. Trailers are skipped.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, SendError>> {
        match self {
            Self::Http2(body) => return body.chunk().await,
            Self::Socket(body) => return body.chunk().await,
            Self::Direct(_) | Self::Proxied(_) => {}
        }
        loop {
            let frame = match self {
                Self::Direct(body) => body.frame().await?.map_err(|e| SendError::new(false, &e)),
                Self::Proxied(body) => body.frame().await?.map_err(|e| SendError::new(false, &e)),
                Self::Http2(_) | Self::Socket(_) => return None,
            };
            match frame {
                Err(e) => return Some(Err(e)),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
            }
        }
    }
}

impl SendError {
    pub(super) fn new(connect: bool, err: &(dyn std::error::Error + 'static)) -> Self {
        let mut message = err.to_string();
        let mut local = is_local_exhaustion(err);
        let mut source = err.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            local |= is_local_exhaustion(cause);
            source = cause.source();
        }
        Self {
            connect,
            local,
            message,
        }
    }
}

/// An I/O error that says this process or machine ran out of something: open files (EMFILE,
/// ENFILE), socket buffers or memory (ENOBUFS, ENOMEM), local ports (EADDRNOTAVAIL).
fn is_local_exhaustion(err: &(dyn std::error::Error + 'static)) -> bool {
    let Some(io) = err.downcast_ref::<std::io::Error>() else {
        return false;
    };
    matches!(
        io.raw_os_error(),
        Some(
            libc_errno::EMFILE
                | libc_errno::ENFILE
                | libc_errno::ENOBUFS
                | libc_errno::ENOMEM
                | libc_errno::EADDRNOTAVAIL
        )
    )
}

/// The errno values of [`is_local_exhaustion`] (Linux numbering, which the BSDs and macOS share
/// for all but the last two).
mod libc_errno {
    pub const ENOMEM: i32 = 12;
    pub const ENFILE: i32 = 23;
    pub const EMFILE: i32 = 24;
    #[cfg(target_os = "linux")]
    pub const ENOBUFS: i32 = 105;
    #[cfg(target_os = "linux")]
    pub const EADDRNOTAVAIL: i32 = 99;
    #[cfg(not(target_os = "linux"))]
    pub const ENOBUFS: i32 = 55;
    #[cfg(not(target_os = "linux"))]
    pub const EADDRNOTAVAIL: i32 = 49;
}

fn direct(connect_timeout: Duration) -> Result<Direct, String> {
    Ok(Direct {
        http1: direct_client(connect_timeout)?,
        http2: H2Pools::new(super::trust::client_config()?),
    })
}

fn direct_client(connect_timeout: Duration) -> Result<DirectClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(super::trust::client_config()?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(https),
    )
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::disallowed_methods,
        reason = "tests may block and spawn freely"
    )]
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;

    use tokio::io::AsyncReadExt;

    use super::*;

    /// Running out of file descriptors while connecting is told apart from an upstream that
    /// refuses, through the error's chain of causes.
    #[test]
    fn local_exhaustion_is_found_in_the_cause_chain() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let emfile = Outer(std::io::Error::from_raw_os_error(24));
        let e = SendError::new(true, &emfile);
        assert!(e.local && e.connect, "{}", e.message);
        let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let e = SendError::new(true, &refused);
        assert!(!e.local && e.connect, "{}", e.message);
    }

    #[test]
    fn a_proxy_sends_through_reqwest() {
        let client = reqwest::Client::new();
        let proxy = Secret::new("socks5://127.0.0.1:1080");
        assert!(matches!(
            Sender::new(Some(&proxy), &client, Duration::from_secs(10)),
            Sender::Proxied(_)
        ));
    }

    /// An `https://` upstream gets a TLS handshake offering HTTP/2 and HTTP/1.1, never plain
    /// HTTP, and a server that closes the connection during the handshake is a connect error
    /// (failover). This does not test certificate verification: the server here sends no
    /// certificate at all, so the handshake ends on EOF.
    #[tokio::test]
    async fn https_upstreams_get_tls_with_alpn_and_a_broken_handshake_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut hello = vec![0; 2048];
            let n = socket.read(&mut hello).await.unwrap();
            hello.truncate(n);
            hello
        });
        let sender = Sender::Direct(Arc::new(direct(Duration::from_secs(10)).unwrap()));
        let request = http::Request::post(format!("https://127.0.0.1:{port}/v1/responses"))
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let err = sender.send(request).await.err().unwrap();
        assert!(err.connect, "{}", err.message);

        let hello = server.await.unwrap();
        assert_eq!(hello[0], 0x16, "a TLS handshake record, not plain HTTP");
        let has = |needle: &[u8]| hello.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"\x02h2"), "ALPN offers h2");
        assert!(has(b"\x08http/1.1"), "ALPN offers http/1.1");
    }

    /// A self-signed certificate for 127.0.0.1 and its key, made with openssl for this test only:
    /// no root signed it, which is the point. Not a secret of anything.
    const SELF_SIGNED_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBrDCCAVGgAwIBAgIUcdU8QDVcYhSz32P/WN1pZoTYgZQwCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWc3VicmVsYXkgdGVzdCB1cHN0cmVhbTAgFw0yNjEyMDEwMDA2
NDVaGA8yMTI2MTEwNzAwMDY0NVowITEfMB0GA1UEAwwWc3VicmVsYXkgdGVzdCB1
cHN0cmVhbTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABCUXJzES9+oi3AFIv/EH
nX5lheZOQedgUe2GO13zduU5FUEjux3bRqlOxVm+SZtH3ahG35plBSPiPyHbMHqV
utqjZTBjMAwGA1UdEwEB/wQCMAAwDgYDVR0PAQH/BAQDAgeAMBMGA1UdJQQMMAoG
CCsGAQUFBwMBMA8GA1UdEQQIMAaHBH8AAAEwHQYDVR0OBBYEFCq0g08mvTiO7tnR
svdJ56RLpvCxMAoGCCqGSM49BAMCA0kAMEYCIQCywomRQH37UWT9+83hr4EU+bpp
WsfkoLlcIhIxBHMPgQIhAIJOy7sA3QeT1N8jSmU1bca59q8OE+xT1uAuj+oT4ucd
-----END CERTIFICATE-----";
    const SELF_SIGNED_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgPP6tVq/7CgivlCsV
WZ8nc2eYt0JfkZXP5+O/34JwkIyhRANCAAQlFycxEvfqItwBSL/xB51+ZYXmTkHn
YFHthjtd83blORVBI7sd20apTsVZvkmbR92oRt+aZQUj4j8h2zB6lbra
-----END PRIVATE KEY-----";

    fn ring() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// A TLS handshake with a server whose certificate no public root signed: the client refuses
    /// the certificate (the server receives the `unknown_ca` alert) and the send is a connect
    /// error. Control: a client that trusts this certificate completes the handshake with the
    /// same server.
    #[tokio::test]
    async fn an_upstream_certificate_no_public_root_signed_is_refused() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let cert = CertificateDer::from_pem_slice(SELF_SIGNED_CERT.as_bytes()).unwrap();
        let key = PrivateKeyDer::from_pem_slice(SELF_SIGNED_KEY.as_bytes()).unwrap();
        let server_config = Arc::new(
            rustls::ServerConfig::builder_with_provider(ring())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.clone()], key)
                .unwrap(),
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Two handshakes, each to its end: the gateway's client, then the trusting control.
        let server = std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            for _ in 0..2 {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut tls = rustls::ServerConnection::new(Arc::clone(&server_config)).unwrap();
                let outcome = loop {
                    match tls.complete_io(&mut tcp) {
                        Ok(_) if tls.is_handshaking() => {}
                        Ok(_) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                };
                outcomes.push(outcome);
            }
            outcomes
        });

        let sender = Sender::Direct(Arc::new(direct(Duration::from_secs(10)).unwrap()));
        let request = http::Request::post(format!("https://127.0.0.1:{port}/v1/responses"))
            .body(Bytes::from_static(b"{}"))
            .unwrap();
        let err = sender.send(request).await.err().unwrap();
        assert!(err.connect, "{}", err.message);

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let trusting = Arc::new(
            rustls::ClientConfig::builder_with_provider(ring())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        let control = std::thread::spawn(move || {
            let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = rustls::ClientConnection::new(trusting, name).unwrap();
            while tls.is_handshaking() {
                tls.complete_io(&mut tcp).unwrap();
            }
        });
        control.join().unwrap();

        let outcomes = server.join().unwrap();
        let refused = outcomes[0].as_ref().unwrap_err();
        let alert = refused
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                alert,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA
                ))
            ),
            "the client refused the certificate, not the connection: {refused:?}"
        );
        assert!(
            outcomes[1].is_ok(),
            "control: {:?}",
            outcomes[1].as_ref().err()
        );
    }
}
