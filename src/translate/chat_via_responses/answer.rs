//! The answer half of [`super`]: a Responses stream (event by event) or whole `response` → the
//! Chat Completions chunks or `chat.completion`.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::Value;

use crate::protocol::sse::SseEvent;
use crate::translate::chat_answer::{ChatCompletion, ChatStream, ChatUsage};
use crate::translate::{unreadable, StreamTranslator};

/// A whole upstream answer → `chat.completion`.
pub(super) fn completion(upstream: &[u8], client_model: &str) -> Result<Bytes, String> {
    // Through `Value` first: serde would take a JSON list for this all-optional struct.
    let response = match serde_json::from_slice::<Value>(upstream) {
        Ok(value @ Value::Object(_)) => serde_json::from_value::<WireResponse>(value).ok(),
        _ => None,
    }
    .ok_or("the upstream answer is not a Responses `response` object")?;
    if response.status.as_deref() == Some("failed") {
        let error = response.error.unwrap_or_default();
        return Err(format!(
            "the upstream response failed: {}: {}",
            code_text(error.code),
            error.message.unwrap_or_default()
        ));
    }
    let mut content = String::new();
    let mut refusal = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for item in &response.output {
        match item["type"].as_str() {
            Some("message") => {
                for part in item["content"].as_array().into_iter().flatten() {
                    match part["type"].as_str() {
                        Some("output_text") => {
                            content.push_str(part["text"].as_str().unwrap_or(""))
                        }
                        Some("refusal") => refusal.push_str(part["refusal"].as_str().unwrap_or("")),
                        _ => {}
                    }
                }
            }
            Some("reasoning") => {
                for part in item["summary"].as_array().into_iter().flatten() {
                    reasoning.push_str(part["text"].as_str().unwrap_or(""));
                }
            }
            Some("function_call") => tool_calls.push((
                item["call_id"].as_str().unwrap_or("").to_owned(),
                item["name"].as_str().unwrap_or("").to_owned(),
                item["arguments"].as_str().unwrap_or("").to_owned(),
            )),
            _ => {}
        }
    }
    let finish_reason = finish_reason(
        !tool_calls.is_empty(),
        response
            .incomplete_details
            .as_ref()
            .and_then(|d| d.reason.as_deref()),
    );
    let id = response.id.unwrap_or_default();
    let answer = ChatCompletion {
        id: &id,
        created: response.created_at.unwrap_or(0),
        model: client_model,
        content: (!content.is_empty() || (refusal.is_empty() && tool_calls.is_empty()))
            .then_some(content),
        refusal: (!refusal.is_empty()).then_some(refusal),
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls,
        finish_reason,
        usage: response.usage.map(chat_usage).unwrap_or_default(),
    };
    serde_json::to_vec(&answer.to_json())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn finish_reason(tool_calls: bool, incomplete: Option<&str>) -> &'static str {
    match incomplete {
        Some("max_output_tokens") => "length",
        Some("content_filter") => "content_filter",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}

#[derive(Deserialize, Default)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created_at: Option<u64>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    output: Vec<Value>,
    /// Read leniently: a `usage` of the wrong types counts as zeros, not as a broken answer.
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    incomplete_details: Option<IncompleteDetails>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize, Default)]
struct IncompleteDetails {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireError {
    /// A string, or a number from some upstreams.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize, Default)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize, Default)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

fn chat_usage(usage: Value) -> ChatUsage {
    serde_json::from_value::<WireUsage>(usage)
        .map(WireUsage::into_chat)
        .unwrap_or_default()
}

/// An error `code` as text, whether the upstream sent a string or a number.
fn code_text(code: Option<Value>) -> String {
    match code {
        Some(Value::String(s)) => s,
        Some(other) if !other.is_null() => other.to_string(),
        _ => "upstream_error".to_owned(),
    }
}

impl WireUsage {
    fn into_chat(self) -> ChatUsage {
        ChatUsage {
            prompt: self.input_tokens,
            cached: self.input_tokens_details.map_or(0, |d| d.cached_tokens),
            completion: self.output_tokens,
            reasoning: self.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
        }
    }
}

/// The fields of the stream events this translator reads.
#[derive(Deserialize, Default)]
struct WireEvent {
    #[serde(default)]
    response: Option<WireResponse>,
    #[serde(default)]
    output_index: Option<u64>,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    item: Option<Value>,
    /// A bare `error` event's fields.
    #[serde(default)]
    code: Option<Value>,
    #[serde(default)]
    message: Option<String>,
}

/// Responses stream → Chat chunks.
pub(super) struct Stream {
    chat: ChatStream,
    /// Output indexes of message items whose text arrived as deltas (their `done` adds nothing).
    streamed_text: Vec<u64>,
    /// Output indexes of function calls whose arguments arrived as deltas.
    streamed_arguments: Vec<u64>,
    /// An upstream event could not be read ([`StreamTranslator::malformed`]).
    malformed: Option<String>,
}

impl Stream {
    pub(super) fn new(client_model: &str, include_usage: bool) -> Self {
        Self {
            chat: ChatStream::new(client_model, include_usage),
            streamed_text: Vec::new(),
            streamed_arguments: Vec::new(),
            malformed: None,
        }
    }

