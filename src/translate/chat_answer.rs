//! The Chat Completions answer, written for the directions whose client speaks Chat
//! (`chat_via_responses`, `chat_via_messages`): `chat.completion.chunk` events with the role on
//! the first one, `tool_calls` deltas by index, one chunk with the `finish_reason`, the usage
//! chunk (`choices: []`) only when the client asked for it, `data: [DONE]`; and the in-stream
//! error chunk OpenAI-compatible servers send when a stream fails.

use bytes::BytesMut;
use serde_json::{json, Map, Value};

use crate::protocol::chat::error_chunk;

/// Token counts in Chat's terms: `prompt` includes the cached part.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChatUsage {
    pub prompt: u64,
    pub cached: u64,
    pub completion: u64,
    pub reasoning: u64,
}

impl ChatUsage {
    pub fn to_json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt.saturating_add(self.completion),
            "prompt_tokens_details": { "cached_tokens": self.cached },
            "completion_tokens_details": { "reasoning_tokens": self.reasoning },
        })
    }
}

/// One Chat stream being written.
pub struct ChatStream {
    pub id: String,
    pub created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    closed: bool,
    /// Upstream tool call keys (output index, block index) in order of appearance: a key's
    /// position is the `index` the client sees.
    tool_keys: Vec<u64>,
}

impl ChatStream {
    pub fn new(model: &str, include_usage: bool) -> Self {
        Self {
            id: "chatcmpl-subrelay".to_owned(),
            created: 0,
            model: model.to_owned(),
            include_usage,
            role_sent: false,
            closed: false,
            tool_keys: Vec::new(),
        }
    }

    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Whether a chunk with content (text, reasoning, a tool call) was written.
    pub fn has_output(&self) -> bool {
        self.role_sent
    }

    /// Whether any tool call was written (the finish reason is then `tool_calls`).
    pub fn has_tool_calls(&self) -> bool {
        !self.tool_keys.is_empty()
    }

    /// The client's `index` of an upstream tool call, if its header was written.
    pub fn tool_index(&self, key: u64) -> Option<usize> {
        self.tool_keys.iter().position(|k| *k == key)
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, out: &mut BytesMut) {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish_reason }],
        });
        write_data(&chunk.to_string(), out);
    }

    /// A content delta (`content`, `refusal`, `reasoning_content`, …); the first one carries the
    /// role. Empty text writes nothing.
    pub fn delta(&mut self, field: &str, text: &str, out: &mut BytesMut) {
        if self.closed || text.is_empty() {
            return;
        }
        let mut delta = Map::new();
        delta.insert(field.to_owned(), Value::String(text.to_owned()));
        self.send(delta, out);
    }

    fn send(&mut self, mut delta: Map<String, Value>, out: &mut BytesMut) {
        if !self.role_sent {
            self.role_sent = true;
            delta.insert("role".to_owned(), Value::String("assistant".to_owned()));
        }
        self.chunk(Value::Object(delta), None, out);
    }

    /// The first chunk of a tool call (its id, name and no arguments yet), once per `key`.
    pub fn tool_call_start(&mut self, key: u64, id: &str, name: &str, out: &mut BytesMut) {
        if self.closed || self.tool_index(key).is_some() {
            return;
        }
        self.tool_keys.push(key);
        let index = self.tool_keys.len() - 1;
        let mut delta = Map::new();
        delta.insert(
            "tool_calls".to_owned(),
            json!([{
                "index": index,
                "id": id,
                "type": "function",
                "function": { "name": name, "arguments": "" },
            }]),
        );
        self.send(delta, out);
    }

    /// More of a tool call's arguments (a fragment of JSON text).
    pub fn tool_call_arguments(&mut self, key: u64, fragment: &str, out: &mut BytesMut) {
        let Some(index) = self.tool_index(key) else {
            return;
        };
        if self.closed || fragment.is_empty() {
            return;
        }
        let mut delta = Map::new();
        delta.insert(
            "tool_calls".to_owned(),
            json!([{ "index": index, "function": { "arguments": fragment } }]),
        );
        self.send(delta, out);
    }

    /// The end of a successful answer: the finish reason, usage when asked, `[DONE]`.
    pub fn end(&mut self, finish_reason: &str, usage: Option<ChatUsage>, out: &mut BytesMut) {
        if self.closed {
            return;
        }
        self.closed = true;
        let delta = if self.role_sent {
            json!({})
        } else {
            // An answer with no output at all still tells the client who spoke.
            json!({ "role": "assistant", "content": "" })
        };
        self.chunk(delta, Some(finish_reason), out);
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage.unwrap_or_default().to_json(),
            });
            write_data(&chunk.to_string(), out);
        }
        write_data("[DONE]", out);
    }

    /// The in-stream error chunk (what the OpenAI SDKs raise); the stream ends there.
    pub fn error(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        if self.closed {
            return;
        }
        self.closed = true;
        out.extend_from_slice(&error_chunk(code, message));
    }
}

fn write_data(data: &str, out: &mut BytesMut) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Whether the client asked for the usage chunk (`stream_options.include_usage`).
pub fn include_usage(client_request: &[u8]) -> bool {
    crate::protocol::chat::inspect(client_request).is_ok_and(|r| r.include_usage)
}

/// The `chat.completion` object of a whole answer.
pub struct ChatCompletion<'a> {
    pub id: &'a str,
    pub created: u64,
    pub model: &'a str,
    pub content: Option<String>,
    pub refusal: Option<String>,
    pub reasoning: Option<String>,
    /// `(id, name, arguments)`.
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: &'a str,
    pub usage: ChatUsage,
}

impl ChatCompletion<'_> {
    pub fn to_json(&self) -> Value {
        let mut message = Map::new();
        message.insert("role".to_owned(), json!("assistant"));
        message.insert("content".to_owned(), json!(self.content));
        message.insert("refusal".to_owned(), json!(self.refusal));
        if let Some(reasoning) = &self.reasoning {
            message.insert("reasoning_content".to_owned(), json!(reasoning));
        }
        if !self.tool_calls.is_empty() {
            let calls: Vec<Value> = self
                .tool_calls
                .iter()
                .map(|(id, name, arguments)| {
                    json!({
                        "id": id,
                        "type": "function",
                        "function": { "name": name, "arguments": arguments },
                    })
                })
                .collect();
            message.insert("tool_calls".to_owned(), Value::Array(calls));
        }
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": Value::Object(message),
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage.to_json(),
        })
    }
}
