//! The Anthropic Messages relay end to end: streams, JSON, headers, failover triggers, errors in
//! Anthropic's shape, group platforms, count_tokens, and the thinking-signature retry.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-tests-0123";

/// Claude accounts (apikey unless the token starts with `oauth-`) in group `claude`, and one key
/// in it; plus an OpenAI key `sk-openai-key` in the default group.
fn claude_config(mock: &MockUpstream, accounts: &[(&str, &str)], gateway_extra: &str) -> String {
    let mut yaml = format!(
        "admin:\n  token: {ADMIN}\ngateway:\n{gateway_extra}\ngroups:\n  - {{name: claude, platform: anthropic}}\napi_keys:\n  - {{key: {KEY}, name: claude-user, group: claude}}\n  - {{key: sk-openai-key, name: openai-user}}\naccounts:\n"
    );
    for (i, (name, token)) in accounts.iter().enumerate() {
        let (kind, secret) = if token.starts_with("oauth-") {
            ("oauth", format!("access_token: {token}"))
        } else {
            ("apikey", format!("api_key: {token}"))
        };
        yaml.push_str(&format!(
            "  - name: {name}\n    platform: anthropic\n    type: {kind}\n    base_url: {}\n    {secret}\n    groups: [claude]\n    priority: {i}\n",
            mock.url()
        ));
    }
    yaml
}

fn message(stream: bool) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": stream,
        "system": "be brief",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "a mid-conversation system entry passes through"},
        ],
        "metadata": {"user_id": "user_abc_session_1"},
    })
}

async fn send(
    gw: &Gateway,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client()
        .post(format!("{}{path}", gw.url))
        .header("x-api-key", KEY)
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

fn status(code: u16) -> Behavior {
    Behavior {
        status: Some(code),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_stream_passes_through_with_usage_and_headers_per_account_kind() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(&mock, &[("key-acct", "sk-ant-a")], ""));
    let response = send(
        &gw,
        "/v1/messages?beta=true",
        &message(true),
        &[("anthropic-beta", "interleaved-thinking-2025-05-14")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types.last().map(String::as_str), Some("message_stop"));
    assert!(types.iter().any(|t| t == "content_block_delta"));

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/messages?beta=true");
    assert_eq!(sent.headers["x-api-key"], "sk-ant-a");
    assert!(sent.headers.get("authorization").is_none());
    assert_eq!(
        sent.headers["anthropic-version"], "2023-06-01",
        "added when missing"
    );
    assert_eq!(
        sent.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    let sent_body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(
        sent_body,
        message(true),
        "the body passes through untouched"
    );

    let records = gw.wait_for_usage(1).await;
    let r = &records[0];
    assert_eq!(r["endpoint"], "messages");
    assert_eq!(r["success"], true);
    assert_eq!(r["tokens"]["input"], 11);
    assert_eq!(r["tokens"]["cached_input"], 3);
    assert_eq!(r["tokens"]["output"], 7);
}

#[tokio::test]
async fn a_signin_account_sends_bearer_with_the_oauth_beta_and_json_answers_pass_through() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(&mock, &[("signin", "oauth-token-1")], ""));
    let response = send(
        &gw,
        "/v1/messages",
        &message(false),
        &[
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "fine-grained-tool-streaming-2025-05-14"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["usage"]["output_tokens"], 7);
    let sent = &mock.requests()[0];
    assert_eq!(sent.headers["authorization"], "Bearer oauth-token-1");
    assert!(
        sent.headers.get("x-api-key").is_none(),
        "the client's key is never forwarded"
    );
    assert_eq!(
        sent.headers["anthropic-beta"],
        "fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"
    );
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["tokens"]["input"], 11);
}

#[tokio::test]
async fn failover_on_529_429_with_reset_and_an_error_event_before_content() {
    let unix_in = |secs: u64| {
        (std::time::SystemTime::now() + Duration::from_secs(secs))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string()
    };
    let mut limited = status(429);
    limited.headers = vec![("anthropic-ratelimit-unified-reset".into(), unix_in(3600))];
    let cases = [
        // A transient failure (None) is a strike: the account stays available.
        ("529", status(529), Some("overloaded")),
        ("429 with reset", limited, Some("rate_limited")),
        (
            "error event",
            Behavior {
                fail_before_output: true,
                ..Default::default()
            },
            None,
        ),
        ("429 without reset", status(429), None),
    ];
    for (what, behavior, reason) in cases {
        let mock = MockUpstream::start().await;
        mock.script("sk-a", vec![behavior]);
        let gw = Gateway::start(&claude_config(&mock, &[("a", "sk-a"), ("b", "sk-b")], ""));
        let response = send(&gw, "/v1/messages", &message(true), &[]).await;
        assert_eq!(response.status(), 200, "{what}");
        let text = response.text().await.unwrap();
        let types = event_types(&text);
        assert!(!types.iter().any(|t| t == "error"), "{what}: {text}");
        assert_eq!(
            types.iter().filter(|t| *t == "message_start").count(),
            1,
            "{what}"
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("message_stop"),
            "{what}"
        );
        assert_eq!((mock.calls("sk-a"), mock.calls("sk-b")), (1, 1), "{what}");
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
        assert_eq!(a["cooldown_reason"].as_str(), reason, "{what}: {a}");
        let state = if reason.is_some() {
            "cooling"
        } else {
            "available"
        };
        assert_eq!(a["state"], state, "{what}: {a}");
        assert!(a["last_error"].is_string(), "{what}: {a}");
    }
}

#[tokio::test]
async fn a_stream_cut_after_content_ends_with_an_anthropic_error_event() {
    let mock = MockUpstream::start().await;
    mock.script(
        "sk-a",
        vec![Behavior {
            cut_after: Some(4),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&claude_config(&mock, &[("a", "sk-a"), ("b", "sk-b")], ""));
    let text = send(&gw, "/v1/messages", &message(true), &[])
        .await
        .text()
        .await
        .unwrap();
    let types = event_types(&text);
    assert_eq!(types.last().map(String::as_str), Some("error"), "{text}");
    assert!(text.contains("\"type\":\"api_error\""), "{text}");
    assert_eq!(mock.calls("sk-b"), 0);
}

#[tokio::test]
async fn errors_are_anthropic_shaped_and_keys_reach_only_their_platform() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(
        &mock,
        &[("a", "sk-a")],
        "  max_body_size: 2048\n",
    ));
    let url = format!("{}/v1/messages", gw.url);
    let response = client()
        .post(&url)
        .json(&message(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "authentication_error");

    let response = client()
        .post(&url)
        .header("x-api-key", KEY)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let mut big = message(false);
    big["system"] = Value::String("x".repeat(4096));
    let response = send(&gw, "/v1/messages", &big, &[]).await;
    assert_eq!(response.status(), 413);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");

    // An OpenAI key on an Anthropic route, and the other way round: 404 in the route's shape.
    let response = client()
        .post(&url)
        .header("x-api-key", "sk-openai-key")
        .json(&message(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 404);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "route_not_served_by_key_group");
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test]
async fn count_tokens_and_models_in_anthropic_shape() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(&mock, &[("a", "sk-a")], ""));
    let mut request = message(false);
    request.as_object_mut().unwrap().remove("stream");
    let response = send(&gw, "/v1/messages/count_tokens", &request, &[]).await;
    assert_eq!(response.status(), 200);
    let v: Value = response.json().await.unwrap();
    assert!(v["input_tokens"].is_u64(), "{v}");
    assert_eq!(mock.requests()[0].path, "/v1/messages/count_tokens");

    let response = client()
        .get(format!("{}/v1/models", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["data"][0]["type"], "model", "{v}");
    assert_eq!(v["has_more"], false);
}

#[tokio::test]
async fn thinking_signed_by_another_account_is_dropped_and_retried_once() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(&mock, &[("a", "sk-a")], ""));
    let conversation = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [
            {"role": "user", "content": "q1"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "earlier", "signature": "sig:some-other-account"},
                {"type": "text", "text": "a1"}
            ]},
            {"role": "user", "content": "q2"}
        ]
    });
    let response = send(&gw, "/v1/messages", &conversation, &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        mock.calls("sk-a"),
        2,
        "refused once, then accepted without the foreign thinking"
    );
    let retried: Value = serde_json::from_slice(&mock.requests()[1].body).unwrap();
    assert_eq!(
        retried["messages"][1]["content"].as_array().unwrap().len(),
        1
    );
    gw.wait_for_log("thinking blocks signed by another account")
        .await;
}

