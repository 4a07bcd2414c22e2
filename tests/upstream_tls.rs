//! The upstream over TLS, end to end: the real binary in front of the fake upstream serving TLS
//! with a certificate from a CA made for the test (trusted through `upstream.ca_file`), over
//! HTTP/2 and over HTTP/1.1, on every protocol; and the certificates it must refuse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "tests: a failed step should fail the test at once; blocking file writes set up"
)]

use crate::common;

use common::*;
use serde_json::{json, Value};
use subrelay_mock::{MockTls, TestCa};

const SIGNIN_KEY: &str = "sk-signin-key";
const CLAUDE_KEY: &str = "sk-claude-key";

/// `ca`'s certificate in a PEM file, for `upstream.ca_file`.
fn ca_file(ca: &TestCa) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &ca.cert_pem).unwrap();
    file
}

/// Three accounts on the mock, each reached by its own key: an API-key OpenAI account (key
/// [`KEY`]: Responses and Chat), a sign-in (Codex) account ([`SIGNIN_KEY`]) and an Anthropic API
/// key account ([`CLAUDE_KEY`]). `ca_file`, if given, becomes `upstream.ca_file`.
fn tls_config(mock: &MockUpstream, ca_file: Option<&std::path::Path>) -> String {
    let url = mock.url();
    let upstream = ca_file
        .map(|path| format!("upstream:\n  ca_file: {}\n", path.display()))
        .unwrap_or_default();
    format!(
        "{upstream}groups:
  - {{name: signin, platform: openai}}
  - {{name: claude, platform: anthropic}}
api_keys:
  - {{key: {KEY}, name: api-user}}
  - {{key: {SIGNIN_KEY}, name: signin-user, group: signin}}
  - {{key: {CLAUDE_KEY}, name: claude-user, group: claude}}
accounts:
  - name: api
    platform: openai
    type: apikey
    base_url: {url}/v1
    api_key: sk-upstream-api
  - name: signin
    platform: openai
    type: oauth
    base_url: {url}/backend-api/codex
    access_token: tok-signin
    chatgpt_account_id: acct-signin
    groups: [signin]
  - name: claude
    platform: anthropic
    type: apikey
    base_url: {url}
    api_key: sk-ant-upstream
    groups: [claude]
"
    )
}

async fn send(gw: &Gateway, path: &str, key: &str, body: &Value) -> reqwest::Response {
    let request = client().post(format!("{}{path}", gw.url)).json(body);
    let request = if key == CLAUDE_KEY {
        request.header("x-api-key", key)
    } else {
        request.bearer_auth(key)
    };
    request.send().await.unwrap()
}

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-5", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

