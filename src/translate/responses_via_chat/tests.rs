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

/// Prints the translator's answers for the cases in `$RVC_CASES` (a folder of case files
/// without expectations), to review and freeze them as golden cases.
#[test]
#[ignore = "a tool for writing golden cases, not a test"]
fn print_answers() {
    let Ok(dir) = std::env::var("RVC_CASES") else {
        return;
    };
    let mut all = serde_json::Map::new();
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let case: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        let model = case["client_model"]
            .as_str()
            .or_else(|| case["request"]["model"].as_str())
            .unwrap_or("client-model")
            .to_string();
        let mut got = serde_json::Map::new();
        if let Some(request) = case.get("request") {
            let target = Target {
                upstream_model: case["target"]["upstream_model"]
                    .as_str()
                    .unwrap_or(&model)
                    .into(),
                codex_backend: false,
            };
            match ResponsesViaChat::request(&serde_json::to_vec(request).unwrap(), &target) {
                Ok(t) => {
                    got.insert(
                        "upstream_request".into(),
                        serde_json::from_slice(&t.body).unwrap(),
                    );
                }
                Err(e) => {
                    got.insert(
                        "untranslatable".into(),
                        serde_json::json!({"field": e.field, "message": e.message}),
                    );
                }
            }
        }
        if let Some(events) = case["upstream_events"].as_array() {
            let mut t = match case.get("request") {
                Some(request) => {
                    ResponsesViaChat::stream_for(&serde_json::to_vec(request).unwrap(), &model)
                }
                None => ResponsesViaChat::stream(&model),
            };
            let mut out = BytesMut::new();
            let mut scanner = SseScanner::new();
            for e in events {
                let data = match &e["data"] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                scanner.feed(format!("data: {data}\n\n").as_bytes(), |ev| {
                    t.event(&ev, &mut out)
                });
            }
            match case.get("fail") {
                Some(f) => t.fail(
                    f["code"].as_str().unwrap(),
                    f["message"].as_str().unwrap(),
                    &mut out,
                ),
                None => t.finish(&mut out),
            }
            let text = String::from_utf8(out.to_vec()).unwrap();
            let events: Vec<Value> = text
                .split("\n\n")
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let mut lines = b.lines();
                    let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
                    let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
                    serde_json::json!({"event": name, "data": serde_json::from_str::<Value>(data).unwrap()})
                })
                .collect();
            got.insert("client_events".into(), Value::Array(events));
        }
        if let Some(upstream) = case.get("upstream_json") {
            let upstream = serde_json::to_vec(upstream).unwrap();
            let body = match case.get("request") {
                Some(request) => ResponsesViaChat::json_for(
                    &upstream,
                    &serde_json::to_vec(request).unwrap(),
                    &model,
                ),
                None => ResponsesViaChat::json(&upstream, &model),
            }
            .unwrap();
            got.insert("client_json".into(), serde_json::from_slice(&body).unwrap());
        }
        all.insert(
            file.file_name().unwrap().to_string_lossy().into(),
            Value::Object(got),
        );
    }
    println!("RVC-BEGIN{}RVC-END", Value::Object(all));
}

/// Prints the CPU cost per chunk of translating a text stream against watching it natively.
#[test]
#[ignore = "a measurement, run by hand with --release"]
fn measure_cost_per_chunk() {
    use crate::protocol::{Protocol, Wire};
    let mut stream = String::new();
    for i in 0..20_000 {
        stream.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion.chunk\",\"created\":1764561600,\"model\":\"deepseek-chat\",\"system_fingerprint\":\"fp_1\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"word{i} \"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        ));
    }
    stream.push_str("data: {\"id\":\"chatcmpl-abc\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"chatcmpl-abc\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":20000}}\n\ndata: [DONE]\n\n");
    let bytes = stream.as_bytes();
    let native = std::time::Instant::now();
    let mut watch = Protocol::Chat.stream_watch(false);
    SseScanner::new().feed(bytes, |e| {
        watch.observe(&e, true);
    });
    let native = native.elapsed();
    let translated = std::time::Instant::now();
    let mut watch = Protocol::Chat.stream_watch(false);
    let mut translator = ResponsesViaChat::stream("client");
    let mut out = BytesMut::new();
    SseScanner::new().feed(bytes, |e| {
        watch.observe(&e, true);
        translator.event(&e, &mut out);
    });
    translator.finish(&mut out);
    let translated = translated.elapsed();
    println!(
        "{} input bytes, {} output bytes; native watch {:?} ({:.0} ns/chunk), translated {:?} ({:.0} ns/chunk)",
        bytes.len(),
        out.len(),
        native,
        native.as_nanos() as f64 / 20_000.0,
        translated,
        translated.as_nanos() as f64 / 20_000.0
    );
}
