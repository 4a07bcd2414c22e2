//! Serving TLS: HTTP/2 and HTTP/1.1 by ALPN, the SNI and protocol recorded per connection, a
//! refused certificate recorded with its alert, a GOAWAY that sends new requests to a new
//! connection, and a refused stream.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(clippy::unwrap_used, reason = "tests")]

use serde_json::json;
use subrelay_mock::{Behavior, MockTls, MockUpstream, TestCa};

fn trusting(ca: &TestCa) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn chat(client: &reqwest::Client, mock: &MockUpstream) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}/v1/chat/completions", mock.url()))
        .bearer_auth("sk-a")
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .send()
        .await
}

#[tokio::test]
async fn http2_is_served_over_tls_and_the_handshake_is_recorded() {
    let ca = TestCa::new("mock test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&ca.leaf(&["localhost"]).unwrap()))
        .await
        .unwrap();
    assert!(mock.url().starts_with("https://localhost:"));
    let answer = chat(&trusting(&ca), &mock).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let connections = mock.connections();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0].server_name.as_deref(), Some("localhost"));
    assert_eq!(connections[0].alpn.as_deref(), Some("h2"));
}

#[tokio::test]
async fn without_http2_offered_the_answer_is_http1() {
    let ca = TestCa::new("mock test CA").unwrap();
    let tls = MockTls {
        http2: false,
        ..MockTls::new(&ca.leaf(&["localhost"]).unwrap())
    };
    let mock = MockUpstream::start_tls(tls).await.unwrap();
    let answer = chat(&trusting(&ca), &mock).await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_11);
    assert_eq!(mock.connections()[0].alpn.as_deref(), Some("http/1.1"));
}

/// A client that does not trust the CA refuses the certificate; the mock records the alert.
#[tokio::test]
async fn a_refused_certificate_is_recorded_with_the_clients_alert() {
    let ca = TestCa::new("mock test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&ca.leaf(&["localhost"]).unwrap()))
        .await
        .unwrap();
    let other = TestCa::new("another CA").unwrap();
    assert!(chat(&trusting(&other), &mock).await.is_err());
    // The mock records the failed handshake once it has read the alert.
    let connections = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let connections = mock.connections();
            if !connections.is_empty() {
                return connections;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    let refused = connections[0].handshake.as_ref().unwrap_err();
    assert!(refused.contains("UnknownCA"), "{refused}");
}

/// After a GOAWAY the client opens a new connection for the next request.
#[tokio::test]
async fn after_a_goaway_the_next_request_uses_a_new_connection() {
    let ca = TestCa::new("mock test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&ca.leaf(&["localhost"]).unwrap()))
        .await
        .unwrap();
    let client = trusting(&ca);
    assert_eq!(chat(&client, &mock).await.unwrap().status(), 200);
    assert_eq!(chat(&client, &mock).await.unwrap().status(), 200);
    assert_eq!(
        mock.connections().len(),
        1,
        "control: one shared connection"
    );
    mock.goaway();
    // The client learns of the GOAWAY when it reads it; wait for the connection to be gone.
    for _ in 0..200 {
        if chat(&client, &mock).await.is_ok() && mock.connections().len() == 2 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("no new connection: {:?}", mock.connections());
}

#[tokio::test]
async fn refuse_stream_resets_the_stream_with_refused_stream() {
    let ca = TestCa::new("mock test CA").unwrap();
    let mock = MockUpstream::start_tls(MockTls::new(&ca.leaf(&["localhost"]).unwrap()))
        .await
        .unwrap();
    mock.script(
        "sk-a",
        vec![Behavior {
            refuse_stream: true,
            ..Behavior::default()
        }],
    );
    // reqwest retries a refused stream by itself; this client must see it.
    let client = reqwest::Client::builder()
        .no_proxy()
        .retry(reqwest::retry::never())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let err = chat(&client, &mock).await.unwrap_err();
    let mut chain = format!("{err}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    assert!(chain.contains("refused stream"), "{chain}");
    assert_eq!(
        chat(&client, &mock).await.unwrap().status(),
        200,
        "next step"
    );
}

/// The binary serves TLS with `--tls-cert`/`--tls-key` and announces an `https://` URL.
#[tokio::test]
async fn the_binary_serves_tls_from_pem_files() {
    use std::io::BufRead;

    let ca = TestCa::new("mock test CA").unwrap();
    let leaf = ca.leaf(&["localhost"]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay-mock"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("subrelay-mock listening on ")
        .unwrap()
        .to_owned();
    let answer = trusting(&ca)
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth("sk-a")
        .header("content-type", "application/json")
        .body(
            json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )
        .send()
        .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
}

/// With `--tls-test-ca DIR` the binary makes its own authority and certificate, writes the
/// authority to DIR/ca.pem, and a client trusting that file (and nothing else) gets HTTP/2.
#[tokio::test]
async fn the_binary_makes_a_test_ca_and_writes_it() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay-mock"))
        .arg("--tls-test-ca")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("subrelay-mock listening on ")
        .unwrap_or_default()
        .to_owned();
    let ca_pem = std::fs::read(dir.path().join("ca.pem"));
    let answer = match &ca_pem {
        Ok(pem) => Some(
            reqwest::Client::builder()
                .no_proxy()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
                .build()
                .unwrap()
                .post(format!("{url}/v1/chat/completions"))
                .bearer_auth("sk-a")
                .header("content-type", "application/json")
                .body(
                    json!({"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]})
                        .to_string(),
                )
                .send()
                .await,
        ),
        Err(_) => None,
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(url.starts_with("https://localhost:"), "{url}");
    let answer = answer.expect("ca.pem written").unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
}