    fn function_call_start(&mut self, index: u64, item: &Value, out: &mut BytesMut) {
        let call_id = item["call_id"].as_str().unwrap_or("");
        let name = item["name"].as_str().unwrap_or("");
        self.chat.tool_call_start(index, call_id, name, out);
    }

    /// `response.output_item.done`: fills in what an upstream sent only whole (no deltas).
    fn item_done(&mut self, index: u64, item: &Value, out: &mut BytesMut) {
        match item["type"].as_str() {
            Some("function_call") => {
                self.function_call_start(index, item, out);
                if !self.streamed_arguments.contains(&index) {
                    let arguments = item["arguments"].as_str().unwrap_or("");
                    self.chat.tool_call_arguments(index, arguments, out);
                }
            }
            Some("message") if !self.streamed_text.contains(&index) => {
                for part in item["content"].as_array().into_iter().flatten() {
                    match part["type"].as_str() {
                        Some("output_text") => {
                            self.chat
                                .delta("content", part["text"].as_str().unwrap_or(""), out)
                        }
                        Some("refusal") => {
                            self.chat
                                .delta("refusal", part["refusal"].as_str().unwrap_or(""), out)
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

fn mark(indexes: &mut Vec<u64>, index: u64) {
    if !indexes.contains(&index) {
        indexes.push(index);
    }
}

impl StreamTranslator for Stream {
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut) {
        if self.chat.closed() || self.malformed.is_some() {
            return;
        }
        let name = event.name();
        let data = event.data();
        let wire = match serde_json::from_slice::<WireEvent>(&data) {
            Ok(wire) => wire,
            Err(e) => {
                let acted_on = matches!(
                    name,
                    b"response.created"
                        | b"response.in_progress"
                        | b"response.output_text.delta"
                        | b"response.refusal.delta"
                        | b"response.reasoning_summary_text.delta"
                        | b"response.reasoning_text.delta"
                        | b"response.output_item.added"
                        | b"response.function_call_arguments.delta"
                        | b"response.output_item.done"
                        | b"response.completed"
                        | b"response.incomplete"
                        | b"response.failed"
                        | b"error"
                );
                self.malformed = unreadable(name, &data, &e, acted_on);
                return;
            }
        };
        let index = wire.output_index.unwrap_or(0);
        match name {
            b"response.created" | b"response.in_progress" => {
                if let Some(response) = wire.response {
                    if let Some(id) = response.id {
                        self.chat.id = id;
                    }
                    if let Some(created) = response.created_at {
                        self.chat.created = created;
                    }
                }
            }
            b"response.output_text.delta" => {
                mark(&mut self.streamed_text, index);
                self.chat
                    .delta("content", wire.delta.as_deref().unwrap_or(""), out);
            }
            b"response.refusal.delta" => {
                mark(&mut self.streamed_text, index);
                self.chat
                    .delta("refusal", wire.delta.as_deref().unwrap_or(""), out);
            }
            b"response.reasoning_summary_text.delta" | b"response.reasoning_text.delta" => {
                self.chat.delta(
                    "reasoning_content",
                    wire.delta.as_deref().unwrap_or(""),
                    out,
                );
            }
            b"response.output_item.added" => {
                if let Some(item) = wire.item.filter(|i| i["type"] == "function_call") {
                    self.function_call_start(index, &item, out);
                }
            }
            b"response.function_call_arguments.delta" => {
                mark(&mut self.streamed_arguments, index);
                self.chat
                    .tool_call_arguments(index, wire.delta.as_deref().unwrap_or(""), out);
            }
            b"response.output_item.done" => {
                if let Some(item) = wire.item {
                    self.item_done(index, &item, out);
                }
            }
            b"response.completed" | b"response.incomplete" => {
                let response = wire.response.unwrap_or_default();
                let reason = finish_reason(
                    self.chat.has_tool_calls(),
                    response
                        .incomplete_details
                        .as_ref()
                        .and_then(|d| d.reason.as_deref()),
                );
                let usage = response.usage.map(chat_usage);
                self.chat.end(reason, usage, out);
            }
            b"response.failed" => {
                let error = wire.response.and_then(|r| r.error).unwrap_or_default();
                self.chat.error(
                    &code_text(error.code),
                    error
                        .message
                        .as_deref()
                        .unwrap_or("the upstream response failed"),
                    out,
                );
            }
            b"error" => {
                let code = code_text(wire.code);
                let message = wire
                    .message
                    .unwrap_or_else(|| "the upstream failed".to_owned());
                self.chat.error(&code, &message, out);
            }
            _ => {}
        }
    }

    fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }

    fn has_output(&self) -> bool {
        self.chat.has_output()
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.chat.error(
            "upstream_incomplete",
            "the upstream stream ended before its response was complete",
            out,
        );
    }

    fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        self.chat.error(code, message, out);
    }
}
