//! The Responses relay end to end: streams, JSON, aggregation, compaction, and the header and
//! body rules per account kind, against the fake upstream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn stream_passes_through_event_by_event_with_usage() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("api", "tok-api")], ""));
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert!(response.headers().contains_key("x-request-id"));
    let text = response.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    assert!(types.iter().any(|t| t == "response.output_text.delta"));
    assert!(types.iter().any(|t| t == "response.output_item.done"));

    let records = gw.wait_for_usage(1).await;
    let r = &records[0];
    assert_eq!(r["key"], "tester");
    assert_eq!(r["account"], "api");
    assert_eq!(r["model"], "gpt-5");
    assert_eq!(r["stream"], true);
    assert_eq!(r["status"], 200);
    assert_eq!(r["success"], true);
    assert_eq!(r["tokens"]["input"], 11);
    assert_eq!(r["tokens"]["cached_input"], 3);
    assert_eq!(r["tokens"]["output"], 7);
    assert_eq!(r["tokens"]["reasoning"], 2);
    assert!(r["ttft_ms"].is_u64());
    assert_eq!(r["attempts"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn apikey_json_answer_passes_through_unchanged() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("api", "tok-api")], ""));
    let response = post(&gw, "/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["usage"]["input_tokens"], 11);
    // The upstream got the client's body byte for byte.
    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/responses");
    let sent_body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent_body, body("gpt-5", false));
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["tokens"]["output"], 7);
}

#[tokio::test]
async fn oauth_request_is_normalised_and_a_json_client_gets_the_aggregated_response() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[oauth("codex", "tok-codex")], ""));
    let raw = r#"{"model":"gpt-5.1-codex","input":"hello there","store":true,"reasoning":{"effort":"low","budget":1.50},"x_unknown":[1, 2]}"#;
    let response = client()
        .post(format!("{}/backend-api/codex/responses", gw.url))
        .header("authorization", format!("Bearer {KEY}"))
        .header("content-type", "application/json")
        .header("session_id", "sess-1")
        .header("originator", "codex_exec")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert!(!v["output"].as_array().unwrap().is_empty());
    assert_eq!(v["usage"]["output_tokens"], 7);

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/backend-api/codex/responses");
    assert_eq!(sent.credential.as_deref(), Some("tok-codex"));
    assert_eq!(sent.headers["chatgpt-account-id"], "acct-codex");
    assert_eq!(sent.headers["originator"], "codex_exec");
    // The session id is derived per API key: stable, UUID-shaped, not the client's value.
    let upstream_session = sent.headers["session_id"].to_str().unwrap();
    assert_ne!(upstream_session, "sess-1");
    assert_eq!(upstream_session.len(), 36);
    assert_eq!(sent.headers["accept"], "text/event-stream");
    let text = std::str::from_utf8(&sent.body).unwrap();
    // Untouched bytes of fields the gateway does not own.
    assert!(
        text.contains(r#""reasoning":{"effort":"low","budget":1.50}"#),
        "{text}"
    );
    assert!(text.contains(r#""x_unknown":[1, 2]"#), "{text}");
    let sent_body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent_body["store"], false);
    assert_eq!(sent_body["stream"], true);
    assert_eq!(sent_body["input"][0]["content"], "hello there");
    assert!(!sent_body["instructions"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn oauth_stream_client_gets_the_stream() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[oauth("codex", "tok-codex")], ""));
    let response = post(&gw, "/v1/responses", &body("gpt-5.1-codex", true)).await;
    assert_eq!(response.status(), 200);
    let types = event_types(&response.text().await.unwrap());
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
}

#[tokio::test]
async fn compact_goes_to_compact_without_store_and_stream_on_every_alias() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[oauth("codex", "tok-codex")], ""));
    for path in [
        "/v1/responses/compact",
        "/responses/compact",
        "/backend-api/codex/responses/compact",
    ] {
        let mut request = body("gpt-5.1-codex", false);
        request["store"] = Value::Bool(false);
        let response = post(&gw, path, &request).await;
        assert_eq!(response.status(), 200, "{path}");
        let v: Value = response.json().await.unwrap();
        let output = v["output"].as_array().unwrap();
        assert!(output.iter().any(|i| i["type"] == "compaction"), "{v}");
    }
    for sent in mock.requests() {
        assert_eq!(sent.path, "/backend-api/codex/responses/compact");
        assert_eq!(sent.headers["accept"], "application/json");
        assert!(sent.headers.contains_key("version"));
        let b: Value = serde_json::from_slice(&sent.body).unwrap();
        assert!(b.get("store").is_none() && b.get("stream").is_none(), "{b}");
    }
    let records = gw.wait_for_usage(3).await;
    assert!(records
        .iter()
        .all(|r| r["compact"] == true && r["status"] == 200));
}

#[tokio::test]
async fn client_credentials_are_never_forwarded() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("api", "tok-api")], ""));
    let response = client()
        .post(gw.responses_url())
        .header("x-api-key", KEY)
        .header("cookie", "session=abc")
        .json(&body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = &mock.requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer tok-api");
    assert!(sent.headers.get("x-api-key").is_none());
    assert!(sent.headers.get("cookie").is_none());
    assert!(!format!("{:?}", sent.headers).contains(KEY));
}
