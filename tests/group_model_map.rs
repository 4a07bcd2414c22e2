//! A group's `model_map`, `translate` and `model_fallback` (issue 16), end to end through the real
//! binary and the fake upstream: a native (untranslated) answer reports the client's model name
//! wherever its protocol carries one (JSON `model`, the streams' `response.model`,
//! `message.model` and every Chat chunk's `model`), and a configuration reload (SIGHUP) changes
//! the group settings for the next request.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::{json, Value};

/// The `data:` JSON of every SSE event, `[DONE]` left out.
fn data_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A translating group whose map sends `claude-sonnet-4-5` to `gpt-5.1-codex` (the harness's
/// `claude-*` pattern) and `team-large` to `claude-opus-4-1`, with one account per upstream API:
/// every request below is answered natively.
fn native_config(mock: &MockUpstream) -> String {
    group_config(
        mock,
        true,
        &[
            ("openai", "openai", "apikey", "sk-openai", None),
            ("claude", "anthropic", "apikey", "sk-ant", None),
        ],
    )
    .replace(
        "model_map: {'claude-*': gpt-5.1-codex}",
        "model_map: {'claude-*': gpt-5.1-codex, team-large: claude-opus-4-1}",
    )
}

async fn send(gw: &Gateway, path: &str, body: &Value) -> String {
    let answer = client()
        .post(format!("{}{path}", gw.url))
        .header("authorization", format!("Bearer {KEY}"))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{path}");
    answer.text().await.unwrap()
}

#[tokio::test]
async fn a_native_answer_reports_the_clients_model_name_where_the_group_maps_it() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&native_config(&mock));
    let chat = |stream: bool| {
        json!({"model": "claude-sonnet-4-5", "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let responses =
        |stream: bool| json!({"model": "claude-sonnet-4-5", "stream": stream, "input": "hi"});
    let messages = |stream: bool| {
        json!({"model": "team-large", "max_tokens": 64, "stream": stream,
               "messages": [{"role": "user", "content": "hi"}]})
    };

    // Chat: every chunk carries the model.
    let text = send(&gw, "/v1/chat/completions", &chat(true)).await;
    let chunks = data_of(&text);
    assert!(chunks.len() >= 3, "{text}");
    for chunk in &chunks {
        assert_eq!(chunk["model"], "claude-sonnet-4-5", "{text}");
    }
    let json: Value =
        serde_json::from_str(&send(&gw, "/v1/chat/completions", &chat(false)).await).unwrap();
    assert_eq!(json["model"], "claude-sonnet-4-5", "{json}");

    // Responses: the events that carry the response object.
    let text = send(&gw, "/v1/responses", &responses(true)).await;
    let events = data_of(&text);
    let with_response: Vec<&Value> = events
        .iter()
        .filter(|e| e["response"].is_object())
        .collect();
    assert!(
        with_response.len() >= 2,
        "created and completed at least: {text}"
    );
    for event in with_response {
        assert_eq!(event["response"]["model"], "claude-sonnet-4-5", "{text}");
    }
    let json: Value =
        serde_json::from_str(&send(&gw, "/v1/responses", &responses(false)).await).unwrap();
    assert_eq!(json["model"], "claude-sonnet-4-5", "{json}");

    // Messages: `message_start`.
    let text = send(&gw, "/v1/messages", &messages(true)).await;
    let start = data_of(&text)
        .into_iter()
        .find(|e| e["type"] == "message_start")
        .unwrap();
    assert_eq!(start["message"]["model"], "team-large", "{text}");
    let json: Value =
        serde_json::from_str(&send(&gw, "/v1/messages", &messages(false)).await).unwrap();
    assert_eq!(json["model"], "team-large", "{json}");

    // Upstream, the mapped names were asked for, and the rows are priced by them.
    let asked: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            body["model"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        asked,
        [
            "gpt-5.1-codex",
            "gpt-5.1-codex",
            "gpt-5.1-codex",
            "gpt-5.1-codex",
            "claude-opus-4-1",
            "claude-opus-4-1"
        ]
    );
    let records = gw.wait_for_usage(6).await;
    assert!(records.iter().all(|r| r["client_model"] != r["model"]));
}

/// The model the fake upstream was last asked for.
fn last_upstream_model(mock: &MockUpstream) -> String {
    let body: Value = serde_json::from_slice(&mock.requests().pop().unwrap().body).unwrap();
    body["model"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_groups_model_map_changed_by_sighup_applies_to_the_next_request() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = json!({"model": "claude-sonnet-4-5", "stream": true, "input": "hi"});
    send(&gw, "/v1/responses", &body).await;
    assert_eq!(last_upstream_model(&mock), "gpt-5.1-codex");

    gw.edit_config(|yaml| {
        yaml.replace(
            "model_map: {'claude-*': gpt-5.1-codex}",
            "model_map: {'claude-*': gpt-5.1-codex-mini}",
        )
    });
    gw.sighup();
    gw.wait_for_log("configuration reloaded").await;
    let text = send(&gw, "/v1/responses", &body).await;
    assert_eq!(last_upstream_model(&mock), "gpt-5.1-codex-mini");
    assert!(text.contains(r#""model":"claude-sonnet-4-5""#), "{text}");
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["model"], "gpt-5.1-codex-mini");
    assert_eq!(records[1]["client_model"], "claude-sonnet-4-5");
}

#[tokio::test]
async fn a_group_that_starts_translating_on_sighup_serves_the_other_apis_next() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&group_config(
        &mock,
        false,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let messages = json!({"model": "claude-sonnet-4-5", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "hi"}]});
    let refused = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", KEY)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 404, "not translating yet");

    gw.edit_config(|yaml| yaml.replace("translate: false", "translate: true"));
    gw.sighup();
    let line = gw.wait_for_log("configuration reloaded").await;
    assert!(line.contains("groups"), "{line}");
    let text = send(&gw, "/v1/messages", &messages).await;
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(mock.calls("tok-codex"), 1);
}

#[tokio::test]
async fn a_paced_native_stream_is_whole_with_the_clients_name_in_the_events_that_carry_it() {
    let mock = MockUpstream::start().await;
    // One event per write: most chunks carry no model and pass through as they came; the ones
    // that do are re-framed. The client's stream must be whole and in order either way.
    let paced = Behavior {
        events: Some(8),
        event_interval: std::time::Duration::from_millis(2),
        ..Behavior::default()
    };
    mock.script("tok-codex", vec![paced]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = json!({"model": "claude-sonnet-4-5", "stream": true, "input": "hi"});
    let text = send(&gw, "/v1/responses", &body).await;
    let events = data_of(&text);
    let types = event_types(&text);
    assert_eq!(types.first().map(String::as_str), Some("response.created"));
    assert_eq!(types.last().map(String::as_str), Some("response.completed"));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello from the subrelay mock upstream.", "{text}");
    for event in events.iter().filter(|e| e["response"].is_object()) {
        assert_eq!(event["response"]["model"], "claude-sonnet-4-5", "{text}");
    }
    assert!(!text.contains("gpt-5.1-codex"), "{text}");
}

#[tokio::test]
async fn events_cut_across_reads_reach_the_client_once_and_whole_under_a_model_map() {
    let mock = MockUpstream::start().await;
    // A 300 KiB `data:` line written in 64 KiB pieces: an event cut across many reads, right
    // after `response.created` (before output), then after output.
    // Paced, so the line's start (`data: `) comes in a read of its own: passed through as it
    // came, it must not be sent again when the event is re-framed whole.
    let cut = |at: usize| Behavior {
        huge_line: Some(300 * 1024),
        hostile_at: Some(at),
        event_interval: std::time::Duration::from_millis(2),
        ..Behavior::default()
    };
    mock.script("tok-codex", vec![cut(1), cut(4)]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = json!({"model": "claude-sonnet-4-5", "stream": true, "input": "hi"});
    let line = format!("data: {}\n\n", "x".repeat(300 * 1024));
    for _ in 0..2 {
        let text = send(&gw, "/v1/responses", &body).await;
        assert_eq!(text.matches(&line).count(), 1, "the line whole");
        assert!(!text.contains("data: data: "), "its start not twice");
        let rest = text.replacen(&line, "", 1);
        assert!(!rest.contains("xxxxxxxx"), "no piece of it twice");
        let types = event_types(&text);
        assert_eq!(types.first().map(String::as_str), Some("response.created"));
        assert_eq!(types.last().map(String::as_str), Some("response.completed"));
        assert!(!text.contains("gpt-5.1-codex"), "{rest}");
        let carrying = [
            "response.created",
            "response.in_progress",
            "response.completed",
        ];
        assert_eq!(
            text.matches(r#""model":"claude-sonnet-4-5""#).count(),
            types
                .iter()
                .filter(|t| carrying.contains(&t.as_str()))
                .count(),
            "{rest}"
        );
    }
}
