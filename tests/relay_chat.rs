//! The Chat Completions relay end to end: chunks to `[DONE]`, the usage chunk subrelay asks for
//! and hides, JSON answers, failover, and pools that cannot serve Chat.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::{json, Value};

fn chat(stream: bool) -> Value {
    json!({
        "model": "deepseek-chat",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

/// `data:` payloads of a Chat stream, in order.
fn data_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_stream_gets_usage_recorded_without_seeing_the_usage_chunk() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("compat", "tok-compat")], ""));
    let response = post(&gw, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = data_lines(&text);
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"), "{text}");
    assert!(lines.len() > 3);
    assert!(
        !text.contains("\"usage\":{"),
        "the client did not ask for the usage chunk: {text}"
    );
    let sent: Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
    assert_eq!(
        sent["stream_options"]["include_usage"], true,
        "asked upstream"
    );
    assert_eq!(mock.requests()[0].path, "/v1/chat/completions");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["endpoint"], "chat_completions");
    assert_eq!(records[0]["tokens"]["input"], 11);
    assert_eq!(records[0]["tokens"]["output"], 7);
    assert_eq!(records[0]["success"], true);
}

#[tokio::test]
async fn a_client_that_asked_for_usage_gets_the_chunk_and_json_passes_through() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("compat", "tok-compat")], ""));
    let mut request = chat(true);
    request["stream_options"] = json!({"include_usage": true});
    let text = post(&gw, "/chat/completions", &request)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("\"usage\":{"), "{text}");
    assert_eq!(
        mock.requests()[0].body,
        serde_json::to_vec(&request).unwrap(),
        "untouched"
    );

    let response = post(&gw, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["usage"]["completion_tokens"], 7);
}

#[tokio::test]
async fn chat_fails_over_and_signin_accounts_are_never_used_for_it() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(429),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[
            oauth("codex", "tok-codex"),
            apikey("a", "tok-a"),
            apikey("b", "tok-b"),
        ],
        "",
    ));
    assert_eq!(
        post(&gw, "/v1/chat/completions", &chat(false))
            .await
            .status(),
        200
    );
    assert_eq!(
        (
            mock.calls("tok-codex"),
            mock.calls("tok-a"),
            mock.calls("tok-b")
        ),
        (0, 1, 1)
    );

    let only_codex = Gateway::start(&config(&mock, &[oauth("codex", "tok-codex")], ""));
    let response = post(&only_codex, "/v1/chat/completions", &chat(false)).await;
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "no_chat_account");
    assert!(v["error"]["message"].as_str().unwrap().contains("apikey"));
}

#[tokio::test]
async fn the_official_openai_sdk_chat_works_through_subrelay() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("compat", "tok-compat")], ""));
    let base = format!("{}/v1", gw.url);
    run_python("openai", "sdk_chat.py", &[&base, KEY]).await;
}

#[tokio::test]
async fn a_chat_stream_that_breaks_after_output_ends_with_its_error_chunk() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-compat",
        vec![Behavior {
            events: Some(6),
            cut_after: Some(3),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&config(
        &mock,
        &[apikey("compat", "tok-compat"), apikey("spare", "tok-spare")],
        "",
    ));
    let response = post(&gw, "/v1/chat/completions", &chat(true)).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let lines = data_lines(&text);
    let (last, before) = lines.split_last().unwrap();
    assert!(
        before.iter().any(|l| l.contains("\"content\"")),
        "output went out first: {text}"
    );
    assert!(!lines.iter().any(|l| l == "[DONE]"), "{text}");
    let error: Value = serde_json::from_str(last).unwrap();
    assert_eq!(error["error"]["type"], "upstream_error", "{text}");
    assert!(error["error"]["code"].is_string(), "{text}");
    assert!(error["error"]["message"].is_string(), "{text}");
    // Output had started: no second account.
    assert_eq!(mock.calls("tok-spare"), 0);
}
