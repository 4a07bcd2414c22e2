//! Function calls (issue 16): with [`Behavior::tool_calls`] (`calls=N`), a request that
//! declares tools and does not end with a tool's result is answered with N calls of its tools
//! (the first, second, … cycling), in the API's own form, stream or JSON:
//!
//! | API | stream | JSON |
//! | --- | --- | --- |
//! | Responses | `response.output_item.added` (`function_call`), `response.function_call_arguments.delta`/`.done`, `response.output_item.done`, `response.completed` | `output[]` of `function_call` items |
//! | Chat Completions | `delta.tool_calls[]` by `index` (id and name first, then the arguments), `finish_reason: "tool_calls"` | `message.tool_calls[]`, `finish_reason: "tool_calls"` |
//! | Anthropic Messages | `content_block_start` (`tool_use`), `input_json_delta`s, `content_block_stop`, `message_delta` with `stop_reason: "tool_use"` | `content[]` of `tool_use` blocks, `stop_reason: "tool_use"` |
//!
//! Call `i` has the arguments `{"query":"mock <i>"}` and the id `call_mock<i>` (`toolu_mock<i>`
//! on Anthropic). A request whose last turn carries a tool's result (`function_call_output`, a
//! `tool` message, a `tool_result` block) gets the ordinary text answer, so a client completes
//! a round trip.

use serde_json::{json, Value};

use crate::behavior::Behavior;
use crate::ids;
use crate::reply::{json_reply, to_json, Reply};
use crate::sse::SseWriter;

/// Which API's form.
#[derive(Clone, Copy)]
pub(crate) enum Api {
    Responses,
    Chat,
    Messages,
}

/// The calls to answer, if this request gets calls: the names of the tools called, in order.
pub(crate) fn calls(api: Api, body: &[u8], behavior: &Behavior) -> Option<Vec<String>> {
    let n = behavior.tool_calls.filter(|n| *n > 0)?;
    let request: Value = serde_json::from_slice(body).ok()?;
    let tools = request.get("tools")?.as_array()?;
    let names: Vec<String> = tools
        .iter()
        .filter_map(|t| match api {
            Api::Responses => t.get("name"),
            Api::Chat => t.pointer("/function/name"),
            Api::Messages => t.get("name"),
        })
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    if names.is_empty() || ends_with_result(api, &request) {
        return None;
    }
    Some((0..n).map(|i| names[i % names.len()].clone()).collect())
}

fn ends_with_result(api: Api, request: &Value) -> bool {
    match api {
        Api::Responses => request
            .get("input")
            .and_then(Value::as_array)
            .and_then(|items| items.last())
            .and_then(|item| item.get("type"))
            .and_then(Value::as_str)
            .is_some_and(|t| t == "function_call_output"),
        Api::Chat => request
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("role"))
            .and_then(Value::as_str)
            .is_some_and(|r| r == "tool"),
        Api::Messages => request
            .get("messages")
            .and_then(Value::as_array)
            .and_then(|m| m.last())
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            }),
    }
}

fn arguments(i: usize) -> String {
    format!("{{\"query\":\"mock {i}\"}}")
}

fn call_id(api: Api, i: usize) -> String {
    match api {
        Api::Messages => format!("toolu_mock{i}"),
        Api::Responses | Api::Chat => format!("call_mock{i}"),
    }
}

/// The answer carrying `names`' calls.
pub(crate) fn answer(
    api: Api,
    model: &str,
    stream: bool,
    names: &[String],
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    match (api, stream) {
        (Api::Responses, true) => responses_stream(model, names, behavior),
        (Api::Responses, false) => json(&responses_object(model, names, behavior), behavior),
        (Api::Chat, true) => chat_stream(model, names, behavior),
        (Api::Chat, false) => json(&chat_object(model, names, behavior), behavior),
        (Api::Messages, true) => messages_stream(model, names, behavior),
        (Api::Messages, false) => json(&messages_object(model, names, behavior), behavior),
    }
}

