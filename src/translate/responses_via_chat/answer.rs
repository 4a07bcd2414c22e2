//! The parts of a Responses answer that the stream and the JSON answer share: output items,
//! the `response` object, usage, and what a Chat `finish_reason` means.

use bytes::Bytes;
use serde_json::{json, Value};

use super::names::CallNames;
use crate::protocol::{chat, TokenUsage};

/// How a Chat answer ended, in Responses terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    /// `response.incomplete` with `incomplete_details.reason`.
    Incomplete(&'static str),
}

impl Ending {
    /// `finish_reason` → ending. `stop`, `tool_calls` (and the legacy `function_call`) and
    /// reasons of other servers complete the response; `length` and `content_filter` are the
    /// two reasons the Responses API reports as incomplete.
    pub fn of(finish_reason: Option<&str>) -> Self {
        match finish_reason {
            Some("length") => Ending::Incomplete("max_output_tokens"),
            Some("content_filter") => Ending::Incomplete("content_filter"),
            _ => Ending::Completed,
        }
    }
}

/// The Responses `usage` object for the upstream's Chat usage.
pub fn usage_json(usage: &TokenUsage) -> Value {
    json!({
        "input_tokens": usage.input,
        "input_tokens_details": {"cached_tokens": usage.cached_input},
        "output_tokens": usage.output,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning},
        "total_tokens": usage.input.saturating_add(usage.output),
    })
}

/// What identifies one answer: the response id (from the upstream's `chatcmpl-…` id, so it
/// is stable for one answer without a clock or randomness), its time and the client's model.
#[derive(Debug, Clone)]
pub struct Identity {
    pub response_id: String,
    pub created_at: u64,
    pub model: String,
}

impl Identity {
    /// `upstream_id` and `created`: the upstream answer's `id` and `created`.
    pub fn new(upstream_id: Option<&str>, created: Option<u64>, model: &str) -> Self {
        Self {
            response_id: format!("resp_{}", upstream_id.unwrap_or("subrelay")),
            created_at: created.unwrap_or(0),
            model: model.to_owned(),
        }
    }

    /// The id of output item `index` (`msg_…`, `rs_…`, `fc_…`).
    pub fn item_id(&self, prefix: &str, index: usize) -> String {
        let base = self
            .response_id
            .strip_prefix("resp_")
            .unwrap_or(&self.response_id);
        format!("{prefix}_{base}_{index}")
    }

    /// The `response` object of an event or a JSON answer.
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Option<&TokenUsage>) -> Value {
        json!({
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage.map(usage_json),
            "error": null,
            "incomplete_details": null,
        })
    }
}

pub fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"id": id, "type": "reasoning", "summary": [{"type": "summary_text", "text": text}]})
}

/// One content part of an assistant message.
pub fn part(refusal: bool, text: &str) -> Value {
    if refusal {
        json!({"type": "refusal", "refusal": text})
    } else {
        json!({"type": "output_text", "text": text, "annotations": []})
    }
}

pub fn message_item(id: &str, status: &str, content: Vec<Value>) -> Value {
    json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
}

/// A `function_call` item for the Chat function `flat`: a namespaced tool's call names its
/// namespace and the tool's own name.
pub fn call_item(
    names: &CallNames,
    id: &str,
    status: &str,
    call_id: &str,
    flat: &str,
    arguments: &str,
) -> Value {
    let mut item = json!({
        "id": id, "type": "function_call", "status": status,
        "call_id": call_id, "name": flat, "arguments": arguments,
    });
    if let Some((namespace, name)) = names.resolve(flat) {
        item["namespace"] = Value::String(namespace.to_owned());
        item["name"] = Value::String(name.to_owned());
    }
    item
}

/// A `custom_tool_call` item: the call of a freeform tool, sent upstream as a function with one
/// `input` argument.
pub fn custom_call_item(id: &str, status: &str, call_id: &str, name: &str, input: &str) -> Value {
    json!({
        "id": id, "type": "custom_tool_call", "status": status,
        "call_id": call_id, "name": name, "input": input,
    })
}

/// The freeform input in a call's JSON arguments (`{"input": …}`); arguments of another shape
/// (a model that ignored the schema) are handed over whole, for the tool to reject.
pub fn custom_input(arguments: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Arguments {
        input: String,
    }
    serde_json::from_str::<Arguments>(arguments).map_or_else(|_| arguments.to_owned(), |a| a.input)
}

/// Reasoning text of a Chat message or delta: DeepSeek's `reasoning_content`, or `reasoning`
/// as OpenRouter, vLLM and Ollama name it.
pub fn reasoning_text(message: &Value) -> Option<&str> {
    ["reasoning_content", "reasoning"]
        .iter()
        .find_map(|key| message.get(*key).and_then(Value::as_str))
        .filter(|text| !text.is_empty())
}

/// A whole `chat.completion` → a Responses `response` object.
pub fn json_answer(
    upstream: &[u8],
    client_model: &str,
    names: &CallNames,
) -> Result<Bytes, String> {
    let completion: Value = serde_json::from_slice(upstream)
        .map_err(|e| format!("the Chat Completions answer is not JSON: {e}"))?;
    let choice = completion
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|choices| choices.first())
        .ok_or("the Chat Completions answer has no `choices`")?;
    let message = choice
        .get("message")
        .ok_or("the Chat Completions answer's choice has no `message`")?;
    let who = Identity::new(
        completion.get("id").and_then(Value::as_str),
        completion.get("created").and_then(Value::as_u64),
        client_model,
    );
    let mut output = Vec::new();
    if let Some(text) = reasoning_text(message) {
        output.push(reasoning_item(&who.item_id("rs", output.len()), text));
    }
    let mut content = Vec::new();
    if let Some(text) = message["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(part(false, text));
    }
    if let Some(text) = message["refusal"].as_str().filter(|t| !t.is_empty()) {
        content.push(part(true, text));
    }
    if !content.is_empty() {
        output.push(message_item(
            &who.item_id("msg", output.len()),
            "completed",
            content,
        ));
    }
    for (i, call) in message["tool_calls"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let index = output.len();
        let call_id = match call["id"].as_str() {
            Some(id) => id.to_owned(),
            None => who.item_id("call", i),
        };
        let name = call["function"]["name"].as_str().unwrap_or("");
        let arguments = call["function"]["arguments"].as_str().unwrap_or("");
        output.push(if names.is_custom(name) {
            let input = custom_input(arguments);
            custom_call_item(
                &who.item_id("ctc", index),
                "completed",
                &call_id,
                name,
                &input,
            )
        } else {
            call_item(
                names,
                &who.item_id("fc", index),
                "completed",
                &call_id,
                name,
                arguments,
            )
        });
    }
    let usage = chat::usage_of_json(upstream)?;
    let ending = Ending::of(choice["finish_reason"].as_str());
    let mut response = who.response(
        match ending {
            Ending::Completed => "completed",
            Ending::Incomplete(_) => "incomplete",
        },
        output,
        usage.as_ref(),
    );
    if let Ending::Incomplete(reason) = ending {
        response["incomplete_details"] = json!({ "reason": reason });
    }
    serde_json::to_vec(&response)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}
