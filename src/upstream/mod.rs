//! Talking to upstream accounts: the HTTP client, URL rules and header rules per account kind.
//! Knows nothing of failover or of the downstream connection.

mod headers;
mod url;

pub use headers::upstream_headers;
pub use url::responses_url;

use std::time::Duration;

/// The HTTP client shared by all accounts. Connections are pooled per upstream host and reused;
/// per-account outbound proxies (a later issue) get one client each.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
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
}
