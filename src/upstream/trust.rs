//! Which certificates an upstream may present: one TLS client configuration for the process,
//! shared by every way a request leaves (hyper-util's client, reqwest for proxies, token refresh
//! and sign-in), so they can never disagree about whom to trust.
//!
//! The roots are the Mozilla set compiled in (webpki-roots), not the machine's store: the same
//! binary trusts the same authorities on every machine and in the `debian:bookworm-slim` image,
//! which has no `ca-certificates` package, and a root added to or missing from a host's store
//! cannot change which providers subrelay reaches. `upstream.ca_file` adds authorities beside
//! them (a private CA, a TLS-inspecting proxy). There is deliberately no way to skip
//! verification.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;

/// The configuration, built on first use or by [`install`] at start.
static CONFIG: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();

/// Trusts `extra_roots` (from `upstream.ca_file`) beside the built-in roots, for every upstream
/// client built from now on. Called once at start, before any client is built.
pub fn install(extra_roots: &[CertificateDer<'static>]) -> Result<(), String> {
    let built = build(extra_roots);
    let outcome = built.as_ref().map(drop).map_err(Clone::clone);
    CONFIG
        .set(built)
        .map_err(|_| "the upstream TLS trust was already set up".to_owned())?;
    if !extra_roots.is_empty() {
        tracing::info!(
            extra = extra_roots.len(),
            "upstream TLS trusts the built-in Mozilla roots and the certificates of upstream.ca_file"
        );
    }
    outcome
}

/// The process's TLS client configuration, without ALPN (each client sets its own).
pub(super) fn client_config() -> Result<rustls::ClientConfig, String> {
    CONFIG.get_or_init(|| build(&[])).clone()
}

/// The configuration for reqwest, which uses a preconfigured one as it is: ALPN offers HTTP/2
/// and HTTP/1.1, as hyper-rustls does for the direct client.
pub(super) fn reqwest_config() -> Result<rustls::ClientConfig, String> {
    let mut config = client_config()?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn build(extra_roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (i, root) in extra_roots.iter().enumerate() {
        roots
            .add(root.clone())
            .map_err(|e| format!("upstream.ca_file: certificate {}: {e}", i + 1))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS set-up: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// A CA certificate is accepted as an extra root; bytes that are no certificate are refused
    /// with a message naming the key and which certificate.
    #[test]
    fn extra_roots_must_be_certificates() {
        use rustls::pki_types::pem::PemObject;
        let ca = subrelay_mock::TestCa::new("trust test CA").unwrap();
        let extra = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        assert!(build(std::slice::from_ref(&extra)).is_ok());
        let garbage = CertificateDer::from(b"not a certificate".to_vec());
        let err = build(&[extra, garbage]).unwrap_err();
        assert!(err.starts_with("upstream.ca_file: certificate 2:"), "{err}");
    }
}