fn json(value: &Value, behavior: &Behavior) -> Result<Reply, serde_json::Error> {
    Ok(json_reply(to_json(value, 1024)?, behavior))
}

// === Responses ===

fn function_call(i: usize, name: &str, status: &str, arguments: &str) -> Value {
    json!({
        "id": format!("fc_mock{i}"),
        "type": "function_call",
        "status": status,
        "call_id": call_id(Api::Responses, i),
        "name": name,
        "arguments": arguments,
    })
}

fn responses_usage(behavior: &Behavior) -> Value {
    let u = behavior.usage_or_default();
    json!({
        "input_tokens": u.input,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": u.reasoning},
        "total_tokens": u.input + u.output,
    })
}

fn responses_object(model: &str, names: &[String], behavior: &Behavior) -> Value {
    let output: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| function_call(i, name, "completed", &arguments(i)))
        .collect();
    json!({
        "id": ids::fresh("resp_"),
        "object": "response",
        "created_at": ids::now_unix(),
        "status": "completed",
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "store": false,
        "error": null,
        "incomplete_details": null,
        "usage": responses_usage(behavior),
    })
}

fn responses_stream(
    model: &str,
    names: &[String],
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let mut sse = SseWriter::with_capacity(8 + 5 * names.len(), 4096);
    let mut seq = 0u64;
    let mut emit = |sse: &mut SseWriter, kind: &str, mut data: Value| {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(seq);
        seq += 1;
        sse.event(kind, &data)
    };
    let done = responses_object(model, names, behavior);
    let mut started = done.clone();
    started["status"] = json!("in_progress");
    started["output"] = json!([]);
    started["usage"] = Value::Null;
    emit(&mut sse, "response.created", json!({"response": started}))?;
    emit(
        &mut sse,
        "response.in_progress",
        json!({"response": started}),
    )?;
    for (i, name) in names.iter().enumerate() {
        let args = arguments(i);
        let item_id = format!("fc_mock{i}");
        emit(
            &mut sse,
            "response.output_item.added",
            json!({"output_index": i, "item": function_call(i, name, "in_progress", "")}),
        )?;
        let (first, second) = args.split_at(args.len() / 2);
        for delta in [first, second] {
            emit(
                &mut sse,
                "response.function_call_arguments.delta",
                json!({"item_id": item_id, "output_index": i, "delta": delta}),
            )?;
        }
        emit(
            &mut sse,
            "response.function_call_arguments.done",
            json!({"item_id": item_id, "output_index": i, "arguments": args}),
        )?;
        emit(
            &mut sse,
            "response.output_item.done",
            json!({"output_index": i, "item": function_call(i, name, "completed", &args)}),
        )?;
    }
    emit(&mut sse, "response.completed", json!({"response": done}))?;
    Ok(sse.into_reply(behavior))
}

// === Chat Completions ===

fn chat_usage(behavior: &Behavior) -> Value {
    let u = behavior.usage_or_default();
    json!({
        "prompt_tokens": u.input,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cached},
        "completion_tokens_details": {"reasoning_tokens": u.reasoning},
    })
}

fn chat_object(model: &str, names: &[String], behavior: &Behavior) -> Value {
    let calls: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({
                "id": call_id(Api::Chat, i),
                "type": "function",
                "function": {"name": name, "arguments": arguments(i)},
            })
        })
        .collect();
    json!({
        "id": ids::fresh("chatcmpl-"),
        "object": "chat.completion",
        "created": ids::now_unix(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": calls},
            "finish_reason": "tool_calls",
        }],
        "usage": chat_usage(behavior),
    })
}

