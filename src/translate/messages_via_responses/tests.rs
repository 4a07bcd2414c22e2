use bytes::BytesMut;
use serde_json::{json, Value};

use super::*;
use crate::protocol::sse::SseScanner;
use crate::translate::golden;

#[test]
fn golden_cases() {
    let ran = golden::run_all::<MessagesViaResponses>("messages_via_responses");
    assert!(ran >= 25, "only {ran} golden cases");
}

fn target(codex: bool) -> Target {
    Target {
        upstream_model: "gpt-5.1".to_owned(),
        codex_backend: codex,
    }
}

fn upstream_body(request: &Value, codex: bool) -> Value {
    let translated =
        MessagesViaResponses::request(request.to_string().as_bytes(), &target(codex)).unwrap();
    serde_json::from_slice(&translated.body).unwrap()
}

/// Feeds Responses events (name, data) through a translator; returns the client's events.
fn run_stream(events: &[(&str, Value)]) -> Vec<(String, Value)> {
    let mut translator = MessagesViaResponses::stream("claude-sonnet-4-5");
    let mut out = BytesMut::new();
    let mut scanner = SseScanner::new();
    for (name, data) in events {
        let frame = format!("event: {name}\ndata: {data}\n\n");
        scanner.feed(frame.as_bytes(), |e| translator.event(&e, &mut out));
    }
    translator.finish(&mut out);
    let mut client = Vec::new();
    SseScanner::new().feed(&out, |e| {
        let name = String::from_utf8(e.name().to_vec()).unwrap();
        client.push((name, serde_json::from_slice(&e.data()).unwrap()));
    });
    client
}

/// The assistant message an Anthropic SDK builds from a stream's events.
fn accumulate(events: &[(String, Value)]) -> Value {
    let mut content: Vec<Value> = Vec::new();
    let mut json_text: Vec<String> = Vec::new();
    for (name, data) in events {
        match name.as_str() {
            "content_block_start" => {
                content.push(data["content_block"].clone());
                json_text.push(String::new());
            }
            "content_block_delta" => {
                let i = data["index"].as_u64().unwrap() as usize;
                let delta = &data["delta"];
                let block = &mut content[i];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        let text = block["text"].as_str().unwrap().to_owned();
                        block["text"] = json!(text + delta["text"].as_str().unwrap());
                    }
                    "thinking_delta" => {
                        let text = block["thinking"].as_str().unwrap().to_owned();
                        block["thinking"] = json!(text + delta["thinking"].as_str().unwrap());
                    }
                    "signature_delta" => block["signature"] = delta["signature"].clone(),
                    "input_json_delta" => {
                        json_text[i].push_str(delta["partial_json"].as_str().unwrap())
                    }
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let i = data["index"].as_u64().unwrap() as usize;
                if content[i]["type"] == "tool_use" {
                    content[i]["input"] = serde_json::from_str(&json_text[i]).unwrap();
                }
            }
            _ => {}
        }
    }
    json!({"role": "assistant", "content": content})
}

/// A tool-calling turn streamed to the client comes back in its next request as the same
/// upstream items: the call ids pair with the function_call_outputs, the reasoning's encrypted
/// content returns from the thinking block's signature.
#[test]
fn a_streamed_tool_turn_round_trips_into_the_next_request() {
    let events = [
        ("response.created", json!({"response": {"id": "resp_1"}})),
        (
            "response.output_item.added",
            json!({"output_index": 0, "item": {"type": "reasoning", "summary": []}}),
        ),
        (
            "response.reasoning_summary_text.delta",
            json!({"output_index": 0, "summary_index": 0, "delta": "Look first."}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 0, "item": {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Look first."}], "encrypted_content": "gAAAAEnc"}}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 1, "item": {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": ""}}),
        ),
        (
            "response.function_call_arguments.delta",
            json!({"output_index": 1, "delta": "{\"path\":\"/tmp\"}"}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 1, "item": {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{\"path\":\"/tmp\"}"}}),
        ),
        (
            "response.output_item.added",
            json!({"output_index": 2, "item": {"type": "function_call", "call_id": "call_2", "name": "ls", "arguments": ""}}),
        ),
        (
            "response.output_item.done",
            json!({"output_index": 2, "item": {"type": "function_call", "call_id": "call_2", "name": "ls", "arguments": "{\"path\":\"/\"}"}}),
        ),
        (
            "response.completed",
            json!({"response": {"id": "resp_1", "status": "completed", "usage": {"input_tokens": 5, "output_tokens": 9}}}),
        ),
    ];
    let client = run_stream(&events);
    let assistant = accumulate(&client);
    let next = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 100,
        "thinking": {"type": "enabled", "budget_tokens": 20000},
        "messages": [
            {"role": "user", "content": "list"},
            assistant,
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "a b"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "etc"}
            ]}
        ]
    });
    let body = upstream_body(&next, true);
    assert_eq!(
        body["input"],
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list"}]},
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "Look first."}], "encrypted_content": "gAAAAEnc"},
            {"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{\"path\":\"/tmp\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "ls", "arguments": "{\"path\":\"/\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a b"},
            {"type": "function_call_output", "call_id": "call_2", "output": "etc"}
        ])
    );
    assert_eq!(body["reasoning"]["effort"], "high");
}

/// Arguments handed to the client as a string (cut short by a max-tokens stop) go back upstream
/// as the same text, not as a JSON string of it.
#[test]
fn tool_input_given_as_a_string_returns_as_the_same_arguments() {
    let request = json!({"model": "m", "messages": [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_Q", "name": "w", "input": "{\"path\":\"a"}]}
    ]});
    assert_eq!(
        upstream_body(&request, false)["input"][0]["arguments"],
        "{\"path\":\"a"
    );
}

