//! Keepalive behind a real nginx (default buffering, short `proxy_read_timeout`): long waits
//! survive, failover goes on after the first blank line, and the official SDK parses the result.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::nginx::Nginx;
use common::*;
use serde_json::Value;

/// nginx gives up on a silent upstream after this long. It must exceed the 5 s keepalive
/// interval with some margin: with 5 s on both sides nginx's timer (started when it sent the
/// request) fires a few milliseconds before the first keepalive (started just before subrelay
/// sends upstream) and the tests fail — seen here. A keepalive interval must be below the
/// proxy's timeout, which is also what the README advises.
const PROXY_READ_TIMEOUT: u64 = 7;

fn delayed(secs: u64) -> Behavior {
    Behavior {
        delay_headers: Duration::from_secs(secs),
        ..Default::default()
    }
}

fn delayed_status(secs: u64, status: u16) -> Behavior {
    Behavior {
        status: Some(status),
        ..delayed(secs)
    }
}

async fn compact_through(nginx: &Nginx) -> reqwest::Response {
    client()
        .post(format!("{}/v1/responses/compact", nginx.url))
        .bearer_auth(KEY)
        .json(&body("gpt-5.1-codex", false))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_without_keepalive_nginx_cuts_the_wait_with_504() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![delayed(12)]);
    let gw = Gateway::start(&config(&mock, &[oauth("a", "tok-a")], ""));
    let Some(nginx) = Nginx::start(&gw.url, PROXY_READ_TIMEOUT) else {
        return;
    };
    let response = compact_through(&nginx).await;
    assert_eq!(
        response.status(),
        504,
        "this is the failure the keepalive prevents"
    );
}

#[tokio::test]
async fn b_with_keepalive_the_client_gets_blank_lines_then_the_json_and_the_sdk_parses_it() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![delayed(12), delayed(12)]);
    let gw = Gateway::start(&config(
        &mock,
        &[oauth("a", "tok-a")],
        "  openai_compact_nonstream_keepalive_interval: 5\n",
    ));
    let Some(nginx) = Nginx::start(&gw.url, PROXY_READ_TIMEOUT) else {
        return;
    };
    let base = format!("{}/v1", nginx.url);
    let raw = async {
        let response = compact_through(&nginx).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        response.text().await.unwrap()
    };
    let args = [base.as_str(), KEY, "gpt-5.1-codex"];
    let sdk = run_python("openai", "sdk_compact.py", &args);
    let (text, sdk) = tokio::join!(raw, sdk);
    assert!(
        text.starts_with("\n\n"),
        "keepalive blank lines first: {text:?}"
    );
    let json = text.trim_start();
    assert!(text[..text.len() - json.len()].chars().all(|c| c == '\n'));
    let v: Value = serde_json::from_str(json).unwrap();
    assert!(v["output"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["type"] == "compaction"));
    // One upstream call per client that ran: when the SDK half was skipped (no `openai` package
    // off CI), only the raw request's.
    let clients = if sdk.is_some() { 2 } else { 1 };
    assert_eq!(mock.calls("tok-a"), clients);
}

#[tokio::test]
async fn c_a_429_after_commit_still_fails_over_invisibly() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![delayed_status(8, 429)]);
    mock.script("tok-b", vec![delayed(4)]);
    let gw = Gateway::start(&config(
        &mock,
        &[oauth("a", "tok-a"), oauth("b", "tok-b")],
        "  openai_compact_nonstream_keepalive_interval: 5\n",
    ));
    let Some(nginx) = Nginx::start(&gw.url, PROXY_READ_TIMEOUT) else {
        return;
    };
    let response = compact_through(&nginx).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with('\n'), "{text:?}");
    let v: Value = serde_json::from_str(text.trim_start()).unwrap();
    assert!(v["output"].is_array(), "{v}");
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["account"], "b");
    assert_eq!(records[0]["success"], true);
}

#[tokio::test]
async fn d_every_account_failing_after_commit_gives_an_error_json_after_the_blank_lines() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![delayed_status(8, 429)]);
    mock.script("tok-b", vec![delayed_status(4, 500)]);
    let gw = Gateway::start(&config(
        &mock,
        &[oauth("a", "tok-a"), oauth("b", "tok-b")],
        "  openai_compact_nonstream_keepalive_interval: 5\n",
    ));
    let Some(nginx) = Nginx::start(&gw.url, PROXY_READ_TIMEOUT) else {
        return;
    };
    let response = compact_through(&nginx).await;
    assert_eq!(
        response.status(),
        200,
        "the status was committed with the first blank line"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(text.starts_with('\n'), "{text:?}");
    let v: Value = serde_json::from_str(text.trim_start()).unwrap();
    assert_eq!(v["error"]["code"], "upstream_status_500", "{v}");
    assert!(v["error"]["message"].is_string());
    let warning = gw.wait_for_log("compact_keepalive_committed").await;
    assert!(warning.contains(&request_id), "{warning}");
    assert!(
        warning.contains("\\\"a\\\", Some(429)") && warning.contains("\\\"b\\\", Some(500)"),
        "{warning}"
    );
}

#[tokio::test]
async fn e_a_stream_whose_upstream_answers_late_gets_comments_then_the_whole_stream() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![delayed(12)]);
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a")],
        "  stream_keepalive_interval: 5\n",
    ));
    let Some(nginx) = Nginx::start(&gw.url, PROXY_READ_TIMEOUT) else {
        return;
    };
    let response = client()
        .post(format!("{}/v1/responses", nginx.url))
        .bearer_auth(KEY)
        .json(&body("gpt-5", true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.starts_with(": keepalive\n\n"), "{text:?}");
    let types = event_types(&text);
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
}