fn chat_stream(
    model: &str,
    names: &[String],
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let id = ids::fresh("chatcmpl-");
    let created = ids::now_unix();
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        })
    };
    let mut sse = SseWriter::with_capacity(4 + 2 * names.len(), 4096);
    sse.data(&chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    ))?;
    for (i, name) in names.iter().enumerate() {
        sse.data(&chunk(
            json!({"tool_calls": [{"index": i, "id": call_id(Api::Chat, i), "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ))?;
        sse.data(&chunk(
            json!({"tool_calls": [{"index": i, "function": {"arguments": arguments(i)}}]}),
            Value::Null,
        ))?;
    }
    sse.data(&chunk(json!({}), json!("tool_calls")))?;
    // The usage chunk is always sent here: a client that did not ask for it ignores an empty
    // `choices` list, and subrelay asks for it anyway.
    let mut usage = chunk(json!({}), Value::Null);
    usage["choices"] = json!([]);
    usage["usage"] = chat_usage(behavior);
    sse.data(&usage)?;
    sse.done();
    Ok(sse.into_reply(behavior))
}

// === Anthropic Messages ===

fn messages_object(model: &str, names: &[String], behavior: &Behavior) -> Value {
    let u = behavior.usage_or_default();
    let content: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"type": "tool_use", "id": call_id(Api::Messages, i), "name": name,
                "input": {"query": format!("mock {i}")}})
        })
        .collect();
    json!({
        "id": ids::fresh("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {
            "input_tokens": u.input,
            "cache_read_input_tokens": u.cached,
            "cache_creation_input_tokens": u.cache_creation,
            "output_tokens": u.output,
        },
    })
}

fn messages_stream(
    model: &str,
    names: &[String],
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let whole = messages_object(model, names, behavior);
    let mut start = whole.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    let mut sse = SseWriter::with_capacity(4 + 4 * names.len(), 4096);
    sse.event(
        "message_start",
        &json!({"type": "message_start", "message": start}),
    )?;
    for (i, name) in names.iter().enumerate() {
        sse.event(
            "content_block_start",
            &json!({"type": "content_block_start", "index": i, "content_block":
                {"type": "tool_use", "id": call_id(Api::Messages, i), "name": name, "input": {}}}),
        )?;
        let args = arguments(i);
        let (first, second) = args.split_at(args.len() / 2);
        for part in [first, second] {
            sse.event(
                "content_block_delta",
                &json!({"type": "content_block_delta", "index": i,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
            )?;
        }
        sse.event(
            "content_block_stop",
            &json!({"type": "content_block_stop", "index": i}),
        )?;
    }
    sse.event(
        "message_delta",
        &json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
            "usage": whole["usage"]}),
    )?;
    sse.event("message_stop", &json!({"type": "message_stop"}))?;
    Ok(sse.into_reply(behavior))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_calls(n: usize) -> Behavior {
        Behavior {
            tool_calls: Some(n),
            ..Behavior::default()
        }
    }

    #[test]
    fn calls_only_when_tools_are_declared_and_no_result_came_back() {
        let ask = br#"{"tools":[{"type":"function","name":"a"},{"type":"function","name":"b"}],
            "input":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            calls(Api::Responses, ask, &with_calls(3)),
            Some(vec!["a".into(), "b".into(), "a".into()])
        );
        assert_eq!(calls(Api::Responses, ask, &Behavior::default()), None);
        let answered = br#"{"tools":[{"type":"function","name":"a"}],
            "input":[{"type":"function_call_output","call_id":"c","output":"x"}]}"#;
        assert_eq!(calls(Api::Responses, answered, &with_calls(1)), None);
        let chat = br#"{"tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"tool","tool_call_id":"c","content":"x"}]}"#;
        assert_eq!(calls(Api::Chat, chat, &with_calls(1)), None);
        let messages = br#"{"tools":[{"name":"t","input_schema":{}}],
            "messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(
            calls(Api::Messages, messages, &with_calls(1)),
            Some(vec!["t".into()])
        );
        let no_tools = br#"{"messages":[{"role":"user","content":"hi"}]}"#;
        assert_eq!(calls(Api::Chat, no_tools, &with_calls(1)), None);
    }
}
