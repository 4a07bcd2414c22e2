#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use bytes::BytesMut;
use serde_json::Value;

use super::*;
use crate::protocol::sse::SseScanner;
use crate::translate::golden;

#[test]
fn golden_cases() {
    let ran = golden::run_all::<ResponsesViaChat>("responses_via_chat");
    assert!(ran >= 25, "only {ran} golden cases");
}

fn target() -> Target {
    Target {
        upstream_model: "up".into(),
        codex_backend: false,
    }
}

/// Feeds `stream` (SSE bytes) to a fresh translator; returns the client's event names and data.
fn translate(
    stream: &str,
    end: impl FnOnce(&mut dyn StreamTranslator, &mut BytesMut),
) -> Vec<(String, Value)> {
    let mut translator = ResponsesViaChat::stream("client");
    let mut out = BytesMut::new();
    SseScanner::new().feed(stream.as_bytes(), |e| translator.event(&e, &mut out));
    end(translator.as_mut(), &mut out);
    std::str::from_utf8(&out)
        .unwrap()
        .split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|b| {
            let (name, data) = b.split_once("\ndata: ").unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_owned();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[test]
fn nothing_follows_the_terminal_event() {
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}\n\n",
        "data: [DONE]\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"late\"}}]}\n\n",
    );
    let events = translate(stream, |t, out| {
        t.finish(out);
        t.fail("x", "y", out);
    });
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"response.completed"));
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("response.completed"))
            .count(),
        1
    );
    assert!(!names.contains(&"response.failed"));
    // Sequence numbers count every event from 0, without gaps.
    for (i, (_, data)) in events.iter().enumerate() {
        assert_eq!(data["sequence_number"], i);
    }
}

#[test]
fn interleaved_tool_call_arguments_stay_with_their_call() {
    let stream = concat!(
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[",
        "{\"index\":0,\"id\":\"call_a\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":\"}},",
        "{\"index\":1,\"id\":\"call_b\",\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"y\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[",
        "{\"index\":1,\"function\":{\"arguments\":\"2}\"}},{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]},",
        "\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    );
    let events = translate(stream, |t, out| t.finish(out));
    let (_, completed) = events.last().unwrap();
    let output = completed["response"]["output"].as_array().unwrap();
    assert_eq!(output[0]["call_id"], "call_a");
    assert_eq!(output[0]["arguments"], "{\"x\":1}");
    assert_eq!(output[1]["call_id"], "call_b");
    assert_eq!(output[1]["arguments"], "{\"y\":2}");
}

#[test]
fn a_null_previous_response_id_is_no_refusal_but_a_value_is() {
    let fine = ResponsesViaChat::request(
        br#"{"model":"m","input":"hi","previous_response_id":null}"#,
        &target(),
    );
    assert!(fine.is_ok());
    let refused = ResponsesViaChat::request(
        br#"{"model":"m","input":"hi","previous_response_id":"resp_1"}"#,
        &target(),
    )
    .unwrap_err();
    assert_eq!(refused.field, "previous_response_id");
}

#[test]
fn the_upstream_streams_only_when_the_client_does() {
    let streamed =
        ResponsesViaChat::request(br#"{"model":"m","input":"hi","stream":true}"#, &target())
            .unwrap();
    assert!(streamed.upstream_stream);
    let whole = ResponsesViaChat::request(br#"{"model":"m","input":"hi"}"#, &target()).unwrap();
    assert!(!whole.upstream_stream);
    let body: Value = serde_json::from_slice(&whole.body).unwrap();
    assert_eq!(body["model"], "up");
    assert!(body.get("stream_options").is_none());
}

#[test]
fn a_json_answer_without_choices_is_a_bad_upstream_answer() {
    assert!(ResponsesViaChat::json(br#"{"id":"c","object":"chat.completion"}"#, "m").is_err());
    assert!(ResponsesViaChat::json(b"not json", "m").is_err());
}