fn message(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

/// Every protocol, streamed and JSON, through the gateway to a TLS mock offering HTTP/2 or only
/// HTTP/1.1; returns the mock for the caller's assertions on connections.
async fn every_protocol_over_tls(http2: bool) -> MockUpstream {
    let ca = TestCa::new("subrelay test CA").unwrap();
    let leaf = ca.leaf(&["localhost"]).unwrap();
    let mock = MockUpstream::start_tls(MockTls {
        http2,
        ..MockTls::new(&leaf)
    })
    .await
    .unwrap();
    let trust = ca_file(&ca);
    let gw = Gateway::start(&tls_config(&mock, Some(trust.path())));

    for (key, path, body, last_event) in [
        (
            KEY,
            "/v1/responses",
            body("gpt-5", true),
            "response.completed",
        ),
        (
            SIGNIN_KEY,
            "/v1/responses",
            body("gpt-5", true),
            "response.completed",
        ),
        (CLAUDE_KEY, "/v1/messages", message(true), "message_stop"),
    ] {
        let answer = send(&gw, path, key, &body).await;
        assert_eq!(answer.status(), 200, "{key} {path}");
        let text = answer.text().await.unwrap();
        let types = event_types(&text);
        assert_eq!(
            types.last().map(String::as_str),
            Some(last_event),
            "{key} {path}: {text}"
        );
    }
    let answer = send(&gw, "/v1/chat/completions", KEY, &chat(true)).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");

    for (key, path, body, field) in [
        (KEY, "/v1/responses", body("gpt-5", false), "output"),
        (SIGNIN_KEY, "/v1/responses", body("gpt-5", false), "output"),
        (KEY, "/v1/chat/completions", chat(false), "choices"),
        (CLAUDE_KEY, "/v1/messages", message(false), "content"),
    ] {
        let answer = send(&gw, path, key, &body).await;
        assert_eq!(answer.status(), 200, "{key} {path}");
        let json: Value = answer.json().await.unwrap();
        assert!(json[field].is_array(), "{key} {path}: {json}");
    }

    let credentials: Vec<_> = mock
        .requests()
        .iter()
        .map(|r| r.credential.clone().unwrap_or_default())
        .collect();
    for credential in ["sk-upstream-api", "tok-signin", "sk-ant-upstream"] {
        assert!(
            credentials.iter().any(|c| c == credential),
            "{credential} reached the mock: {credentials:?}"
        );
    }
    assert_eq!(mock.completed(), 8, "every answer was read to its end");
    mock
}

#[tokio::test]
async fn every_protocol_works_over_tls_and_http2_on_one_connection() {
    let mock = every_protocol_over_tls(true).await;
    let connections = mock.connections();
    assert!(!connections.is_empty());
    for connection in &connections {
        assert_eq!(connection.handshake, Ok(()), "{connections:?}");
        assert_eq!(connection.alpn.as_deref(), Some("h2"), "{connections:?}");
    }
    // The three accounts each have their own client; one after the other, each reuses its one
    // HTTP/2 connection.
    assert_eq!(connections.len(), 3, "{connections:?}");
}

#[tokio::test]
async fn every_protocol_works_over_tls_and_http1() {
    let mock = every_protocol_over_tls(false).await;
    let connections = mock.connections();
    assert!(!connections.is_empty());
    for connection in &connections {
        assert_eq!(connection.handshake, Ok(()), "{connections:?}");
        assert_eq!(
            connection.alpn.as_deref(),
            Some("http/1.1"),
            "{connections:?}"
        );
    }
}

/// The gateway names the host it connects to in the handshake (SNI), as providers behind shared
/// front ends need.
#[tokio::test]
async fn sni_names_the_upstream_host() {
    let ca = TestCa::new("subrelay test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&ca.leaf(&["localhost"]).unwrap()))
        .await
        .unwrap();
    let trust = ca_file(&ca);
    let gw = Gateway::start(&tls_config(&mock, Some(trust.path())));
    let answer = send(&gw, "/v1/chat/completions", KEY, &chat(false)).await;
    assert_eq!(answer.status(), 200);
    let connections = mock.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0].server_name.as_deref(), Some("localhost"));
}

/// A refused certificate: the client gets a 502 (which, by the relay's rule, says only that the
/// upstream could not be reached), the log line names the certificate problem, and no request
/// went over the failed handshake. Returns that log line.
async fn refused(leaf_of: impl Fn(&TestCa) -> subrelay_mock::Leaf, trusted: bool) -> String {
    let ca = TestCa::new("subrelay test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&leaf_of(&ca)))
        .await
        .unwrap();
    let trust = ca_file(&ca);
    let gw = Gateway::start(&tls_config(&mock, trusted.then_some(trust.path())));
    let answer = send(&gw, "/v1/chat/completions", KEY, &chat(false)).await;
    assert_eq!(answer.status(), 502);
    let json: Value = answer.json().await.unwrap();
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not connect"), "{message}");
    let line = gw.wait_for_log("invalid peer certificate").await;
    assert_eq!(
        mock.total_calls(),
        0,
        "no request went over a refused handshake"
    );
    line
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_and_named() {
    // Control: `every_protocol_works_over_tls_*` serve the same kind of certificate with its CA
    // in upstream.ca_file; here the file is left out.
    let message = refused(|ca| ca.leaf(&["localhost"]).unwrap(), false).await;
    assert!(message.contains("UnknownIssuer"), "{message}");
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_and_named() {
    let message = refused(|ca| ca.leaf(&["other.example"]).unwrap(), true).await;
    assert!(message.contains("not valid for name"), "{message}");
}

#[tokio::test]
async fn an_expired_certificate_is_refused_and_named() {
    let message = refused(|ca| ca.expired_leaf(&["localhost"]).unwrap(), true).await;
    assert!(message.contains("expired"), "{message}");
}

/// `upstream.ca_file` is read at start: a file without a certificate stops the start with a
/// message naming the key.
#[test]
fn a_ca_file_without_a_certificate_stops_the_start() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "not a certificate\n").unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!("upstream:\n  ca_file: {}\n", file.path().display()),
    )
    .unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay"));
    command
        .arg("check-config")
        .arg("--config")
        .arg(config.path());
    without_config_env(&mut command);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("upstream.ca_file"), "{stderr}");
    assert!(stderr.contains("no CERTIFICATE block"), "{stderr}");
}
