//! The Anthropic Messages API: auth and version header rules, the JSON message, the stream's
//! event order and usage, the in-stream error, scripted errors, thinking signatures and
//! `count_tokens`.

mod support;

use serde_json::{json, Value};
use subrelay_mock::{Behavior, MockUpstream, Usage, DEFAULT_TEXT};
use support::*;

/// Request headers, as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

#[tokio::test]
async fn auth_and_version_rules_are_the_real_api_ones() {
    let mock = MockUpstream::start().await;
    // A scripted step survives refused requests.
    mock.script(
        "oauth-tok",
        vec![Behavior {
            status: Some(529),
            ..Behavior::default()
        }],
    );
    let body = messages_body("claude-sonnet-4-5", false);
    let url = mock.url();
    let version = ("anthropic-version", "2023-06-01");
    let bearer = ("authorization", "Bearer oauth-tok");

    let cases: [(Headers<'_>, u16, &str); 4] = [
        (&[version], 401, "x-api-key header is required"),
        (
            &[bearer, version],
            401,
            "OAuth authentication is currently not supported.",
        ),
        (
            &[
                bearer,
                version,
                ("anthropic-beta", "prompt-caching-2024-07-31"),
            ],
            401,
            "OAuth authentication is currently not supported.",
        ),
        (
            &[bearer, ("anthropic-beta", "oauth-2025-04-20")],
            400,
            "anthropic-version: header is required",
        ),
    ];
    for (headers, status, message) in cases {
        let response = post_with(&url, MESSAGES, headers, &body).await;
        assert_eq!(response.status(), status, "{headers:?}");
        let error = json_of(response).await;
        let kind = if status == 401 {
            "authentication_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(
            error,
            json!({"type": "error", "error": {"type": kind, "message": message}})
        );
    }
    assert_eq!(mock.calls("oauth-tok"), 3, "refused requests are counted");

    let beta = (
        "anthropic-beta",
        "prompt-caching-2024-07-31, oauth-2025-04-20",
    );
    let accepted = post_with(&url, MESSAGES, &[bearer, version, beta], &body).await;
    assert_eq!(accepted.status(), 529, "the scripted step was still queued");
    assert_eq!(json_of(accepted).await["error"]["type"], "overloaded_error");
    let ok = post_with(&url, MESSAGES, &[bearer, version, beta], &body).await;
    assert_eq!(ok.status(), 200);
    let ok = post_with(&url, MESSAGES, &anthropic_key("sk-ant-k"), &body).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn json_message_carries_the_usage_and_the_query_is_recorded() {
    let mock = MockUpstream::start().await;
    mock.script(
        "k",
        vec![Behavior {
            usage: Some(Usage {
                input: 100,
                cached: 40,
                cache_creation: 25,
                output: 9,
                ..Usage::default()
            }),
            ..Behavior::default()
        }],
    );
    let body = messages_body("claude-opus-4+events=2", false);
    let response = post_with(
        &mock.url(),
        "/v1/messages?beta=true",
        &anthropic_key("k"),
        &body,
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let message = json_of(response).await;
    assert!(message["id"].as_str().unwrap().starts_with("msg_"));
    let id = message["id"].clone();
    assert_eq!(
        message,
        json!({
            "id": id,
            "type": "message",
            "role": "assistant",
            "model": "claude-opus-4",
            "content": [{"type": "text", "text": DEFAULT_TEXT}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": 100,
                "cache_creation_input_tokens": 25,
                "cache_read_input_tokens": 40,
                "output_tokens": 9,
            },
        })
    );
    assert_eq!(mock.requests()[0].path, "/v1/messages?beta=true");
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn stream_has_the_event_order_and_usage() {
    let mock = MockUpstream::start().await;
    let body = messages_body("claude-sonnet-4-5+events=4", true);
    let response = post_with(&mock.url(), MESSAGES, &anthropic_key("k"), &body).await;
    let events = read_sse(response).await;
    assert_eq!(names(&events), anthropic_order(4));

    let start = &events[0].data["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["content"], json!([]));
    assert_eq!(start["stop_reason"], Value::Null);
    assert_eq!(
        start["usage"],
        json!({
            "input_tokens": 11,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 3,
            "output_tokens": 1,
        })
    );
    assert_eq!(
        events[2].data["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events[3..7]
        .iter()
        .map(|e| {
            assert_eq!(e.data["index"], 0);
            assert_eq!(e.data["delta"]["type"], "text_delta");
            e.data["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, DEFAULT_TEXT);
    assert_eq!(events[7].data["index"], 0);
    assert_eq!(
        events[8].data,
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 7},
        })
    );
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn failures_are_anthropic_shaped() {
    let mock = MockUpstream::start().await;
    let url = mock.url();
    let key = anthropic_key("k");

    let events =
        read_sse(post_with(&url, MESSAGES, &key, &messages_body("m+fail", true)).await).await;
    assert_eq!(names(&events), ["message_start", "ping", "error"]);
    assert_eq!(
        events[2].data,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let response = post_with(&url, MESSAGES, &key, &messages_body("m+fail", false)).await;
    assert_eq!(response.status(), 500);
    assert_eq!(json_of(response).await["error"]["type"], "api_error");

    for (status, kind) in [
        (429, "rate_limit_error"),
        (529, "overloaded_error"),
        (503, "api_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (400, "invalid_request_error"),
    ] {
        let model = format!("m+status={status}+retry_after=3");
        let response = post_with(&url, MESSAGES, &key, &messages_body(&model, true)).await;
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["retry-after"], "3");
        let error = json_of(response).await;
        assert_eq!(error["type"], "error");
        assert_eq!(error["error"]["type"], kind, "{status}");
        assert!(error["error"]["message"].is_string());
    }

    // A cut stream stops before message_stop and breaks the body.
    let response = post_with(&url, MESSAGES, &key, &messages_body("m+cut=99", true)).await;
    assert!(response.text().await.is_err());
    let bad_option = post_with(&url, MESSAGES, &key, &messages_body("m+sloww", false)).await;
    assert_eq!(bad_option.status(), 400);
    assert_eq!(
        json_of(bad_option).await["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn thinking_blocks_are_signed_for_the_credential_and_checked() {
    let mock = MockUpstream::start().await;
    let url = mock.url();
    let mut body = messages_body("claude-sonnet-4-5", true);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 1024});

    let events = read_sse(post_with(&url, MESSAGES, &anthropic_key("acct-a"), &body).await).await;
    let mut order = vec![
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
    ];
    order.extend(&anthropic_order(3)[2..]);
    assert_eq!(names(&events), order);
    assert_eq!(
        events[2].data["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(events[3].data["delta"]["type"], "thinking_delta");
    assert_eq!(
        events[4].data["delta"],
        json!({"type": "signature_delta", "signature": "sig:acct-a"})
    );
    assert_eq!(events[6].data["index"], 1, "the text block comes second");

    body["stream"] = json!(false);
    let message = json_of(post_with(&url, MESSAGES, &anthropic_key("acct-a"), &body).await).await;
    let thinking = message["content"][0].clone();
    assert_eq!(thinking["type"], "thinking");
    assert_eq!(thinking["signature"], "sig:acct-a");
    assert_eq!(message["content"][1]["type"], "text");

    // The conversation goes on: accepted on the same credential, refused on another.
    let mut next = body.clone();
    next["messages"] = json!([
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [thinking, {"type": "text", "text": "hello"}]},
        {"role": "user", "content": "more"},
    ]);
    let same = post_with(&url, MESSAGES, &anthropic_key("acct-a"), &next).await;
    assert_eq!(same.status(), 200);
    let bearer = [
        ("authorization", "Bearer acct-b"),
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "oauth-2025-04-20"),
    ];
    let moved = post_with(&url, MESSAGES, &bearer, &next).await;
    assert_eq!(moved.status(), 400);
    assert_eq!(
        json_of(moved).await,
        json!({"type": "error", "error": {
            "type": "invalid_request_error",
            "message": "messages.1.content.0: Invalid `signature` in `thinking` block",
        }})
    );
}

#[tokio::test]
async fn count_tokens_answers_the_input_tokens() {
    let mock = MockUpstream::start().await;
    let body =
        json!({"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]});
    let response = post_with(&mock.url(), COUNT_TOKENS, &anthropic_key("k"), &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await, json!({"input_tokens": 11}));
    let response = post_with(&mock.url(), COUNT_TOKENS, &[("x-api-key", "k")], &body).await;
    assert_eq!(
        response.status(),
        400,
        "the version header is required here too"
    );
    assert_eq!(mock.calls("k"), 2);
}
