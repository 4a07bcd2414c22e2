//! Per-account proxies through the real binary: `http://` (with credentials), `socks5h://`
//! (the proxy resolves the name), `https://` (TLS to the proxy), and a sign-in token refresh
//! through the account's proxy.
//!
//! The accounts' upstream is named `upstream.invalid`, a name that never resolves; the test
//! proxies connect it to the fake upstream. A request (or a refresh) that reaches the mock has
//! therefore gone through the proxy, and the positive control shows the same account without a
//! proxy cannot reach it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::{Duration, SystemTime};

use common::http_proxy::{HttpProxy, TlsProxy};
use common::socks::Socks5;
use common::*;
use serde_json::Value;

const HIDDEN_HOST: &str = "upstream.invalid";

/// The mock's address under the name only the proxies resolve.
fn hidden(mock: &MockUpstream) -> String {
    format!("http://{HIDDEN_HOST}:{}", mock.addr().port())
}

/// One API-key account on the hidden upstream, through `proxy` when given, then `extra`
/// (more accounts).
fn yaml(mock: &MockUpstream, token: &str, proxy: Option<&str>, extra: &str) -> String {
    let proxy = proxy.map_or(String::new(), |p| format!(", proxy: '{p}'"));
    format!(
        "api_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: proxied, platform: openai, type: apikey, api_key: {token}, base_url: '{}/v1'{proxy}}}\n{extra}",
        hidden(mock)
    )
}

async fn status(gw: &Gateway) -> u16 {
    post(gw, "/v1/responses", &body("gpt-5", false))
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn without_a_proxy_the_hidden_upstream_is_unreachable() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&yaml(&mock, "tok-direct", None, ""));
    assert_eq!(status(&gw).await, 502);
    assert_eq!(mock.total_calls(), 0);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        records[0]["attempts"][0]["outcome"], "connect_error",
        "{records:?}"
    );
}

#[tokio::test]
async fn an_http_proxy_carries_the_accounts_requests_with_its_credentials() {
    let mock = MockUpstream::start().await;
    let proxy = HttpProxy::start().await;
    let with_auth = proxy
        .url
        .replace("http://", "http://proxy-user:proxy-pass@");
    let gw = Gateway::start(&yaml(&mock, "tok-http", Some(&with_auth), ""));
    for _ in 0..3 {
        assert_eq!(status(&gw).await, 200);
    }
    assert_eq!(mock.calls("tok-http"), 3);
    assert!(
        (1..=3).contains(&proxy.connections()),
        "{}",
        proxy.connections()
    );
    let head = &proxy.heads()[0];
    let target = format!("POST {}/v1/responses HTTP/1.1\r\n", hidden(&mock));
    assert!(head.starts_with(&target), "{head}");
    // base64("proxy-user:proxy-pass")
    assert!(
        head.to_ascii_lowercase().contains(
            "proxy-authorization: basic cHJveHktdXNlcjpwcm94eS1wYXNz"
                .to_ascii_lowercase()
                .as_str()
        ),
        "{head}"
    );
}

#[tokio::test]
async fn socks5h_lets_the_proxy_resolve_the_name_and_socks5_does_not() {
    let mock = MockUpstream::start().await;
    let proxy = Socks5::start().await;
    let socks5h = proxy.url.replace("socks5://", "socks5h://");
    let gw = Gateway::start(&yaml(&mock, "tok-socks5h", Some(&socks5h), ""));
    for _ in 0..2 {
        assert_eq!(status(&gw).await, 200);
    }
    assert_eq!(mock.calls("tok-socks5h"), 2);
    let names = proxy.names();
    assert!(!names.is_empty() && names.len() <= 2, "{names:?}");
    assert!(
        names.iter().all(|n| n.as_deref() == Some(HIDDEN_HOST)),
        "the proxy was asked for the name: {names:?}"
    );

    // Control: plain socks5 resolves the name on the gateway's side, where it does not exist.
    let local = Socks5::start().await;
    let gw = Gateway::start(&yaml(&mock, "tok-socks5", Some(&local.url), ""));
    assert_eq!(status(&gw).await, 502);
    assert_eq!(mock.calls("tok-socks5"), 0);
    assert_eq!(local.connections(), 0);
}

