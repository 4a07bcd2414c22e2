//! Helpers shared by the integration tests: a plain HTTP client and an SSE reader, so the tests
//! check the mock's wire output the way a real client sees it.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    reason = "test helpers: a panic is how a test fails"
)]

use serde_json::Value;

pub const CODEX: &str = "/backend-api/codex/responses";
pub const CODEX_COMPACT: &str = "/backend-api/codex/responses/compact";
pub const API: &str = "/v1/responses";
pub const API_COMPACT: &str = "/v1/responses/compact";

/// A body the Codex backend accepts.
pub fn codex_body(model: &str) -> Value {
    serde_json::json!({
        "model": model,
        "instructions": "You are a test.",
        "input": [{"type": "message", "role": "user", "content": "hi"}],
        "stream": true,
        "store": false,
    })
}

pub async fn post(base: &str, path: &str, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// Reads a whole answer as JSON.
pub async fn json_of(response: reqwest::Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// One parsed server-sent event.
#[derive(Debug)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
}

/// Parses a complete `text/event-stream` body, checking that every event is well-formed.
pub fn parse_sse(text: &str) -> Vec<SseEvent> {
    assert!(
        text.ends_with("\n\n"),
        "stream must end on an event boundary: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|block| {
            let mut lines = block.lines();
            let event = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            assert!(lines.next().is_none(), "one data line per event");
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(data["type"], event.as_str(), "type matches the event line");
            SseEvent { event, data }
        })
        .collect()
}

/// Reads a whole stream answer and parses it.
pub async fn read_sse(response: reqwest::Response) -> Vec<SseEvent> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    parse_sse(&response.text().await.unwrap())
}

pub fn names(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

/// The event order of a successful stream with `deltas` text deltas.
pub fn success_order(deltas: usize) -> Vec<&'static str> {
    let mut order = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    order.extend(std::iter::repeat_n("response.output_text.delta", deltas));
    order.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    order
}

/// `body` without `key`.
pub fn without(body: &Value, key: &str) -> Value {
    let mut body = body.clone();
    body.as_object_mut().unwrap().remove(key);
    body
}

/// `body` with `key` set to `value`.
pub fn with(body: &Value, key: &str, value: Value) -> Value {
    let mut body = body.clone();
    body[key] = value;
    body
}

pub const MESSAGES: &str = "/v1/messages";
pub const COUNT_TOKENS: &str = "/v1/messages/count_tokens";
pub const CHAT: &str = "/v1/chat/completions";
pub const OPENAI_TOKEN: &str = "/oauth/token";
pub const ANTHROPIC_TOKEN: &str = "/v1/oauth/token";

/// POSTs a JSON body with exactly these headers (besides `content-type`).
pub async fn post_with(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// The headers of an Anthropic API-key request.
pub fn anthropic_key(key: &str) -> [(&str, &str); 2] {
    [("x-api-key", key), ("anthropic-version", "2023-06-01")]
}

/// A Messages body.
pub fn messages_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    })
}

/// The event order of a successful Messages stream with `deltas` text deltas (no thinking).
pub fn anthropic_order(deltas: usize) -> Vec<&'static str> {
    let mut order = vec!["message_start", "ping", "content_block_start"];
    order.extend(std::iter::repeat_n("content_block_delta", deltas));
    order.extend(["content_block_stop", "message_delta", "message_stop"]);
    order
}

/// A Chat Completions body.
pub fn chat_body(model: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// Parses a complete `data:`-only stream (Chat Completions): the JSON chunks before
/// `data: [DONE]`, checking that `[DONE]` ends it and that no `event:` line appears.
pub fn parse_chat_stream(text: &str) -> Vec<Value> {
    let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
    assert!(text.ends_with("\n\n"), "ends on a boundary: {text:?}");
    assert_eq!(blocks.last(), Some(&"data: [DONE]"), "{text:?}");
    blocks[..blocks.len() - 1]
        .iter()
        .map(|block| {
            assert!(!block.contains('\n'), "one line per chunk: {block:?}");
            let data = block.strip_prefix("data: ").unwrap();
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

/// Reads a whole Chat Completions stream answer and parses it.
pub async fn read_chat_stream(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    parse_chat_stream(&response.text().await.unwrap())
}
