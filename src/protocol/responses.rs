//! The OpenAI Responses API as Codex CLI and the OpenAI SDKs speak it: what the relay reads
//! from a request, how a body is normalised for the Codex backend, where usage sits, how a
//! stream is aggregated into one `response` object, and the `response.failed` event subrelay
//! writes when a stream cannot go on.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::body::TopLevel;
use super::sse::SseEvent;
use super::{EventRole, Reported, StreamWatch, Terminal, TokenUsage};

/// The routing facts of a request, read without building the whole body.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub model: String,
    pub stream: bool,
    pub prompt_cache_key: Option<String>,
}

/// Reads `model`, `stream` and `prompt_cache_key`; serde skips everything else unparsed.
pub fn inspect(body: &[u8]) -> Result<Inspected, String> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(borrow, default)]
        prompt_cache_key: Option<Cow<'a, str>>,
    }
    let probe: Probe<'_> = super::body::probe(body)?;
    Ok(Inspected {
        model: super::body::required_model(probe.model, "`model` is required")?,
        stream: probe.stream.unwrap_or(false),
        prompt_cache_key: probe.prompt_cache_key.map(Cow::into_owned),
    })
}

/// Instructions sent when a client sent none: Codex models refuse a request without them.
pub const DEFAULT_INSTRUCTIONS: &str = "You are a helpful assistant.";

/// Top-level edits of a request body. Every value not edited is copied byte for byte
/// (compaction items, encrypted reasoning, unknown fields).
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyEdits<'a> {
    /// The Codex backend's rules, `Some(compact)`:
    /// - `/responses`: `store:false` and `stream:true` (the backend only streams);
    /// - `/responses/compact`: no `store`, no `stream` (it answers plain JSON);
    /// - a string `input` becomes one user message; missing or empty `instructions` get a default.
    pub codex: Option<bool>,
    /// The upstream's name for the model (an account's `model_map`).
    pub model: Option<&'a str>,
    /// The upstream `prompt_cache_key` (derived per API key).
    pub prompt_cache_key: Option<&'a str>,
}

impl BodyEdits<'_> {
    pub fn is_empty(&self) -> bool {
        self.codex.is_none() && self.model.is_none() && self.prompt_cache_key.is_none()
    }
}

/// Applies `edits` to a JSON object body.
pub fn rewrite(body: &[u8], edits: &BodyEdits<'_>) -> Result<Bytes, String> {
    let mut fields = TopLevel::parse(body)?;
    if let Some(model) = edits.model {
        fields.set_str("model", model)?;
    }
    if let Some(key) = edits.prompt_cache_key {
        fields.set_str("prompt_cache_key", key)?;
    }
    if let Some(compact) = edits.codex {
        if compact {
            fields.remove("store");
            fields.remove("stream");
        } else {
            fields.set_json("store", "false".into())?;
            fields.set_json("stream", "true".into())?;
        }
        let wrapped = fields
            .get("input")
            .filter(|input| input.get().starts_with('"'))
            .map(|input| {
                format!(
                    r#"[{{"type":"message","role":"user","content":{}}}]"#,
                    input.get()
                )
            });
        if let Some(wrapped) = wrapped {
            fields.set_json("input", wrapped)?;
        }
        let needs_instructions = fields
            .get("instructions")
            .is_none_or(|v| matches!(v.get().trim(), "null" | "\"\""));
        if needs_instructions {
            fields.set_str("instructions", DEFAULT_INSTRUCTIONS)?;
        }
    }
    fields.to_bytes()
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    output_tokens_details: Option<OutputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    cached_tokens: u64,
}

