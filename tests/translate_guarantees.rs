//! Translated streams keep the guarantees of native ones (issue 16), end to end through the real
//! binary and the fake upstream: `gateway.first_token_timeout` gives up a translated stream that
//! sends no real output in time and fails over before output, and a Chat upstream's error chunk
//! (`{"error":{…}}`, older vLLM's `{"object":"error",…}`) is a failure of the attempt before any
//! output (failover, unseen) and ends the client's stream in its own protocol after output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::{json, Value};

fn pair(account: &str, outcome: &str) -> (String, String) {
    (account.to_owned(), outcome.to_owned())
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

#[tokio::test]
async fn a_translated_stream_without_output_by_first_token_timeout_fails_over_before_output() {
    let mock = MockUpstream::start().await;
    // `response.created`, `response.in_progress` (translated: `message_start`, held back), then
    // nothing. Given up 1 s after the send; the stall timeout (30 s) would come much later.
    mock.script(
        "tok-mute",
        vec![Behavior {
            hang_after: Some(2),
            ..Default::default()
        }],
    );
    let config = group_config(
        &mock,
        true,
        &[
            ("mute", "openai", "oauth", "tok-mute", None),
            ("live", "openai", "oauth", "tok-live", None),
        ],
    );
    let gw = Gateway::start(&format!(
        "gateway:\n  first_token_timeout: 1\n  stream_data_interval_timeout: 30\n{config}"
    ));
    let body = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
    });
    let answer = post_messages(&gw, &body).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types.iter().filter(|t| *t == "message_start").count(),
        1,
        "only the answering account's preamble reached the client: {text}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("message_stop"),
        "{text}"
    );
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [pair("mute", "first_token_timeout"), pair("live", "ok")]
    );
    assert_eq!(mock.calls("tok-live"), 1);
}

fn chat_only(name: &'static str, token: &'static str) -> GroupAccount<'static> {
    (name, "openai", "apikey", token, Some("chat"))
}

fn responses_request() -> Value {
    json!({
        "model": "gpt-5.1-codex",
        "stream": true,
        "instructions": "be brief",
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    })
}

#[tokio::test]
async fn a_chat_upstreams_error_chunk_before_output_fails_over_unseen() {
    let mock = MockUpstream::start().await;
    // Each sends its role chunk (no output yet for a Responses client), then an error chunk:
    // the OpenAI shape, then older vLLM's.
    mock.script(
        "sk-modern",
        vec![Behavior {
            error_chunk_after: Some(1),
            ..Default::default()
        }],
    );
    mock.script(
        "sk-legacy",
        vec![Behavior {
            error_chunk_after: Some(1),
            legacy_error_chunk: true,
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            chat_only("modern", "sk-modern"),
            chat_only("legacy", "sk-legacy"),
            chat_only("fine", "sk-fine"),
        ],
    ));
    let answer = post(&gw, "/v1/responses", &responses_request()).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_one_clean_responses_stream(&text);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [
            pair("modern", "response_failed"),
            pair("legacy", "response_failed"),
            pair("fine", "ok")
        ]
    );
    assert_eq!(records[0]["success"], true);
}

#[tokio::test]
async fn a_chat_upstreams_error_chunk_after_output_ends_the_clients_stream_with_response_failed() {
    let mock = MockUpstream::start().await;
    // The role chunk, two content chunks (output), then older vLLM's error object and [DONE].
    mock.script(
        "sk-legacy",
        vec![Behavior {
            error_chunk_after: Some(3),
            legacy_error_chunk: true,
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            chat_only("legacy", "sk-legacy"),
            chat_only("spare", "sk-spare"),
        ],
    ));
    let answer = post(&gw, "/v1/responses", &responses_request()).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert!(
        types.iter().any(|t| t == "response.output_text.delta"),
        "output went out first: {text}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.failed"),
        "{text}"
    );
    assert!(!types.iter().any(|t| t == "response.completed"), "{text}");
    assert_eq!(mock.calls("sk-spare"), 0, "no failover after output");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        records[0]["success"], false,
        "a stream that failed is not a success: {}",
        records[0]
    );
    assert_eq!(mock.total_calls(), 1);
}

