//! Proxies on loopback for the per-account proxy tests, each counting what it carried:
//! - [`HttpProxy`]: an HTTP proxy, both kinds a client uses: `CONNECT host:port` tunnels and
//!   absolute-form requests (`POST http://host:port/path`), forwarded as they are;
//! - [`TlsProxy`]: a TLS endpoint where an `https://` proxy would be, with a certificate no
//!   public root signed; it records each ClientHello and how the handshake ended.
//!
//! Like [`super::socks::Socks5`], the HTTP proxy resolves names itself and maps every host under
//! `.invalid` (a name that never resolves, RFC 6761) to 127.0.0.1: an upstream named
//! `upstream.invalid` can only be reached through the proxy, so a request that arrives proves
//! the way it took.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The largest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;

/// The address the proxies (and [`super::socks::Socks5`]) connect to for `host`.
pub fn route(host: &str) -> &str {
    if host.ends_with(".invalid") {
        "127.0.0.1"
    } else {
        host
    }
}

pub struct HttpProxy {
    /// `http://127.0.0.1:port`.
    pub url: String,
    connections: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpProxy {
    pub async fn start() -> HttpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (Arc::clone(&connections), Arc::clone(&heads));
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (count, seen) = (Arc::clone(&count), Arc::clone(&seen));
                tokio::spawn(async move {
                    let _ = serve(client, count, seen).await;
                });
            }
        });
        HttpProxy {
            url,
            connections,
            heads,
            task,
        }
    }

    /// Connections carried to an upstream.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The head (request line and headers) of the first request on each connection.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for HttpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut client: TcpStream,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 || head.len() > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).into_owned();
    let mut words = text.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let authority = if method == "CONNECT" {
        target.to_owned()
    } else {
        // Absolute form: http://host:port/path
        let rest = target.strip_prefix("http://").unwrap_or(target);
        rest.split('/').next().unwrap_or("").to_owned()
    };
    let (host, port) = authority.rsplit_once(':').unwrap_or((&authority, "80"));
    let port: u16 = port.parse().unwrap_or(80);
    let Ok(mut upstream) = TcpStream::connect((route(host), port)).await else {
        client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    count.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(text.clone());
    if method == "CONNECT" {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        upstream.write_all(&head[end..]).await?;
    } else {
        upstream.write_all(&head).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

/// What a [`TlsProxy`] saw of one connection.
#[derive(Clone, Debug)]
pub struct TlsVisit {
    /// The first bytes the client sent (its ClientHello, if it speaks TLS).
    pub first_bytes: Vec<u8>,
    /// The handshake: `Ok` if it completed, else the server's error (for a client that refused
    /// the certificate, the alert it sent).
    pub handshake: Result<(), String>,
}

/// A TLS endpoint where an `https://` proxy would be, with a self-signed certificate for
/// `localhost` made at start (rcgen). It records each connection's ClientHello and handshake
/// outcome, and carries nothing.
pub struct TlsProxy {
    /// `https://localhost:port`: a name, so a TLS client sends it as SNI and checks the
    /// certificate against it.
    pub url: String,
    /// The certificate, for a client that chooses to trust it.
    pub certificate: tokio_rustls::rustls::pki_types::CertificateDer<'static>,
    visits: Arc<Mutex<Vec<TlsVisit>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsProxy {
    pub async fn start() -> TlsProxy {
        use tokio_rustls::rustls;
        let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let certificate = issued.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(issued.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate.clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let visits = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&visits);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (seen, acceptor) = (Arc::clone(&seen), acceptor.clone());
                tokio::spawn(async move {
                    let mut first_bytes = vec![0u8; 4096];
                    let n = client.peek(&mut first_bytes).await.unwrap_or(0);
                    first_bytes.truncate(n);
                    let handshake = acceptor
                        .accept(client)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string());
                    seen.lock().unwrap().push(TlsVisit {
                        first_bytes,
                        handshake,
                    });
                });
            }
        });
        TlsProxy {
            url,
            certificate,
            visits,
            task,
        }
    }

    /// The connections so far, in order of their handshake's end.
    pub fn visits(&self) -> Vec<TlsVisit> {
        self.visits.lock().unwrap().clone()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