#[test]
fn budgets_map_to_efforts_at_claude_codes_steps() {
    assert_eq!(request::effort_for_budget(1_024), "low");
    assert_eq!(request::effort_for_budget(4_000), "low");
    assert_eq!(request::effort_for_budget(10_000), "medium");
    assert_eq!(request::effort_for_budget(31_999), "high");
}

#[test]
fn the_codex_backend_always_streams_and_others_follow_the_client() {
    let request =
        json!({"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]});
    let bytes = request.to_string();
    let codex = MessagesViaResponses::request(bytes.as_bytes(), &target(true)).unwrap();
    assert!(codex.upstream_stream);
    let api = MessagesViaResponses::request(bytes.as_bytes(), &target(false)).unwrap();
    assert!(!api.upstream_stream);
    assert_eq!(upstream_body(&request, false)["max_output_tokens"], 16);
}

#[test]
fn malformed_requests_are_refused_naming_the_field() {
    let refuse = |body: Value| {
        MessagesViaResponses::request(body.to_string().as_bytes(), &target(false))
            .unwrap_err()
            .field
    };
    assert_eq!(refuse(json!({"model": "m"})), "messages");
    assert_eq!(
        refuse(json!({"messages": [{"role": "tool", "content": "x"}]})),
        "messages[0].role"
    );
    assert_eq!(
        refuse(json!({"messages": [], "tool_choice": {"type": "sometimes"}})),
        "tool_choice.type"
    );
    assert_eq!(
        refuse(json!({"messages": [], "thinking": {"type": "enabled"}})),
        "thinking.budget_tokens"
    );
    assert_eq!(
        refuse(json!({"messages": [], "mcp_servers": [{"url": "https://x"}]})),
        "mcp_servers"
    );
    assert_eq!(
        refuse(json!({"messages": [], "stop_sequences": ["x".repeat(300)]})),
        "stop_sequences[0]"
    );
    assert!(MessagesViaResponses::request(b"[1]", &target(false)).is_err());
}

/// After the terminal event, nothing more is written: not by later events, nor by finish or
/// fail (the client's stream is already closed).
#[test]
fn nothing_follows_the_end_of_the_message() {
    let mut translator = MessagesViaResponses::stream("c");
    let mut out = BytesMut::new();
    SseScanner::new().feed(
        b"event: response.completed\ndata: {\"response\":{\"status\":\"completed\"}}\n\n",
        |e| translator.event(&e, &mut out),
    );
    let closed = out.len();
    assert!(String::from_utf8_lossy(&out).contains("message_stop"));
    SseScanner::new().feed(
        b"event: response.output_text.delta\ndata: {\"delta\":\"late\"}\n\n",
        |e| translator.event(&e, &mut out),
    );
    translator.finish(&mut out);
    translator.fail("stream_stalled", "x", &mut out);
    assert_eq!(out.len(), closed);
}

#[test]
fn a_failed_non_stream_answer_or_garbage_is_an_error() {
    assert!(MessagesViaResponses::json(b"not json", "c").is_err());
    assert!(MessagesViaResponses::json(
        br#"{"id":"r","status":"failed","output":[],"error":{"code":"server_error"}}"#,
        "c"
    )
    .is_err());
}

#[test]
fn null_lists_in_an_item_read_as_empty() {
    let answer = MessagesViaResponses::json(
        br#"{"id":"resp_1","status":"completed","output":[{"type":"reasoning","summary":null,"content":null,"encrypted_content":"e"},{"type":"message","content":[{"type":"output_text","text":"hi"}]}]}"#,
        "c",
    )
    .unwrap();
    let answer: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(answer["content"][0]["signature"], "oai-reasoning:e");
    assert_eq!(answer["content"][1]["text"], "hi");
}

/// Texts go upstream as the client wrote them: escapes are not decoded and written again, and a
/// tool call's input keeps its key order and spacing (the conversation's prefix stays the same,
/// which the upstream's prompt cache matches byte for byte).
#[test]
fn texts_and_tool_inputs_reach_the_upstream_as_written() {
    let body = br#"{"system":[{"type":"text","text":"caf\u00e9"},{"type":"text","text":"two"}],"messages":[{"role":"user","content":[{"type":"text","text":"na\u00efve \"q\""}]},{"role":"assistant","content":[{"type":"tool_use","id":"call_1","name":"Read","input":{"path": "a", "b":1}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_1","content":"line\u000a2","is_error":true}]}]}"#;
    let translated = MessagesViaResponses::request(body, &target(false)).unwrap();
    let text = std::str::from_utf8(&translated.body).unwrap();
    for written in [
        r#""instructions":"caf\u00e9\n\ntwo""#,
        r#""text":"na\u00efve \"q\"""#,
        r#""arguments":"{\"path\": \"a\", \"b\":1}""#,
        r#""output":"Error: line\u000a2""#,
    ] {
        assert!(text.contains(written), "{written} in {text}");
    }
    // And they read back as the same texts.
    let value: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(value["instructions"], "café\n\ntwo");
    assert_eq!(value["input"][2]["output"], "Error: line\n2");
}

/// A body of the wrong shape is refused naming the field serde stopped at, with what it expected.
#[test]
fn a_field_of_the_wrong_type_is_named_with_what_was_expected() {
    let refusal = MessagesViaResponses::request(
        br#"{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":7}]}]}"#,
        &target(false),
    )
    .unwrap_err();
    assert_eq!(refusal.field, "messages[0].content[1].type");
    assert!(refusal.message.contains("expected"), "{}", refusal.message);
    let not_json = MessagesViaResponses::request(b"{\"messages\":[", &target(false)).unwrap_err();
    assert_eq!(not_json.field, "");
    assert!(
        not_json.message.contains("not valid JSON"),
        "{}",
        not_json.message
    );
}
