//! OpenAI Chat Completions: the JSON completion, streams with and without
//! `stream_options.include_usage`, `data: [DONE]`, body rules and failures.

mod support;

use serde_json::{json, Value};
use subrelay_mock::{MockUpstream, DEFAULT_TEXT};
use support::*;

#[tokio::test]
async fn json_completion_has_the_message_and_usage() {
    let mock = MockUpstream::start().await;
    let response = post(&mock.url(), CHAT, "sk-1", &chat_body("gpt-4o+events=2")).await;
    assert_eq!(response.status(), 200);
    let completion = json_of(response).await;
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(completion["model"], "gpt-4o");
    assert!(completion["created"].as_u64().unwrap() > 0);
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], DEFAULT_TEXT);
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &completion["usage"];
    assert_eq!(
        (
            &usage["prompt_tokens"],
            &usage["completion_tokens"],
            &usage["total_tokens"]
        ),
        (&json!(11), &json!(7), &json!(18))
    );
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 3);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 2);
    assert_eq!(mock.calls("sk-1"), 1);
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn stream_without_include_usage_has_no_usage_and_ends_with_done() {
    let mock = MockUpstream::start().await;
    let mut body = chat_body("gpt-4o+events=4");
    body["stream"] = json!(true);
    let chunks = read_chat_stream(post(&mock.url(), CHAT, "sk-1", &body).await).await;
    assert_eq!(chunks.len(), 6, "role, 4 content, finish");
    let id = &chunks[0]["id"];
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(&chunk["id"], id);
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(chunk.get("usage").is_none(), "no usage key: {chunk}");
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let text: String = chunks[1..5]
        .iter()
        .map(|c| {
            assert_eq!(c["choices"][0]["finish_reason"], Value::Null);
            c["choices"][0]["delta"]["content"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, DEFAULT_TEXT);
    assert_eq!(chunks[5]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn stream_with_include_usage_adds_a_usage_chunk_before_done() {
    let mock = MockUpstream::start().await;
    let mut body = chat_body("gpt-4o");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let chunks = read_chat_stream(post(&mock.url(), CHAT, "sk-1", &body).await).await;
    assert_eq!(chunks.len(), 6, "role, 3 content, finish, usage");
    for chunk in &chunks[..5] {
        assert_eq!(chunk["usage"], Value::Null, "usage is null until the end");
    }
    let last = &chunks[5];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 11);
    assert_eq!(last["usage"]["completion_tokens"], 7);
    assert_eq!(last["usage"]["total_tokens"], 18);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 3);

    // `include_usage: false` is the same as leaving it out, except for `usage: null`.
    body["stream_options"] = json!({"include_usage": false});
    let chunks = read_chat_stream(post(&mock.url(), CHAT, "sk-1", &body).await).await;
    assert_eq!(chunks.len(), 5);
}

#[tokio::test]
async fn body_rules_and_failures_are_openai_shaped() {
    let mock = MockUpstream::start().await;
    let url = mock.url();
    let no_stream = with(
        &chat_body("gpt-4o"),
        "stream_options",
        json!({"include_usage": true}),
    );
    let cases = [
        ("stream_options", no_stream),
        ("messages", without(&chat_body("gpt-4o"), "messages")),
        ("model", without(&chat_body("gpt-4o"), "model")),
    ];
    for (param, body) in cases {
        let response = post(&url, CHAT, "sk-1", &body).await;
        assert_eq!(response.status(), 400, "{param}");
        let error = json_of(response).await;
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["param"], param);
    }

    // No in-stream failure event in this API: a 500 before any chunk.
    let mut failing = chat_body("gpt-4o+fail");
    failing["stream"] = json!(true);
    let response = post(&url, CHAT, "sk-1", &failing).await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(json_of(response).await["error"]["type"], "server_error");

    let response = post(
        &url,
        CHAT,
        "sk-1",
        &chat_body("gpt-4o+status=429+retry_after=2"),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "2");
    assert_eq!(
        json_of(response).await["error"]["code"],
        "rate_limit_exceeded"
    );

    // A cut stream never reaches `data: [DONE]`.
    let mut cut = chat_body("gpt-4o+cut=99");
    cut["stream"] = json!(true);
    let response = post(&url, CHAT, "sk-1", &cut).await;
    assert!(response.text().await.is_err());
    assert_eq!(mock.completed(), 5, "three 400s, the 500 and the 429");
}
