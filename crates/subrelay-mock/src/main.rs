//! `subrelay-mock`: the fake upstream as a process, for the README demo and benchmarks.
//!
//! Scripts are not reachable from outside, so behaviour comes from the model name (see the
//! library docs). The first stdout line announces the URL so a script can wait for it and parse
//! it; nothing is logged per request because this process is the baseline benchmarks subtract.

#![allow(
    clippy::disallowed_methods,
    reason = "the mock's binary reads and writes its certificate files at start-up"
)]

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use subrelay_mock::{MockTls, MockUpstream, TestCa};

/// Scripted fake Codex backend / OpenAI API / Anthropic API for subrelay tests, demos and
/// benchmarks.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve TLS with this certificate chain (PEM, leaf first); needs --tls-key. ALPN offers
    /// h2 and http/1.1.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate for `localhost` and `127.0.0.1` signed by a certificate
    /// authority made now, whose certificate is written to DIR/ca.pem (for a client's trust,
    /// e.g. subrelay's `upstream.ca_file`). For benchmarks and demos; ALPN as with --tls-cert.
    #[arg(long, value_name = "DIR", conflicts_with = "tls_cert")]
    tls_test_ca: Option<PathBuf>,
    /// With TLS: the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS announced (default: hyper's).
    #[arg(long)]
    max_concurrent_streams: Option<u32>,
}

/// The TLS options the arguments ask for, if any.
fn tls(args: &Args) -> Result<Option<MockTls>, String> {
    if let Some(dir) = &args.tls_test_ca {
        return test_ca_tls(dir, args.max_concurrent_streams).map(Some);
    }
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        if args.max_concurrent_streams.is_some() {
            return Err("--max-concurrent-streams needs --tls-cert or --tls-test-ca".into());
        }
        return Ok(None);
    };
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
    };
    Ok(Some(MockTls {
        cert_pem: read(cert)?,
        key_pem: read(key)?,
        http2: true,
        max_concurrent_streams: args.max_concurrent_streams,
    }))
}

/// A leaf for `localhost` and `127.0.0.1` from a fresh authority whose certificate goes to
/// `dir/ca.pem`.
fn test_ca_tls(
    dir: &std::path::Path,
    max_concurrent_streams: Option<u32>,
) -> Result<MockTls, String> {
    let ca = TestCa::new("subrelay-mock test CA").map_err(|e| format!("test CA: {e}"))?;
    let leaf = ca
        .leaf(&["localhost", "127.0.0.1"])
        .map_err(|e| format!("test certificate: {e}"))?;
    let path = dir.join("ca.pem");
    std::fs::write(&path, &ca.cert_pem)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(MockTls {
        cert_pem: leaf.cert_pem,
        key_pem: leaf.key_pem,
        http2: true,
        max_concurrent_streams,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let started = match tls(&args) {
        Ok(None) => MockUpstream::start_on(addr).await,
        Ok(Some(tls)) => MockUpstream::start_tls_on(addr, tls).await,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "subrelay-mock: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mock = match started {
        Ok(mock) => mock,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "subrelay-mock: cannot listen on {}:{}: {err}",
                args.host,
                args.port
            );
            return ExitCode::FAILURE;
        }
    };
    mock.keep_records(false);

    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "subrelay-mock listening on {}", mock.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);

    match shutdown_signal().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "subrelay-mock: cannot wait for signals: {err}"
            );
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
