//! HTTP/2 to the provider, end to end: the real binary in front of the fake upstream serving
//! TLS + HTTP/2 with a low stream limit, a GOAWAY in the middle of traffic, and a refused
//! stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::disallowed_methods,
    reason = "tests: a failed step should fail the test at once; they may block and spawn freely"
)]

use crate::common;

use std::time::Duration;

use common::*;
use subrelay_mock::{Behavior, MockTls, TestCa};

/// The upstream API key of the one account.
const UPSTREAM_KEY: &str = "sk-upstream";

struct Setup {
    mock: MockUpstream,
    gw: Gateway,
    _trust: tempfile::NamedTempFile,
}

/// A TLS + HTTP/2 mock announcing `max_streams` (if any), and a gateway with one API-key
/// account on it, trusting the mock's CA.
async fn setup(max_streams: Option<u32>) -> Setup {
    let ca = TestCa::new("subrelay test CA").unwrap();
    let tls = MockTls {
        max_concurrent_streams: max_streams,
        ..MockTls::new(&ca.leaf(&["localhost"]).unwrap())
    };
    let mock = MockUpstream::start_tls(tls).await.unwrap();
    let trust = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(trust.path(), &ca.cert_pem).unwrap();
    let config = format!(
        "upstream:\n  ca_file: {}\n{}",
        trust.path().display(),
        config(&mock, &[apikey("api", UPSTREAM_KEY)], "")
    );
    Setup {
        gw: Gateway::start(&config),
        mock,
        _trust: trust,
    }
}

fn delayed(delay: Duration) -> Behavior {
    Behavior {
        delay_headers: delay,
        ..Behavior::default()
    }
}

/// Waits (up to 10 s) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// With the server allowing 2 streams per connection, 5 requests at once are all at the
/// upstream together (none waits for another's stream) over 3 connections, and all succeed.
#[tokio::test]
async fn a_full_connection_is_not_a_queue_another_is_opened() {
    let Setup { mock, gw, .. } = setup(Some(2)).await;
    // Each answer is held until all five arrived: a queued request would never arrive, and the
    // wait below would time out.
    mock.script(UPSTREAM_KEY, vec![delayed(Duration::from_secs(3)); 5]);
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let url = gw.responses_url();
            tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&body("gpt-5", true))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    until("five requests at the upstream at once", || {
        mock.calls(UPSTREAM_KEY) == 5
    })
    .await;
    assert_eq!(
        mock.completed(),
        0,
        "all five arrived while none was answered"
    );
    for request in requests {
        let answer = request.await.unwrap();
        assert_eq!(answer.status(), 200);
        let text = answer.text().await.unwrap();
        assert_eq!(
            event_types(&text).last().map(String::as_str),
            Some("response.completed")
        );
    }
    let connections = mock.connections();
    assert_eq!(connections.len(), 3, "2 + 2 + 1 streams: {connections:?}");
    assert!(connections.iter().all(|c| c.alpn.as_deref() == Some("h2")));
}

/// Control for the test above: without a low limit, the same five share one connection.
#[tokio::test]
async fn streams_share_one_connection_under_the_limit() {
    let Setup { mock, gw, .. } = setup(None).await;
    mock.script(UPSTREAM_KEY, vec![delayed(Duration::from_millis(200)); 5]);
    let requests: Vec<_> = (0..5)
        .map(|_| {
            let url = gw.responses_url();
            tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&body("gpt-5", true))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(mock.connections().len(), 1, "{:?}", mock.connections());
}

/// A GOAWAY while two streams are in flight: both finish normally, and the next request goes
/// to a new connection.
#[tokio::test]
async fn after_a_goaway_streams_in_flight_finish_and_new_ones_use_a_new_connection() {
    let Setup { mock, gw, .. } = setup(None).await;
    mock.script(UPSTREAM_KEY, vec![delayed(Duration::from_millis(500)); 2]);
    let in_flight: Vec<_> = (0..2)
        .map(|_| {
            let url = gw.responses_url();
            tokio::spawn(async move {
                let answer = client()
                    .post(url)
                    .bearer_auth(KEY)
                    .json(&body("gpt-5", true))
                    .send()
                    .await
                    .unwrap();
                (answer.status(), answer.text().await.unwrap())
            })
        })
        .collect();
    until("two streams in flight", || mock.calls(UPSTREAM_KEY) == 2).await;
    mock.goaway();
    for request in in_flight {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(
            event_types(&text).last().map(String::as_str),
            Some("response.completed"),
            "the stream in flight finished: {text}"
        );
    }
    assert_eq!(mock.connections().len(), 1);
    let answer = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("response.completed"));
    assert_eq!(
        mock.connections().len(),
        2,
        "the new request went to a new connection"
    );
}

/// A stream refused before any answer (RST_STREAM REFUSED_STREAM) is sent again on another
/// connection; the client sees a normal answer and the account stays healthy.
#[tokio::test]
async fn a_refused_stream_is_sent_again_on_a_new_connection() {
    let Setup { mock, gw, .. } = setup(None).await;
    mock.script(
        UPSTREAM_KEY,
        vec![Behavior {
            refuse_stream: true,
            ..Behavior::default()
        }],
    );
    let answer = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_eq!(
        event_types(&text).last().map(String::as_str),
        Some("response.completed")
    );
    assert_eq!(mock.calls(UPSTREAM_KEY), 2, "refused once, then answered");
    assert_eq!(mock.connections().len(), 2, "{:?}", mock.connections());
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["success"], true, "{records:?}");
}