#[tokio::test]
async fn the_official_anthropic_sdk_works_through_subrelay() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&claude_config(&mock, &[("a", "sk-a")], ""));
    run_python("anthropic", "sdk_anthropic.py", &[&gw.url, KEY]).await;
}

#[tokio::test]
async fn the_non_stream_keepalive_applies_to_messages_too() {
    let mock = MockUpstream::start().await;
    mock.script(
        "sk-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(6),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&claude_config(
        &mock,
        &[("a", "sk-a")],
        "  nonstream_keepalive_interval: 5\n",
    ));
    let response = send(&gw, "/v1/messages", &message(false), &[]).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.starts_with('\n'), "{text:?}");
    let v: Value = serde_json::from_str(text.trim_start()).unwrap();
    assert_eq!(v["type"], "message");
}

#[tokio::test]
async fn every_claude_account_timing_out_is_a_504_in_the_anthropic_shape() {
    let mock = MockUpstream::start().await;
    let hang = || {
        vec![Behavior {
            hang_before_headers: true,
            ..Default::default()
        }]
    };
    mock.script("sk-ant-a", hang());
    mock.script("sk-ant-b", hang());
    let gw = Gateway::start(&claude_config(
        &mock,
        &[("a", "sk-ant-a"), ("b", "sk-ant-b")],
        "  response_header_timeout: 1\n",
    ));
    let response = send(&gw, "/v1/messages", &message(false), &[]).await;
    assert_eq!(response.status(), 504);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "timeout_error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not answer in time"),
        "{v}"
    );
    assert_eq!((mock.calls("sk-ant-a"), mock.calls("sk-ant-b")), (1, 1));
}
