//! Failover: every trigger moves the request to the next account, exhaustion answers with the
//! mapped last failure, and a request's own errors are not retried.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests-0123";

fn status(code: u16) -> Behavior {
    Behavior {
        status: Some(code),
        ..Default::default()
    }
}

async fn first_fails_second_answers(
    first: Behavior,
    stream: bool,
) -> (MockUpstream, Gateway, reqwest::Response) {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![first]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "  response_header_timeout: 2\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", stream)).await;
    (mock, gw, response)
}

#[tokio::test]
async fn each_failing_status_moves_to_the_next_account() {
    for code in [401, 402, 403, 429, 500, 502, 503, 529] {
        let (mock, gw, response) = first_fails_second_answers(status(code), false).await;
        assert_eq!(response.status(), 200, "status {code}");
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["object"], "response", "status {code}");
        assert_eq!(
            (mock.calls("tok-a"), mock.calls("tok-b")),
            (1, 1),
            "status {code}"
        );
        let records = gw.wait_for_usage(1).await;
        let attempts = records[0]["attempts"].as_array().unwrap();
        assert_eq!(attempts[0]["account"], "a");
        assert_eq!(attempts[0]["status"], code);
        assert_eq!(attempts[1]["outcome"], "ok");
        assert_eq!(records[0]["account"], "b");
    }
}

#[tokio::test]
async fn response_failed_before_output_moves_to_the_next_account_and_is_not_seen() {
    let fail = Behavior {
        fail_before_output: true,
        ..Default::default()
    };
    let (mock, _gw, response) = first_fails_second_answers(fail, true).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_one_clean_responses_stream(&text);
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
}

#[tokio::test]
async fn connect_errors_move_to_the_next_account() {
    let mock = MockUpstream::start().await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let yaml = format!(
        "  max_account_switches: 3\napi_keys:\n  - key: {KEY}\naccounts:\n  - {{name: dead, platform: openai, type: apikey, api_key: x, base_url: '{dead}'}}\n  - {{name: live, platform: openai, type: apikey, api_key: tok-live, base_url: '{}/v1', priority: 1}}\n",
        mock.url()
    );
    let gw = Gateway::start(&format!("gateway:\n{yaml}"));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.calls("tok-live"), 1);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["attempts"][0]["outcome"], "connect_error");
}

#[tokio::test]
async fn a_response_header_timeout_moves_to_the_next_account() {
    let hang = Behavior {
        delay_headers: Duration::from_secs(30),
        ..Default::default()
    };
    let (mock, gw, response) = first_fails_second_answers(hang, false).await;
    assert_eq!(response.status(), 200);
    assert_eq!(mock.calls("tok-b"), 1);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["attempts"][0]["outcome"], "header_timeout");
}

#[tokio::test]
async fn a_cooled_account_is_skipped_by_the_next_request() {
    let mut limited = status(429);
    limited.headers = vec![("retry-after".into(), "600".into())];
    let (mock, gw, first) = first_fails_second_answers(limited, false).await;
    assert_eq!(first.status(), 200);
    let second = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(second.status(), 200);
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 2));
}

#[tokio::test]
async fn exhausted_429_keeps_429_and_retry_after() {
    let mock = MockUpstream::start().await;
    let mut limited = status(429);
    limited.headers = vec![("retry-after".into(), "42".into())];
    mock.script("tok-a", vec![limited.clone()]);
    mock.script("tok-b", vec![limited]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "42");
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert_eq!(v["error"]["code"], "upstream_status_429");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("all 2 accounts"));
    // Now both cool down: the next request is told when the first recovers.
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "accounts_cooling_down");
    assert_eq!(mock.total_calls(), 2);
}

