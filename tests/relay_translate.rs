//! Translation in the relay (issue 16), end to end through the real binary and the fake
//! upstream: a key of a group with `translate: true` calls any client API, and accounts that do
//! not speak it get the request translated — tool calls, streams and JSON, failover from a
//! native account to a translated one, the client's model name reported back, usage in upstream
//! tokens, untranslatable content refused in the client's shape, count_tokens answered locally.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::{json, Value};

fn calls(n: usize) -> Behavior {
    Behavior {
        tool_calls: Some(n),
        ..Behavior::default()
    }
}

async fn post_messages(gw: &Gateway, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `data:` JSON of every SSE event (Chat chunks and named events alike), `[DONE]` left out.
fn data_of(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn messages_request(stream: bool, last: Value) -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "stream": stream,
        "system": "be brief",
        "metadata": {"user_id": "user_abc_session_1"},
        "tools": [{"name": "get_weather", "description": "weather", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}}}],
        "messages": [last],
    })
}

#[tokio::test]
async fn a_messages_client_on_a_codex_account_does_a_tool_round_trip() {
    let mock = MockUpstream::start().await;
    mock.script("tok-codex", vec![calls(2), calls(2)]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));

    // 1. streamed: two parallel tool_use blocks.
    let user = json!({"role": "user", "content": "weather in Paris and Rome?"});
    let answer = post_messages(&gw, &messages_request(true, user.clone())).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types.first().map(String::as_str),
        Some("message_start"),
        "{text}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("message_stop"),
        "{text}"
    );
    let events = data_of(&text);
    assert_eq!(
        events[0]["message"]["model"], "claude-sonnet-4-5",
        "the client's model"
    );
    let uses: Vec<&Value> = events
        .iter()
        .filter(|e| e["content_block"]["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 2, "{text}");
    assert_eq!(uses[0]["content_block"]["name"], "get_weather");
    let args: String = events
        .iter()
        .filter(|e| e["index"] == uses[0]["index"] && e["delta"]["type"] == "input_json_delta")
        .map(|e| e["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args, r#"{"query":"mock 0"}"#);
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // What the Codex backend got: the translated body under its rules, the mapped model, a
    // per-key prompt_cache_key from metadata.user_id.
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/backend-api/codex/responses");
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["model"], "gpt-5.1-codex");
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["store"], false);
    assert_eq!(sent["instructions"], "be brief");
    assert_eq!(sent["tools"][0]["type"], "function");
    let cache_key = sent["prompt_cache_key"].as_str().unwrap();
    assert!(
        !cache_key.contains("user_abc"),
        "derived per key: {cache_key}"
    );

    // 2. the tool results go back, JSON: the mock answers text.
    let id0 = uses[0]["content_block"]["id"].as_str().unwrap();
    let id1 = uses[1]["content_block"]["id"].as_str().unwrap();
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [
            user,
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": id0, "name": "get_weather", "input": {"query": "mock 0"}},
                {"type": "tool_use", "id": id1, "name": "get_weather", "input": {"query": "mock 1"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": id0, "content": "sunny"},
                {"type": "tool_result", "tool_use_id": id1, "content": "rain", "is_error": true}]},
        ],
    });
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 200);
    let message: Value = answer.json().await.unwrap();
    assert_eq!(message["type"], "message", "{message}");
    assert_eq!(message["model"], "claude-sonnet-4-5");
    assert_eq!(message["stop_reason"], "end_turn");
    assert_eq!(message["content"][0]["type"], "text");
    let sent: Value = serde_json::from_slice(&mock.requests().pop().unwrap().body).unwrap();
    let outputs: Vec<&Value> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 2, "{sent}");
    assert_eq!(outputs[0]["call_id"], id0);

    // Usage: upstream tokens, priced by the upstream model, the client's model beside it.
    let records = gw.wait_for_usage(2).await;
    for r in &records {
        assert_eq!(r["model"], "gpt-5.1-codex", "{r}");
        assert_eq!(r["client_model"], "claude-sonnet-4-5", "{r}");
        assert_eq!(r["tokens"]["input"], 11, "{r}");
        assert_eq!(r["tokens"]["output"], 7, "{r}");
    }
}

