//! Talking to upstream accounts: the HTTP client, URL rules and header rules per account kind.
//! Knows nothing of failover or of the downstream connection.

mod h2_connection;
mod h2_pool;
mod headers;
pub mod refresh;
mod send;
pub mod session;
pub mod trust;
mod tunnel;
mod url;
pub mod websocket;

#[cfg(test)]
mod connect_tests;

pub use headers::{
    anthropic_headers, chat_headers, keep_used, upstream_headers, SessionRewrite, SESSION_HEADERS,
};
pub use send::{Body, Response, SendError, Sender};
pub use url::Endpoints;

use std::time::Duration;

/// The HTTP client of one account: its own connection pool, through its own proxy if it has one.
/// With a proxy configured, a broken proxy fails the request; there is no direct fallback.
/// Its TLS trust is the process's ([`trust`]); reqwest retries a stream the server refused
/// (RST_STREAM REFUSED_STREAM) or sent a graceful GOAWAY on by itself.
/// `connect_timeout` is `gateway.connect_timeout`.
pub fn client(
    proxy: Option<&crate::domain::Secret>,
    connect_timeout: Duration,
) -> Result<reqwest::Client, String> {
    let builder = match proxy {
        Some(url) => reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(url.expose()).map_err(|e| e.to_string())?),
        None => reqwest::Client::builder(),
    };
    builder
        .use_preconfigured_tls(trust::reqwest_config()?)
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        // The relay forwards bodies as they are; it never asks for compression it would have
        // to undo to read usage.
        .no_gzip()
        .no_brotli()
        .no_zstd()
        .no_deflate()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}
