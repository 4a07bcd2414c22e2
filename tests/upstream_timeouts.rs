//! `gateway.connect_timeout` and `gateway.first_token_timeout` end to end: a connect black hole
//! (on 127.0.0.1 only) and upstream streams that hold back their first output fail over to the
//! next account, each recorded with its own outcome.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A listening socket on 127.0.0.1 that never accepts, its accept queue filled: a new connect
/// to it gets no SYN-ACK (the kernel drops the SYN) and hangs like one to a dead host. Dropping
/// it closes everything.
struct BlackHole {
    addr: SocketAddr,
    _listener: tokio::net::TcpListener,
    _filling: Vec<TcpStream>,
}

impl BlackHole {
    fn open() -> BlackHole {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        // Connect until one gets no answer: the queue is full from then on. A backlog of 1
        // holds two; the bound keeps a kernel that never fills the queue from looping forever.
        let mut filling = Vec::new();
        for _ in 0..64 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => filling.push(stream),
                Err(_) => {
                    return BlackHole {
                        addr,
                        _listener: listener,
                        _filling: filling,
                    }
                }
            }
        }
        panic!("the accept queue of a listen(1) socket never filled");
    }
}

#[tokio::test]
async fn a_connect_black_hole_fails_over_after_connect_timeout() {
    let hole = BlackHole::open();
    let mock = MockUpstream::start().await;
    // If connect_timeout were not applied (10 s by default), the 3 s header timeout would end
    // the attempt first and record `header_timeout`, not `connect_error`.
    let first_attempt = |connect_timeout: u64| {
        let gw = Gateway::start(&format!(
            "gateway:\n  connect_timeout: {connect_timeout}\n  response_header_timeout: 3\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n  - {{name: dead, platform: openai, type: apikey, api_key: tok-dead, base_url: 'http://{}/v1', priority: 0}}\n  - {{name: live, platform: openai, type: apikey, api_key: tok-live, base_url: '{}/v1', priority: 1}}\n",
            hole.addr,
            mock.url()
        ));
        async move {
            let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
            assert_eq!(response.status(), 200);
            let records = gw.wait_for_usage(1).await;
            let outcomes = outcomes(&records[0]);
            assert_eq!(outcomes[1], ("live".to_owned(), "ok".to_owned()));
            outcomes[0].clone()
        }
    };
    assert_eq!(
        first_attempt(1).await,
        ("dead".to_owned(), "connect_error".to_owned())
    );
    // Control: the hole really holds a connect (it is not refused at once): with a connect
    // timeout past the header timeout, the header timeout ends the attempt.
    assert_eq!(
        first_attempt(5).await,
        ("dead".to_owned(), "header_timeout".to_owned())
    );
    assert_eq!(mock.calls("tok-live"), 2);
}

#[tokio::test]
async fn a_stream_without_output_by_first_token_timeout_fails_over_before_output() {
    let mock = MockUpstream::start().await;
    // slow: headers only after 4 s; mute: `response.created`, `response.in_progress`, then
    // nothing. Both are given up 1 s after the send; the header timeout (600 s) and the stall
    // timeout (30 s) would come much later.
    mock.script(
        "tok-slow",
        vec![Behavior {
            delay_headers: Duration::from_secs(4),
            ..Default::default()
        }],
    );
    mock.script(
        "tok-mute",
        vec![Behavior {
            hang_after: Some(2),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[
            apikey("slow", "tok-slow"),
            apikey("mute", "tok-mute"),
            apikey("live", "tok-live"),
        ],
        "  first_token_timeout: 1\n  stream_data_interval_timeout: 30\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_one_clean_responses_stream(&text);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [
            ("slow".to_owned(), "first_token_timeout".to_owned()),
            ("mute".to_owned(), "first_token_timeout".to_owned()),
            ("live".to_owned(), "ok".to_owned())
        ],
        "{records:?}"
    );
}

#[tokio::test]
async fn first_token_timeout_leaves_json_requests_alone() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-slow",
        vec![Behavior {
            delay_headers: Duration::from_secs(2),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("slow", "tok-slow"), apikey("live", "tok-live")],
        "  first_token_timeout: 1\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        (mock.calls("tok-slow"), mock.calls("tok-live")),
        (1, 0),
        "a client that asked for JSON waits for the headers as response_header_timeout allows"
    );
}

#[tokio::test]
async fn every_account_without_output_in_time_is_a_504_saying_so() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-mute",
        vec![Behavior {
            hang_after: Some(2),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("mute", "tok-mute")],
        "  first_token_timeout: 1\n  stream_keepalive_interval: 0\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 504);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "first_token_timeout", "{v}");
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");
}
