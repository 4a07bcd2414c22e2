//! What the mock writes on the wire: stream event order and content, the JSON response object,
//! compaction answers, the Codex backend's body rules and OpenAI-shaped errors.

mod support;

use serde_json::{json, Value};
use subrelay_mock::{MockUpstream, DEFAULT_TEXT};
use support::*;

#[tokio::test]
async fn codex_stream_has_the_full_event_order_and_usage() {
    let mock = MockUpstream::start().await;
    let events =
        read_sse(post(&mock.url(), CODEX, "tok", &codex_body("gpt-5.1-codex")).await).await;

    assert_eq!(names(&events), success_order(3));
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.data["sequence_number"], n as u64);
    }
    let created = &events[0].data["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["model"], "gpt-5.1-codex");

    let item_id = events[2].data["item"]["id"].as_str().unwrap().to_owned();
    assert!(item_id.starts_with("msg_"));
    let deltas: String = events
        .iter()
        .filter(|e| e.event == "response.output_text.delta")
        .map(|e| {
            assert_eq!(e.data["item_id"], item_id.as_str());
            assert_eq!(e.data["output_index"], 0);
            assert_eq!(e.data["content_index"], 0);
            e.data["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, DEFAULT_TEXT);
    assert_eq!(events[7].data["text"], DEFAULT_TEXT);
    assert_eq!(events[8].data["part"]["text"], DEFAULT_TEXT);

    let item = &events[9].data["item"];
    assert_eq!(item["status"], "completed");
    assert_eq!(item["content"][0]["text"], DEFAULT_TEXT);

    let done = &events[10].data["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], created["id"]);
    assert_eq!(done["output"][0], *item);
    assert_eq!(
        done["usage"],
        json!({
            "input_tokens": 11,
            "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 2},
            "total_tokens": 18,
        })
    );
    assert_eq!(mock.completed(), 1);
}

#[tokio::test]
async fn api_route_streams_when_asked_and_answers_json_otherwise() {
    let mock = MockUpstream::start().await;
    let streamed =
        json!({"model": "gpt-5+events=5+text_bytes=1000", "input": "hi", "stream": true});
    let events = read_sse(post(&mock.url(), API, "sk-1", &streamed).await).await;
    assert_eq!(names(&events), success_order(5));
    let done = &events.last().unwrap().data["response"];
    assert_eq!(done["model"], "gpt-5");
    assert_eq!(
        done["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .len(),
        1000
    );

    let plain = json!({"model": "gpt-5", "input": "hi"});
    let response = post(&mock.url(), API, "sk-1", &plain).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = json_of(response).await;
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], "gpt-5");
    assert!(body["created_at"].as_u64().unwrap() > 0);
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(body["tools"], json!([]));
    assert_eq!(body["parallel_tool_calls"], true);
    let message = &body["output"][0];
    assert_eq!(message["type"], "message");
    assert_eq!(message["role"], "assistant");
    assert_eq!(message["status"], "completed");
    assert_eq!(
        message["content"][0],
        json!({"type": "output_text", "text": DEFAULT_TEXT, "annotations": [], "logprobs": []})
    );
    assert_eq!(body["usage"]["total_tokens"], 18);
    assert_eq!(mock.completed(), 2);
}

#[tokio::test]
async fn codex_backend_refuses_bodies_the_real_one_refuses() {
    let mock = MockUpstream::start().await;
    let good = codex_body("gpt-5.1-codex");
    let cases: [(&str, Value); 5] = [
        ("stream", without(&good, "stream")),
        ("store", without(&good, "store")),
        ("store", with(&good, "store", json!(true))),
        ("instructions", without(&good, "instructions")),
        ("instructions", with(&good, "instructions", json!(""))),
    ];
    for (param, body) in cases {
        let response = post(&mock.url(), CODEX, "tok", &body).await;
        assert_eq!(response.status(), 400, "{param}");
        let error: Value = json_of(response).await;
        assert_eq!(error["error"]["param"], param);
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(error["error"]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(param));
        assert!(error["error"].get("code").is_some());
    }
    assert_eq!(mock.calls("tok"), 5, "refused requests are still counted");
    assert_eq!(post(&mock.url(), CODEX, "tok", &good).await.status(), 200);
}

#[tokio::test]
async fn compact_answers_a_compaction_and_refuses_stream_or_store() {
    let mock = MockUpstream::start().await;
    let body = json!({"model": "gpt-5.1-codex", "input": [], "instructions": "x"});
    for path in [CODEX_COMPACT, API_COMPACT] {
        let response = post(&mock.url(), path, "tok", &body).await;
        assert_eq!(response.status(), 200);
        let answer: Value = json_of(response).await;
        assert!(answer["id"].as_str().unwrap().starts_with("cmp_"));
        assert_eq!(answer["object"], "response.compaction");
        assert_eq!(answer["output"][0]["type"], "message");
        assert_eq!(answer["output"][0]["role"], "user");
        assert_eq!(answer["output"][0]["content"][0]["type"], "input_text");
        assert_eq!(answer["output"][1]["type"], "compaction");
        assert!(!answer["output"][1]["encrypted_content"]
            .as_str()
            .unwrap()
            .is_empty());
        assert_eq!(answer["usage"]["input_tokens"], 11);

        for key in ["stream", "store"] {
            let refused = post(&mock.url(), path, "tok", &with(&body, key, json!(false))).await;
            assert_eq!(refused.status(), 400, "{path} with {key}");
            let error: Value = json_of(refused).await;
            assert_eq!(error["error"]["param"], key);
        }
    }
}

#[tokio::test]
async fn unknown_paths_and_model_options_get_openai_errors() {
    let mock = MockUpstream::start().await;
    let response = post(&mock.url(), "/v1/completions", "tok", &json!({})).await;
    assert_eq!(response.status(), 404);
    let error: Value = json_of(response).await;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["param"], Value::Null);

    let body = codex_body("gpt-5.1-codex+events=2+slow");
    let response = post(&mock.url(), CODEX, "tok", &body).await;
    assert_eq!(response.status(), 400);
    let error: Value = json_of(response).await;
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'slow'"));
    assert_eq!(mock.total_calls(), 2);
}

#[tokio::test]
async fn failure_before_output_ends_with_response_failed() {
    let mock = MockUpstream::start().await;
    let events = read_sse(post(&mock.url(), CODEX, "tok", &codex_body("m+fail")).await).await;
    assert_eq!(
        names(&events),
        [
            "response.created",
            "response.in_progress",
            "response.failed"
        ]
    );
    let failed = &events[2].data["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");

    let response = post(&mock.url(), API, "tok", &json!({"model": "m+fail"})).await;
    assert_eq!(response.status(), 500);
}
