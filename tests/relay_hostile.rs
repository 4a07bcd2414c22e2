//! Hostile upstreams (issue 13, items 4, 6, 7 and the credential echo of 11): the mock's hostile
//! modes against the real binary. Each limit is shown to act (failover, an in-protocol end, a
//! usage row and a free slot) and, where absence is the claim, beside a control where it does not.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::Value;

const MIB: usize = 1024 * 1024;

fn huge_line(bytes: usize, at: Option<usize>) -> Behavior {
    Behavior {
        huge_line: Some(bytes),
        hostile_at: at,
        ..Default::default()
    }
}

/// Two accounts, `a` first; `gateway.max_event_bytes` = 1 MiB.
async fn two_accounts(extra: &str) -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        &format!("  max_event_bytes: 1048576\n{extra}"),
    ));
    (mock, gw)
}

#[tokio::test]
async fn an_sse_line_over_max_event_bytes_before_output_fails_over() {
    let (mock, gw) = two_accounts("").await;

    // Control: a 512 KiB line is under the cap and goes through from the first account.
    mock.script("tok-a", vec![huge_line(MIB / 2, None)]);
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains(&"x".repeat(MIB / 2)), "the line went through");
    assert_eq!(
        event_types(&text).last().map(String::as_str),
        Some("response.completed")
    );
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 0));

    // Over the cap, before any output: the second account answers, the client never sees it.
    mock.reset();
    mock.script("tok-a", vec![huge_line(2 * MIB, None)]);
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("xxxxxxxx"),
        "none of the line reached the client"
    );
    let types = event_types(&text);
    assert_eq!(types.iter().filter(|t| *t == "response.created").count(), 1);
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    let records = gw.wait_for_usage(2).await;
    let attempts = records[1]["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["outcome"], "bad_upstream_answer");
    assert_eq!(attempts[1]["outcome"], "ok");
    gw.wait_for_log("exceeds gateway.max_event_bytes").await;
}

#[tokio::test]
async fn an_sse_line_over_max_event_bytes_after_output_ends_the_stream_in_protocol() {
    let (mock, gw) = two_accounts("").await;
    // After response.created, in_progress and output_item.added (the first output).
    mock.script("tok-a", vec![huge_line(4 * MIB, Some(3))]);
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.failed"
        ],
        "{text}"
    );
    assert!(!text.contains("xxxxxxxx"), "no half event went out");
    let failed = text
        .split("\n\n")
        .find(|e| e.contains("event: response.failed"))
        .unwrap();
    let data: Value = serde_json::from_str(
        failed
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .unwrap(),
    )
    .unwrap();
    let message = data["response"]["error"]["message"].as_str().unwrap();
    assert!(message.contains("gateway.max_event_bytes"), "{message}");
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 0));
}

#[tokio::test]
async fn a_preamble_over_max_event_bytes_fails_over() {
    let (mock, gw) = two_accounts("").await;
    // Control: 256 KiB of preamble is held back and then sent.
    mock.script(
        "tok-a",
        vec![Behavior {
            preamble_bytes: Some(MIB / 4),
            ..Default::default()
        }],
    );
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    let text = response.text().await.unwrap();
    assert!(
        event_types(&text)
            .iter()
            .filter(|t| *t == "response.created")
            .count()
            > 100
    );
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 0));

    mock.reset();
    mock.script(
        "tok-a",
        vec![Behavior {
            preamble_bytes: Some(3 * MIB),
            ..Default::default()
        }],
    );
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_one_clean_responses_stream(&text);
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));
    gw.wait_for_log("preamble (events before any output) exceeds gateway.max_event_bytes")
        .await;
}

/// One account with one slot and no queue, reading an endless stream for a client that leaves.
async fn orphaned_endless_stream(extra: &str) -> (MockUpstream, Gateway) {
    let mock = MockUpstream::start().await;
    let yaml = config(
        &mock,
        &[apikey("a", "tok-a")],
        &format!("  queue_wait_timeout: 0\n{extra}"),
    )
    .replace("    priority: 0\n", "    priority: 0\n    concurrency: 1\n");
    let gw = Gateway::start(&yaml);
    mock.script(
        "tok-a",
        vec![Behavior {
            endless: true,
            event_interval: std::time::Duration::from_millis(2),
            ..Default::default()
        }],
    );
    let mut response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let mut seen = 0;
    while seen < 2000 {
        seen += response.chunk().await.unwrap().unwrap().len();
    }
    drop(response);
    (mock, gw)
}