#[tokio::test]
async fn exhausted_upstream_auth_failure_is_a_502_that_names_no_secret() {
    let mock = MockUpstream::start().await;
    mock.script("tok-secret-a", vec![status(401)]);
    mock.script("tok-secret-b", vec![status(403)]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-secret-a"), apikey("b", "tok-secret-b")],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 502);
    let text = response.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "upstream_error");
    assert!(!text.contains("tok-secret"), "{text}");
    assert!(!gw.logs().iter().any(|l| l.contains("tok-secret")));
}

#[tokio::test]
async fn max_account_switches_bounds_the_attempts() {
    let mock = MockUpstream::start().await;
    for t in ["t1", "t2", "t3"] {
        mock.script(t, vec![status(500)]);
    }
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "t1"), apikey("b", "t2"), apikey("c", "t3")],
        "  max_account_switches: 1\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 502);
    assert_eq!(mock.total_calls(), 2);
}

#[tokio::test]
async fn a_request_error_is_passed_through_and_not_retried() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![status(400)]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert!(v["error"]["message"].is_string());
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 0));
}

#[tokio::test]
async fn no_account_at_all_is_a_503_that_says_so() {
    let gw = Gateway::start(&format!("api_keys:\n  - key: {KEY}\n"));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 503);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_account");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no enabled account"));
}

#[tokio::test]
async fn a_stream_cut_after_output_ends_with_response_failed() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            cut_after: Some(5),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.failed"),
        "{text}"
    );
    assert!(types.iter().any(|t| t == "response.output_text.delta"));
    // Output had started: no second account.
    assert_eq!(mock.calls("tok-b"), 0);
}

#[tokio::test]
async fn a_silent_stream_after_output_ends_with_response_failed_after_the_idle_timeout() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            hang_after: Some(5),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&format!(
        "admin:\n  token: {ADMIN}\n{}",
        config(
            &mock,
            &[apikey("a", "tok-a")],
            "  stream_data_interval_timeout: 30\n  stream_keepalive_interval: 5\n",
        )
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    let text = response.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.failed"),
        "{text}"
    );
    assert!(
        text.contains(": keepalive"),
        "idle comments kept the connection alive: {text}"
    );
    assert!(text.contains("stream_stalled"), "{text}");
    // One stall is a strike, not yet a cooldown (the third in a row cools for 30 s: the pool's
    // unit tests, on paused time, since each stall here costs 30 s).
    let v: Value = client()
        .get(format!("{}/admin/api/accounts", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a = &v["accounts"][0];
    assert_eq!(a["state"], "available", "{a}");
    assert!(
        a["last_error"].as_str().unwrap().contains("sent nothing"),
        "{a}"
    );
}

#[tokio::test]
async fn every_account_timing_out_is_a_504_in_the_openai_shape() {
    let mock = MockUpstream::start().await;
    let hang = || {
        vec![Behavior {
            hang_before_headers: true,
            ..Default::default()
        }]
    };
    mock.script("tok-a", hang());
    mock.script("tok-b", hang());
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "  response_header_timeout: 1\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 504);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");
    assert_eq!(v["error"]["code"], "header_timeout", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{v}"
    );
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["status"], 504);
    for attempt in records[0]["attempts"].as_array().unwrap() {
        assert_eq!(attempt["outcome"], "header_timeout", "{records:?}");
    }
}

#[tokio::test]
async fn a_stream_whose_every_account_fails_after_a_keepalive_ends_with_response_failed() {
    let mock = MockUpstream::start().await;
    // a fails only after a keepalive went out (the stream is committed with 200); b fails too.
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(500),
            delay_headers: Duration::from_secs(6),
            ..Default::default()
        }],
    );
    mock.script("tok-b", vec![status(503)]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "  stream_keepalive_interval: 5\n",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200, "committed by the keepalive");
    let text = response.text().await.unwrap();
    assert!(text.starts_with(": keepalive\n\n"), "{text:?}");
    let types = event_types(&text);
    assert_eq!(types, ["response.failed"], "{text}");
    assert!(
        text.contains("upstream_status_503"),
        "the last failure: {text}"
    );
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["success"], false);
}