#[tokio::test]
async fn when_every_chat_upstream_fails_before_output_the_client_gets_the_error_in_its_shape() {
    let mock = MockUpstream::start().await;
    mock.script(
        "sk-only",
        vec![Behavior {
            error_chunk_after: Some(1),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(&mock, true, &[chat_only("only", "sk-only")]));
    let answer = post(&gw, "/v1/responses", &responses_request()).await;
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(status.is_server_error(), "{status}: {text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    let message = error["error"]["message"].as_str().unwrap();
    assert!(!message.is_empty(), "OpenAI's error shape: {error}");
    assert!(
        !text.contains("chat.completion"),
        "no Chat chunk leaked: {text}"
    );
}

fn messages_request() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 256,
        "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

/// The text of an Anthropic stream's `text_delta`s.
fn messages_text(text: &str) -> String {
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "text_delta")
        .map(|v| v["delta"]["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_malformed_responses_event_before_output_fails_over_unseen() {
    let mock = MockUpstream::start().await;
    // `response.created`, then `response.in_progress` cut in half (not JSON): the Messages
    // translator cannot read it, before any content block.
    mock.script(
        "tok-corrupt",
        vec![Behavior {
            malformed_event_at: Some(1),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            ("corrupt", "openai", "oauth", "tok-corrupt", None),
            ("live", "openai", "oauth", "tok-live", None),
        ],
    ));
    let answer = post_messages(&gw, &messages_request()).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert_eq!(
        types.iter().filter(|t| *t == "message_start").count(),
        1,
        "only the answering account's preamble reached the client: {text}"
    );
    assert!(!types.iter().any(|t| t == "error"), "{text}");
    assert_eq!(
        types.last().map(String::as_str),
        Some("message_stop"),
        "{text}"
    );
    assert_eq!(messages_text(&text), subrelay_mock::DEFAULT_TEXT, "{text}");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [pair("corrupt", "bad_upstream_answer"), pair("live", "ok")]
    );
    assert_eq!(records[0]["success"], true);
    assert_eq!(mock.calls("tok-corrupt"), 1);
    assert_eq!(mock.calls("tok-live"), 1);
}

#[tokio::test]
async fn a_malformed_chat_chunk_before_output_fails_over_unseen() {
    let mock = MockUpstream::start().await;
    // The role chunk (only `response.created` for a Responses client), then the first content
    // chunk cut in half.
    mock.script(
        "sk-corrupt",
        vec![Behavior {
            malformed_event_at: Some(1),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            chat_only("corrupt", "sk-corrupt"),
            chat_only("fine", "sk-fine"),
        ],
    ));
    let answer = post(&gw, "/v1/responses", &responses_request()).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    assert_one_clean_responses_stream(&text);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [pair("corrupt", "bad_upstream_answer"), pair("fine", "ok")]
    );
    assert_eq!(records[0]["success"], true);
}

#[tokio::test]
async fn a_malformed_responses_event_after_output_ends_the_messages_stream_with_an_error_event() {
    let mock = MockUpstream::start().await;
    // created, in_progress, output_item.added, content_part.added (a content block: output),
    // the first text delta, then the second delta cut in half.
    mock.script(
        "tok-corrupt",
        vec![Behavior {
            malformed_event_at: Some(5),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[
            ("corrupt", "openai", "oauth", "tok-corrupt", None),
            ("spare", "openai", "oauth", "tok-spare", None),
        ],
    ));
    let answer = post_messages(&gw, &messages_request()).await;
    assert_eq!(answer.status(), 200);
    let text = answer.text().await.unwrap();
    let types = event_types(&text);
    assert!(
        types.iter().any(|t| t == "content_block_delta"),
        "output went out first: {text}"
    );
    assert_eq!(types.last().map(String::as_str), Some("error"), "{text}");
    assert!(!types.iter().any(|t| t == "message_stop"), "{text}");
    let error: Value = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .next_back()
        .unwrap();
    assert_eq!(error["type"], "error", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON"),
        "the client is told why: {error}"
    );
    assert_eq!(mock.calls("tok-spare"), 0, "no failover after output");
    let records = gw.wait_for_usage(1).await;
    assert_eq!(
        outcomes(&records[0]),
        [pair("corrupt", "bad_upstream_answer")]
    );
    assert_eq!(
        records[0]["success"], false,
        "a stream that failed is not a success: {}",
        records[0]
    );
}