/// Waits (up to 20 s) until the proxy recorded `n` connections.
async fn wait_for_visits(proxy: &TlsProxy, n: usize) -> Vec<common::http_proxy::TlsVisit> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let visits = proxy.visits();
        if visits.len() >= n {
            return visits;
        }
        assert!(std::time::Instant::now() < deadline, "{visits:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What is proven of `https://` proxies: the gateway opens TLS to the proxy (a ClientHello
/// naming the proxy's host), checks the proxy's certificate, refuses one no public root signed,
/// and then fails the account; nothing goes around the proxy. The gateway trusts only the public
/// (webpki) roots and has no setting for another, so a test cannot stand up an `https://` proxy
/// it accepts: a request relayed through one is not shown here.
#[tokio::test]
async fn an_https_proxy_gets_tls_its_certificate_is_checked_and_never_bypassed() {
    let mock = MockUpstream::start().await;
    let proxy = TlsProxy::start().await;
    let direct = format!(
        "  - {{name: direct, platform: openai, type: apikey, api_key: tok-direct, base_url: '{}/v1', priority: 1}}\n",
        mock.url()
    );
    let gw = Gateway::start(&yaml(&mock, "tok-https", Some(&proxy.url), &direct));
    assert_eq!(status(&gw).await, 200);
    assert_eq!(mock.calls("tok-https"), 0, "the proxy is never bypassed");
    assert_eq!(mock.calls("tok-direct"), 1, "the next account served");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        records[0]["attempts"][0]["outcome"], "connect_error",
        "{records:?}"
    );

    // The proxy records a visit when its side of the handshake ends, which may be just after
    // the gateway answered.
    let visits = wait_for_visits(&proxy, 1).await;
    assert!(
        visits.iter().all(|v| v.handshake.is_err()),
        "no handshake completed: {visits:?}"
    );
    let hello = &visits[0].first_bytes;
    // A TLS handshake record (0x16, version 3.x) carrying a ClientHello (type 1)...
    assert!(
        hello.len() > 6 && hello[0] == 0x16 && hello[1] == 3 && hello[5] == 1,
        "not a ClientHello: {:?}",
        &hello[..hello.len().min(16)]
    );
    // ... whose server name is the proxy's, not the upstream's...
    assert!(hello.windows(9).any(|w| w == b"localhost"));
    assert!(!hello
        .windows(HIDDEN_HOST.len())
        .any(|w| w == HIDDEN_HOST.as_bytes()));
    // ... and the gateway ended the handshake because it does not trust the certificate.
    let error = visits[0].handshake.clone().unwrap_err();
    assert!(
        error.contains("alert") && error.contains("UnknownCA"),
        "{error}"
    );

    // Control: a client that trusts the certificate completes the handshake with this proxy.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(proxy.certificate.clone()).unwrap();
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let port = proxy.url.rsplit(':').next().unwrap();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let after = wait_for_visits(&proxy, visits.len() + 1).await;
    assert!(after[visits.len()].handshake.is_ok(), "{after:?}");
}

// === a token refresh through the proxy ===

fn signin_yaml(mock: &MockUpstream, proxy: &str) -> String {
    let expired = humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60));
    format!(
        "oauth:\n  openai_token_url: {h}/oauth/token\n  refresh_ahead: 0\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - name: codex\n    platform: openai\n    type: oauth\n    base_url: {h}/backend-api/codex\n    access_token: expired-access\n    refresh_token: rt-seed\n    chatgpt_account_id: acct-codex\n    expires_at: {expired}\n    proxy: '{proxy}'\n",
        h = hidden(mock)
    )
}

/// The refresh and the request that needed it both reach the mock, whose only way in is the
/// proxy; the answer used the refreshed token.
async fn refresh_then_serve(mock: &MockUpstream, gw: &Gateway) {
    assert_eq!(status(gw).await, 200);
    assert_eq!(mock.token_calls(), 1);
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(mock.calls(&issued[0]), 1);
    assert_eq!(mock.calls("expired-access"), 0);
}

#[tokio::test]
async fn a_token_refresh_goes_through_an_http_proxy() {
    let mock = MockUpstream::start().await;
    let proxy = HttpProxy::start().await;
    let gw = Gateway::start(&signin_yaml(&mock, &proxy.url));
    refresh_then_serve(&mock, &gw).await;
    let heads = proxy.heads();
    let refresh = format!("POST {}/oauth/token HTTP/1.1\r\n", hidden(&mock));
    assert!(heads.iter().any(|h| h.starts_with(&refresh)), "{heads:?}");
}

#[tokio::test]
async fn a_token_refresh_goes_through_a_socks5h_proxy() {
    let mock = MockUpstream::start().await;
    let proxy = Socks5::start().await;
    let gw = Gateway::start(&signin_yaml(
        &mock,
        &proxy.url.replace("socks5://", "socks5h://"),
    ));
    refresh_then_serve(&mock, &gw).await;
    assert!(proxy.connections() >= 1);
    assert!(
        proxy
            .names()
            .iter()
            .all(|n| n.as_deref() == Some(HIDDEN_HOST)),
        "{:?}",
        proxy.names()
    );
}

/// Control for the refresh tests: without the proxy the same account cannot refresh.
#[tokio::test]
async fn without_its_proxy_the_refresh_cannot_reach_the_token_endpoint() {
    let mock = MockUpstream::start().await;
    let yaml = signin_yaml(&mock, "x").replace("    proxy: 'x'\n", "");
    let gw = Gateway::start(&yaml);
    let answer = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(answer.status(), 502);
    let error: Value = answer.json().await.unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("token endpoint unreachable") && message.contains(HIDDEN_HOST),
        "{error}"
    );
    assert_eq!(mock.token_calls(), 0);
    assert_eq!(mock.total_calls(), 0);
}
