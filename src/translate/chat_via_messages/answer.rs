//! The answer half of [`super`]: a Messages stream (event by event) or whole `message` → the
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
    let message = match serde_json::from_slice::<Value>(upstream) {
        Ok(value @ Value::Object(_)) => serde_json::from_value::<WireMessage>(value).ok(),
        _ => None,
    }
    .ok_or("the upstream answer is not a Messages `message` object")?;
    if message.kind.as_deref() == Some("error") {
        return Err("the upstream answered with an error object".to_owned());
    }
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in &message.content {
        match block["type"].as_str() {
            Some("text") => content.push_str(block["text"].as_str().unwrap_or("")),
            Some("thinking") => reasoning.push_str(block["thinking"].as_str().unwrap_or("")),
            Some("tool_use") => tool_calls.push((
                block["id"].as_str().unwrap_or("").to_owned(),
                block["name"].as_str().unwrap_or("").to_owned(),
                block
                    .get("input")
                    .map_or_else(|| "{}".to_owned(), Value::to_string),
            )),
            _ => {}
        }
    }
    let finish_reason = finish_reason(message.stop_reason.as_deref(), !tool_calls.is_empty());
    let id = message.id.unwrap_or_default();
    let answer = ChatCompletion {
        id: &id,
        created: 0,
        model: client_model,
        content: (!content.is_empty() || tool_calls.is_empty()).then_some(content),
        refusal: None,
        reasoning: (!reasoning.is_empty()).then_some(reasoning),
        tool_calls,
        finish_reason,
        usage: message
            .usage
            .map(|u| Usage::default().merged(u).to_chat())
            .unwrap_or_default(),
    };
    serde_json::to_vec(&answer.to_json())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

fn finish_reason(stop_reason: Option<&str>, tool_calls: bool) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some("end_turn" | "stop_sequence" | "pause_turn") => "stop",
        _ if tool_calls => "tool_calls",
        _ => "stop",
    }
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Value>,
}

/// Anthropic's counts; later reports replace earlier ones where given.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    input: u64,
    cache_read: u64,
    cache_creation: u64,
    output: u64,
}

impl Usage {
    fn merged(mut self, usage: Value) -> Self {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(n) = count("input_tokens") {
            self.input = n;
        }
        if let Some(n) = count("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = count("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
        if let Some(n) = count("output_tokens") {
            self.output = n;
        }
        self
    }

    fn to_chat(self) -> ChatUsage {
        ChatUsage {
            prompt: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            cached: self.cache_read,
            completion: self.output,
            reasoning: 0,
        }
    }
}

/// The fields of the stream events this translator reads.
#[derive(Deserialize, Default)]
struct WireEvent {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    content_block: Option<Value>,
    #[serde(default)]
    delta: Option<Value>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

/// Messages stream → Chat chunks.
pub(super) struct Stream {
    chat: ChatStream,
    usage: Usage,
    stop_reason: Option<String>,
    /// An upstream event could not be read ([`StreamTranslator::malformed`]).
    malformed: Option<String>,
}

impl Stream {
    pub(super) fn new(client_model: &str, include_usage: bool) -> Self {
        Self {
            chat: ChatStream::new(client_model, include_usage),
            usage: Usage::default(),
            stop_reason: None,
            malformed: None,
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        let reason = finish_reason(self.stop_reason.as_deref(), self.chat.has_tool_calls());
        self.chat.end(reason, Some(self.usage.to_chat()), out);
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
                    b"message_start"
                        | b"content_block_start"
                        | b"content_block_delta"
                        | b"message_delta"
                        | b"message_stop"
                        | b"error"
                );
                self.malformed = unreadable(name, &data, &e, acted_on);
                return;
            }
        };
        let index = wire.index.unwrap_or(0);
        match name {
            b"message_start" => {
                if let Some(message) = wire.message {
                    if let Some(id) = message.id {
                        self.chat.id = id;
                    }
                    if let Some(usage) = message.usage {
                        self.usage = self.usage.merged(usage);
                    }
                }
            }
            b"content_block_start" => {
                let block = wire.content_block.unwrap_or_default();
                match block["type"].as_str() {
                    Some("tool_use") => {
                        let id = block["id"].as_str().unwrap_or("");
                        let name = block["name"].as_str().unwrap_or("");
                        self.chat.tool_call_start(index, id, name, out);
                    }
                    Some("text") => {
                        self.chat
                            .delta("content", block["text"].as_str().unwrap_or(""), out)
                    }
                    Some("thinking") => self.chat.delta(
                        "reasoning_content",
                        block["thinking"].as_str().unwrap_or(""),
                        out,
                    ),
                    _ => {}
                }
            }
            b"content_block_delta" => {
                let delta = wire.delta.unwrap_or_default();
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        self.chat
                            .delta("content", delta["text"].as_str().unwrap_or(""), out)
                    }
                    Some("thinking_delta") => self.chat.delta(
                        "reasoning_content",
                        delta["thinking"].as_str().unwrap_or(""),
                        out,
                    ),
                    Some("input_json_delta") => self.chat.tool_call_arguments(
                        index,
                        delta["partial_json"].as_str().unwrap_or(""),
                        out,
                    ),
                    _ => {}
                }
            }
            b"message_delta" => {
                if let Some(reason) = wire.delta.as_ref().and_then(|d| d["stop_reason"].as_str()) {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(usage) = wire.usage {
                    self.usage = self.usage.merged(usage);
                }
            }
            b"message_stop" => self.end(out),
            b"error" => {
                let error = wire.error.unwrap_or_default();
                self.chat.error(
                    error["type"].as_str().unwrap_or("api_error"),
                    error["message"].as_str().unwrap_or("the upstream failed"),
                    out,
                );
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
        if self.stop_reason.is_some() {
            // The answer was complete (`message_delta` carried its stop reason); only
            // `message_stop` went missing.
            self.end(out);
        } else {
            self.chat.error(
                "upstream_incomplete",
                "the upstream stream ended before its message was complete",
                out,
            );
        }
    }

    fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        self.chat.error(code, message, out);
    }
}