#[tokio::test]
async fn a_chat_client_on_a_responses_account_gets_tool_calls_streamed_and_as_json() {
    let mock = MockUpstream::start().await;
    mock.script("tok-resp", vec![calls(2), calls(1)]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("resp", "openai", "apikey", "tok-resp", Some("responses"))],
    ));
    let request = |stream: bool| {
        json!({
            "model": "gpt-5",
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "weather?"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        })
    };
    let mut stream_body = request(true);
    let answer = post(&gw, "/v1/chat/completions", &stream_body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let chunks = data_of(&text);
    let indexes: std::collections::BTreeSet<u64> = chunks
        .iter()
        .flat_map(|c| {
            c["choices"][0]["delta"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|t| t["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes.into_iter().collect::<Vec<_>>(), [0, 1], "{text}");
    assert!(chunks
        .iter()
        .any(|c| c["choices"][0]["finish_reason"] == "tool_calls"));
    assert_eq!(
        chunks.last().unwrap()["usage"]["prompt_tokens"],
        11,
        "{text}"
    );
    let sent = mock.requests().pop().unwrap();
    assert_eq!(
        sent.path, "/v1/responses",
        "translated to the Responses API"
    );

    stream_body["stream"] = json!(false);
    let completion: Value = post(&gw, "/v1/chat/completions", &stream_body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    let call = &completion["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"query":"mock 0"}"#);
}

#[tokio::test]
async fn a_chat_client_on_a_messages_account_gets_tool_calls() {
    let mock = MockUpstream::start().await;
    mock.script("sk-ant-1", vec![calls(1)]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("claude", "anthropic", "apikey", "sk-ant-1", None)],
    ));
    let body = json!({
        "model": "sonnet-4-5",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    });
    let completion: Value = post(&gw, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completion["object"], "chat.completion", "{completion}");
    assert_eq!(completion["model"], "sonnet-4-5");
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    let call = &completion["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "toolu_mock0");
    assert_eq!(call["function"]["arguments"], r#"{"query":"mock 0"}"#);
    let sent = mock.requests().pop().unwrap();
    assert!(sent.path.starts_with("/v1/messages"), "{}", sent.path);
    assert_eq!(sent.headers["x-api-key"], "sk-ant-1");
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    // Unmatched by the group's model map: the name passes unchanged.
    assert_eq!(sent["model"], "sonnet-4-5");
    assert_eq!(sent["system"][0]["text"], "be brief", "{sent}");
    assert_eq!(sent["tools"][0]["name"], "get_weather");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["model"], "sonnet-4-5");
    assert!(records[0].get("client_model").is_none(), "{}", records[0]);
}

#[tokio::test]
async fn a_responses_client_on_a_chat_only_account_streams_function_calls() {
    let mock = MockUpstream::start().await;
    mock.script("tok-deepseek", vec![calls(1)]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("deepseek", "openai", "apikey", "tok-deepseek", Some("chat"))],
    ));
    // Codex CLI's shape: instructions, input items, function tools, include, prompt_cache_key.
    let body = json!({
        "model": "deepseek-chat",
        "instructions": "you are codex",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}, "strict": false}],
        "tool_choice": "auto",
        "parallel_tool_calls": false,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "conv-1",
        "store": false,
        "stream": true,
    });
    let answer = post(&gw, "/v1/responses", &body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(types[0], "response.created", "{text}");
    assert_eq!(types.last().unwrap(), "response.completed", "{text}");
    let done = data_of(&text).pop().unwrap();
    let item = &done["response"]["output"][0];
    assert_eq!(item["type"], "function_call", "{done}");
    assert_eq!(item["name"], "shell");
    assert_eq!(done["response"]["usage"]["input_tokens"], 11);
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let sent: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(sent["messages"][0]["role"], "system", "{sent}");
    assert!(sent.get("include").is_none() && sent.get("prompt_cache_key").is_none());
}

#[tokio::test]
async fn a_failing_native_account_fails_over_to_a_translated_one() {
    let mock = MockUpstream::start().await;
    let failing = Behavior {
        status: Some(500),
        ..Behavior::default()
    };
    mock.script("sk-ant-1", vec![failing]);
    // The Codex account comes first by priority, but the native (Anthropic) one is preferred.
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            ("codex", "openai", "oauth", "tok-codex", None),
            ("claude", "anthropic", "apikey", "sk-ant-1", None),
        ],
    ));
    let user = json!({"role": "user", "content": "hi"});
    let answer = post_messages(&gw, &messages_request(true, user)).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_eq!(event_types(&text).last().unwrap(), "message_stop", "{text}");
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/messages", "/backend-api/codex/responses"]);
    let records = gw.wait_for_usage(1).await;
    let attempts: Vec<&str> = records[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    assert_eq!(attempts, ["claude", "codex"]);
}

#[tokio::test]
async fn content_the_upstream_api_cannot_take_is_a_400_naming_the_field() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let mut body = messages_request(false, json!({"role": "user", "content": "hi"}));
    body["mcp_servers"] = json!([{"type": "url", "url": "https://mcp.example", "name": "x"}]);
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    assert_eq!(error["type"], "error", "Anthropic's shape: {error}");
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("mcp_servers"), "{message}");
    assert_eq!(mock.total_calls(), 0, "nothing was sent upstream");
    // Positive control: the same request without the field is served.
    body.as_object_mut().unwrap().remove("mcp_servers");
    assert_eq!(post_messages(&gw, &body).await.status(), 200);
}

