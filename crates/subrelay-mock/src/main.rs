//! `subrelay-mock`: the fake upstream as a process, for the README demo and benchmarks.
//!
//! Scripts are not reachable from outside, so behaviour comes from the model name (see the
//! library docs). The first stdout line announces the URL so a script can wait for it and parse
//! it; nothing is logged per request because this process is the baseline benchmarks subtract.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use subrelay_mock::MockUpstream;

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mock = match MockUpstream::start_on(SocketAddr::new(args.host, args.port)).await {
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
