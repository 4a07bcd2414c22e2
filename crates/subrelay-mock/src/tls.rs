//! Serving over TLS, as every real provider does: rustls with ALPN `h2` and `http/1.1`, so a
//! client that offers HTTP/2 gets it (served by hyper's HTTP/2 server), and a record of what each
//! connection's handshake carried (the SNI name, the protocol agreed, or why it failed).

use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::certs::Leaf;

/// How a TLS mock serves ([`crate::MockUpstream::start_tls`]).
#[derive(Clone, Debug)]
pub struct MockTls {
    /// The certificate chain the mock presents, PEM, leaf first.
    pub cert_pem: String,
    /// The leaf's private key, PEM.
    pub key_pem: String,
    /// Offer HTTP/2 in ALPN (preferred over HTTP/1.1). `false`: HTTP/1.1 only, as a provider
    /// behind an HTTP/1.1-only front end.
    pub http2: bool,
    /// The HTTP/2 `SETTINGS_MAX_CONCURRENT_STREAMS` the mock announces; `None`: hyper's default.
    /// A stream opened beyond it is refused by the server (RST_STREAM REFUSED_STREAM).
    pub max_concurrent_streams: Option<u32>,
}

impl MockTls {
    /// Serving this certificate with HTTP/2 and HTTP/1.1 offered, hyper's stream limit.
    pub fn new(leaf: &Leaf) -> MockTls {
        MockTls {
            cert_pem: leaf.cert_pem.clone(),
            key_pem: leaf.key_pem.clone(),
            http2: true,
            max_concurrent_streams: None,
        }
    }
}

/// What the mock saw of one accepted connection, in order of the handshake's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// The server name the client sent (SNI); `None` without TLS or when it sent none (clients
    /// send none for an IP address).
    pub server_name: Option<String>,
    /// The protocol ALPN agreed on (`h2`, `http/1.1`); `None` without TLS or without ALPN.
    pub alpn: Option<String>,
    /// `Err`: the TLS handshake failed, with rustls's reason (for a client that refused the
    /// certificate, the alert it sent, such as `UnknownCA`).
    pub handshake: Result<(), String>,
}

impl ConnectionRecord {
    pub(crate) fn plain() -> ConnectionRecord {
        ConnectionRecord {
            server_name: None,
            alpn: None,
            handshake: Ok(()),
        }
    }

    pub(crate) fn of(session: &rustls::ServerConnection) -> ConnectionRecord {
        ConnectionRecord {
            server_name: session.server_name().map(str::to_owned),
            alpn: session
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            handshake: Ok(()),
        }
    }

    pub(crate) fn failed(why: &std::io::Error) -> ConnectionRecord {
        ConnectionRecord {
            server_name: None,
            alpn: None,
            handshake: Err(why.to_string()),
        }
    }
}

/// The acceptor for these options: their certificate and key, their ALPN list.
pub(crate) fn acceptor(tls: &MockTls) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("TLS certificate", &e))?;
    if chain.is_empty() {
        return Err(invalid("TLS certificate", &"no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|e| invalid("TLS key", &e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid("TLS set-up", &e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| invalid("TLS certificate and key", &e))?;
    config.alpn_protocols = if tls.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