#[derive(Deserialize)]
struct OutputDetails {
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<WireUsage> for TokenUsage {
    fn from(u: WireUsage) -> Self {
        TokenUsage {
            input: u.input_tokens,
            cached_input: u.input_tokens_details.map_or(0, |d| d.cached_tokens),
            cache_creation: 0,
            output: u.output_tokens,
            reasoning: u.output_tokens_details.map_or(0, |d| d.reasoning_tokens),
            unparsed: false,
        }
    }
}

/// The `usage` of a JSON answer (`response` object or compaction result).
pub fn usage_of_json(body: &[u8]) -> Result<Option<TokenUsage>, String> {
    super::body::top_level_usage::<Reported<WireUsage>>(body).map(|u| u.map(Reported::into_usage))
}

/// A terminal event's data as [`try_read_terminal`] read it.
pub type TerminalRead = Result<(Terminal, Option<TokenUsage>), serde_json::Error>;

/// Reads a terminal event's data (`response.completed`/`incomplete`/`failed` or `error`).
pub fn read_terminal(data: &[u8]) -> (Terminal, Option<TokenUsage>) {
    try_read_terminal(data).unwrap_or_default()
}

/// [`read_terminal`], telling why an event could not be read (not JSON, or JSON of another
/// shape) instead of reading it as a terminal without details.
pub fn try_read_terminal(data: &[u8]) -> Result<(Terminal, Option<TokenUsage>), serde_json::Error> {
    #[derive(Deserialize)]
    struct Event {
        response: Option<EventResponse>,
        error: Option<WireError>,
        code: Option<Value>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct EventResponse {
        id: Option<String>,
        usage: Option<Reported<WireUsage>>,
        error: Option<WireError>,
    }
    #[derive(Deserialize)]
    struct WireError {
        code: Option<Value>,
        message: Option<String>,
    }
    let event = serde_json::from_slice::<Event>(data)?;
    let (response_id, usage, response_error) = match event.response {
        Some(r) => (r.id, r.usage.map(Reported::into_usage), r.error),
        None => (None, None, None),
    };
    let error = response_error.or(event.error);
    let (error_code, error_message) = match error {
        Some(e) => (e.code.map(super::code_text), e.message),
        None => (event.code.map(super::code_text), event.message),
    };
    let terminal = Terminal {
        response_id,
        error_code,
        error_message,
    };
    Ok((terminal, usage))
}

/// Whether a `response.failed` before output is worth another account. Failures caused by the
/// request itself would fail everywhere; everything else (rate limits, server errors, unknown
/// codes) is tried elsewhere.
pub fn failure_is_retryable(code: Option<&str>) -> bool {
    !matches!(
        code,
        Some(
            "context_length_exceeded"
                | "invalid_prompt"
                | "invalid_request_error"
                | "content_filter"
                | "invalid_encrypted_content"
        )
    )
}

/// Builds the final `response` object of a stream for a client that asked for JSON.
#[derive(Default)]
pub struct Aggregator {
    completed: Option<Value>,
    items: Vec<(u64, Value)>,
}

impl Aggregator {
    pub fn on_output_item_done(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Done {
            #[serde(default)]
            output_index: u64,
            item: Value,
        }
        if let Ok(done) = serde_json::from_slice::<Done>(data) {
            self.items.push((done.output_index, done.item));
        }
    }

    /// `response.completed` or `response.incomplete`.
    pub fn on_terminal(&mut self, data: &[u8]) {
        #[derive(Deserialize)]
        struct Terminal {
            response: Value,
        }
        if let Ok(t) = serde_json::from_slice::<Terminal>(data) {
            self.completed = Some(t.response);
        }
    }

    /// The `response` object; its `output` is rebuilt from the items when the upstream sent it
    /// empty. `None` when the stream carried no terminal response.
    pub fn finish(mut self) -> Option<Bytes> {
        let mut response = self.completed.take()?;
        let empty = response
            .get("output")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if empty && !self.items.is_empty() {
            self.items.sort_by_key(|(i, _)| *i);
            let output = self.items.into_iter().map(|(_, item)| item).collect();
            if let Some(map) = response.as_object_mut() {
                map.insert("output".to_owned(), Value::Array(output));
            }
        }
        serde_json::to_vec(&response).ok().map(Bytes::from)
    }
}

/// A `response.failed` event, written when a stream that already gave output cannot go on.
pub fn failed_event(response_id: Option<&str>, code: &str, message: &str) -> Bytes {
    let event = serde_json::json!({
        "type": "response.failed",
        "response": {
            "id": response_id.unwrap_or("resp_subrelay"),
            "object": "response",
            "status": "failed",
            "output": [],
            "error": { "code": code, "message": message },
        }
    });
    let mut out = b"event: response.failed\ndata: ".to_vec();
    out.extend_from_slice(event.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The Responses stream events the relay acts on; everything else is [`Event::Other`] output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `response.created`, `response.in_progress`, `response.queued`: held back until real
    /// output starts, so that failover is still possible.
    Preamble,
    /// `response.output_item.done`: needed to rebuild `output` when aggregating.
    OutputItemDone,
    Completed,
    /// `response.incomplete`: terminal, carries usage.
    Incomplete,
    Failed,
    /// A bare `error` event.
    Error,
    Other,
}

impl Event {
    pub fn of(name: &[u8]) -> Self {
        match name {
            b"response.created" | b"response.in_progress" | b"response.queued" => Event::Preamble,
            b"response.output_item.done" => Event::OutputItemDone,
            b"response.completed" => Event::Completed,
            b"response.incomplete" => Event::Incomplete,
            b"response.failed" => Event::Failed,
            b"error" => Event::Error,
            _ => Event::Other,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Event::Completed | Event::Incomplete | Event::Failed | Event::Error
        )
    }
}

/// Watches a Responses stream.
#[derive(Default)]
pub struct Watch {
    finished: bool,
    failed: bool,
    usage: TokenUsage,
    response_id: Option<String>,
    /// The terminal event just read, until a translator takes it
    /// ([`StreamWatch::take_terminal_read`]).
    terminal_read: Option<TerminalRead>,
}

impl StreamWatch for Watch {
    fn observe(&mut self, event: &SseEvent<'_>, output_started: bool) -> EventRole {
        let kind = Event::of(event.name());
        match kind {
            Event::Preamble if !output_started => EventRole::Hold,
            Event::Failed | Event::Error if !output_started => {
                EventRole::FailBeforeOutput(read_terminal(&event.data()).0)
            }
            _ => {
                if kind.is_terminal() {
                    let read = try_read_terminal(&event.data());
                    self.finished = true;
                    self.failed = matches!(kind, Event::Failed | Event::Error);
                    self.usage = TokenUsage::default();
                    if let Ok((terminal, usage)) = &read {
                        self.usage = usage.unwrap_or_default();
                        if terminal.response_id.is_some() {
                            self.response_id.clone_from(&terminal.response_id);
                        }
                    }
                    self.terminal_read = Some(read);
                }
                EventRole::Output
            }
        }
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn succeeded(&self) -> bool {
        self.finished && !self.failed
    }

    fn usage(&self) -> TokenUsage {
        self.usage
    }

    fn failure_event(&self, code: &str, message: &str) -> Bytes {
        failed_event(self.response_id.as_deref(), code, message)
    }

    fn take_terminal_read(&mut self) -> Option<TerminalRead> {
        self.terminal_read.take()
    }
}

#[cfg(test)]
mod tests;