#[tokio::test]
async fn an_orphaned_endless_stream_is_read_up_to_orphan_read_max_bytes() {
    let (_mock, gw) = orphaned_endless_stream("  orphan_read_max_bytes: 65536\n").await;
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["client_disconnected"], true);
    assert_eq!(records[0]["attempts"][0]["outcome"], "orphan_read_limit");
    gw.wait_for_log("orphan_read_max_bytes").await;
    // The slot is free again: the one-slot account serves the next request at once.
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn an_orphaned_endless_stream_is_read_up_to_orphan_read_timeout() {
    let (_mock, gw) = orphaned_endless_stream("  orphan_read_timeout: 1\n").await;
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["attempts"][0]["outcome"], "orphan_read_limit");
    gw.wait_for_log("orphan_read_timeout").await;
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
}

/// Control for the two above: within the bounds the orphan is still read, holding the slot.
#[tokio::test]
async fn within_the_orphan_bounds_the_slot_stays_taken() {
    let (_mock, gw) = orphaned_endless_stream("").await;
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 429);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "pool_busy");
    // The only row so far is the refused request's: the orphan is still being read.
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["status"], 429, "{records:#?}");
}

/// An orphan still being read is given up at shutdown, and its row is written.
#[tokio::test]
async fn shutdown_records_an_orphaned_stream() {
    let (_mock, mut gw) = orphaned_endless_stream("").await;
    gw.wait_for_log("the client went away").await;
    gw.sigterm();
    let status = gw.wait_exit();
    assert!(status.success(), "{status:?}");
    let records = gw.usage_records();
    let orphan: Vec<_> = records
        .iter()
        .filter(|r| r["attempts"][0]["outcome"] == "orphan_read_limit")
        .collect();
    assert_eq!(orphan.len(), 1, "{records:#?}");
}

#[tokio::test]
async fn upstream_1xx_and_3xx_fail_over() {
    for code in [101, 302, 307] {
        let mock = MockUpstream::start().await;
        mock.script(
            "tok-a",
            vec![Behavior {
                status: Some(code),
                ..Default::default()
            }],
        );
        let gw = Gateway::start(&config(
            &mock,
            &[apikey("a", "tok-a"), apikey("b", "tok-b")],
            "",
        ));
        let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
        assert_eq!(response.status(), 200, "status {code}");
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["object"], "response", "status {code}");
        assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1), "{code}");
        let records = gw.wait_for_usage(1).await;
        assert_eq!(records[0]["attempts"][0]["status"], code);
        assert_eq!(records[0]["attempts"][0]["outcome"], "transport_error");
    }
}

#[tokio::test]
async fn an_upstream_4xx_that_is_not_json_is_wrapped_in_the_error_shape() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    // Control: a JSON 400 is passed through as it came.
    mock.script(
        "tok-a",
        vec![
            Behavior {
                status: Some(400),
                ..Default::default()
            },
            Behavior {
                status: Some(400),
                text_error: true,
                ..Default::default()
            },
        ],
    );
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("subrelay-mock"),
        "{v}"
    );

    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = response.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).expect("a JSON body");
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["code"], "upstream_status_400", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("status 400"), "{message}");
    assert!(
        message.contains("<html>"),
        "the page's start is quoted: {message}"
    );
}

#[tokio::test]
async fn the_mock_echoes_the_credential_when_asked() {
    let mock = MockUpstream::start().await;
    let response = client()
        .post(format!("{}/v1/responses", mock.url()))
        .bearer_auth("sk-upstream-secret-a")
        .json(&body("gpt-5+status=400+echo_auth", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("Bearer sk-upstream-secret-a"), "{text}");
}

#[tokio::test]
async fn a_credential_echoed_in_an_upstream_error_reaches_neither_client_nor_log() {
    let mock = MockUpstream::start().await;
    let echo = |code| Behavior {
        status: Some(code),
        echo_credential: true,
        ..Default::default()
    };
    mock.script("sk-upstream-secret-a", vec![echo(401)]);
    mock.script("sk-upstream-secret-b", vec![echo(400)]);
    let gw = Gateway::start(&config(
        &mock,
        &[
            apikey("a", "sk-upstream-secret-a"),
            apikey("b", "sk-upstream-secret-b"),
        ],
        "",
    ));
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(!text.contains("sk-upstream-secret"), "{text}");
    assert!(text.contains("Bearer [redacted]"), "{text}");
    assert_eq!(
        (
            mock.calls("sk-upstream-secret-a"),
            mock.calls("sk-upstream-secret-b")
        ),
        (1, 1)
    );
    gw.wait_for_usage(1).await;
    let line = gw.wait_for_log("upstream answered 401").await;
    assert!(line.contains("[redacted]"), "{line}");
    let logs = gw.logs().join("\n");
    assert!(!logs.contains("sk-upstream-secret"), "{logs}");
}