#[tokio::test]
async fn without_translate_a_key_reaches_only_its_platforms_apis() {
    let mock = MockUpstream::start().await;
    let accounts = [("codex", "openai", "oauth", "tok-codex", None)];
    let body = messages_request(false, json!({"role": "user", "content": "hi"}));
    let plain = Gateway::start(&group_config(&mock, false, &accounts));
    let answer = post_messages(&plain, &body).await;
    assert_eq!(answer.status(), 404);
    let error: Value = answer.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot serve messages"),
        "{error}"
    );
    // Positive control: the same accounts in a translating group serve it.
    let translating = Gateway::start(&group_config(&mock, true, &accounts));
    assert_eq!(post_messages(&translating, &body).await.status(), 200);
}

#[tokio::test]
async fn count_tokens_is_answered_locally_without_a_messages_account() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = json!({
        "model": "claude-sonnet-4-5",
        "system": "be brief",
        "messages": [{"role": "user", "content": "How many tokens is this sentence?"}],
    });
    let answer = client()
        .post(format!("{}/v1/messages/count_tokens", gw.url))
        .header("x-api-key", KEY)
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let counted: Value = answer.json().await.unwrap();
    let n = counted["input_tokens"].as_u64().unwrap();
    assert!((8..40).contains(&n), "{counted}");
    assert_eq!(mock.total_calls(), 0);
}

#[tokio::test]
async fn an_upstream_refusal_is_told_in_the_clients_shape() {
    let mock = MockUpstream::start().await;
    let refused = Behavior {
        status: Some(400),
        ..Behavior::default()
    };
    mock.script("tok-codex", vec![refused]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = messages_request(false, json!({"role": "user", "content": "hi"}));
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 400);
    let error: Value = answer.json().await.unwrap();
    // The Codex backend answered OpenAI's shape; the Messages client reads Anthropic's.
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "invalid_request_error", "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().len() > 3,
        "{error}"
    );
}

#[tokio::test]
async fn a_translated_stream_cut_after_output_ends_with_the_clients_error_event() {
    let mock = MockUpstream::start().await;
    let cut = Behavior {
        events: Some(6),
        cut_after: Some(6),
        ..Behavior::default()
    };
    mock.script("tok-codex", vec![cut]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = messages_request(true, json!({"role": "user", "content": "hi"}));
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert!(
        types.iter().any(|t| t == "content_block_delta"),
        "output went out first: {text}"
    );
    assert_eq!(types.last().unwrap(), "error", "{text}");
    assert!(!types.iter().any(|t| t == "message_stop"), "{text}");
    assert_eq!(mock.total_calls(), 1, "no failover after output");
}

#[tokio::test]
async fn a_translated_stream_failing_before_output_fails_over_unseen() {
    let mock = MockUpstream::start().await;
    let failing = Behavior {
        fail_before_output: true,
        ..Behavior::default()
    };
    mock.script("tok-codex-1", vec![failing]);
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            ("codex-1", "openai", "oauth", "tok-codex-1", None),
            ("codex-2", "openai", "oauth", "tok-codex-2", None),
        ],
    ));
    let body = messages_request(true, json!({"role": "user", "content": "hi"}));
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    // The first account's translated preamble was held back and dropped with it: one clean
    // stream from the second.
    assert_eq!(
        types.iter().filter(|t| *t == "message_start").count(),
        1,
        "{text}"
    );
    assert!(!types.iter().any(|t| t == "error"), "{text}");
    assert_eq!(types.last().unwrap(), "message_stop", "{text}");
    assert_eq!(mock.calls("tok-codex-1"), 1);
    assert_eq!(mock.calls("tok-codex-2"), 1);
}

#[tokio::test]
async fn a_translated_json_answer_keeps_the_client_alive_while_waiting() {
    let mock = MockUpstream::start().await;
    let slow = Behavior {
        delay_headers: std::time::Duration::from_secs(6),
        ..Behavior::default()
    };
    mock.script("tok-codex", vec![slow]);
    let config = group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    );
    let gw = Gateway::start(&format!(
        "gateway:\n  nonstream_keepalive_interval: 5\n{config}"
    ));
    let body = messages_request(false, json!({"role": "user", "content": "hi"}));
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert!(
        text.starts_with('\n'),
        "keepalive bytes before the JSON: {text:?}"
    );
    let message: Value = serde_json::from_str(text.trim_start()).unwrap();
    assert_eq!(message["type"], "message", "{message}");
}

#[tokio::test]
async fn a_chat_clients_prompt_cache_key_reaches_a_responses_account_derived_per_key() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let body = json!({
        "model": "gpt-5.1-codex",
        "prompt_cache_key": "conversation-42",
        "messages": [{"role": "user", "content": "hi"}],
    });
    assert_eq!(post(&gw, "/v1/chat/completions", &body).await.status(), 200);
    let sent: Value = serde_json::from_slice(&mock.requests().pop().unwrap().body).unwrap();
    let key = sent["prompt_cache_key"].as_str().unwrap();
    assert!(!key.is_empty() && key != "conversation-42", "{sent}");
}
