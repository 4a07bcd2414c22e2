//! A Chat Completions client served by an OpenAI Responses upstream (Chat tools on a ChatGPT
//! sign-in, or on an OpenAI API key through `/v1/responses`).
//!
//! Request, Chat → Responses:
//!
//! | Chat | Responses |
//! |---|---|
//! | `model` | the target's upstream model |
//! | `system` / `developer` message | `message` input item of that role, in place; on the Codex backend all of them go, joined by blank lines and in order, to `instructions` (a default when there are none) |
//! | `user` message: string, `text` parts | `message` with `input_text` parts |
//! | `user` `image_url` part (data or http URL, `detail`) | `input_image` (`image_url`, `detail`) |
//! | `user` `file` part (`file_data`/`file_id`, `filename`) | `input_file` |
//! | `assistant` message: string, `text` and `refusal` parts | `message` with `output_text` / `refusal` parts |
//! | `assistant` `tool_calls[]` (function) | `function_call` items (`call_id` = the Chat id, unchanged) |
//! | `tool` message | `function_call_output` (`call_id` = `tool_call_id`, text output) |
//! | `tools[]` (function) | function tools (`name`, `description`, `parameters`, `strict`) |
//! | `tool_choice` `auto`/`none`/`required`/named | same; named → `{"type":"function","name"}` |
//! | `parallel_tool_calls` | same |
//! | `response_format` `text`/`json_object`/`json_schema` | `text.format` (`json_schema` flattened: `name`, `schema`, `strict`, `description`) |
//! | `verbosity` | `text.verbosity` |
//! | `reasoning_effort` | `reasoning.effort` |
//! | `max_completion_tokens`, else `max_tokens` | `max_output_tokens` |
//! | `store` | same; absent → `false` (Chat stores nothing unless asked, Responses stores by default) |
//! | `temperature`, `top_p`, `user`, `metadata`, `service_tier`, `safety_identifier`, `prompt_cache_key` | same |
//! | `stream` | same (always `true` on the Codex backend) |
//!
//! Ids: Chat tool call ids and Responses `call_id`s are both free strings, so they pass through
//! unchanged both ways: the id a client receives is the upstream's `call_id`, and it comes back
//! as `tool_call_id`.
//!
//! Dropped (hints without content): `stream_options` (the usage chunk is decided here, see
//! below), `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `top_logprobs` without
//! `logprobs`, `prediction`, message `name`s, and an assistant message's `audio` reference. On the
//! Codex backend also `max_output_tokens` and `temperature` (the backend answers 400
//! "Unsupported parameter" to them, as several gateways in front of it report), and `top_p`,
//! `user`, `metadata`, `service_tier` and `safety_identifier`, which Codex CLI never sends there
//! (dropped so an unknown-parameter 400 cannot fail the request; not checked against the backend
//! one by one); `store` is `false` there.
//!
//! Refused (400 naming the field): `n` > 1, `logprobs`, `audio` / audio `modalities`,
//! `web_search_options`, `stop` (Responses has no stop sequences), tools other than functions,
//! `allowed_tools` / custom tool choices, `input_audio` parts, the deprecated `function` role and
//! `function_call`/`functions`, content of an unknown shape.
//!
//! Answer, Responses → Chat: text deltas → `content`, refusal deltas → `refusal`, reasoning
//! summary (and raw reasoning text) deltas → `reasoning_content` (the field DeepSeek-style
//! clients read; OpenAI's own Chat has none), each `function_call` item → a `tool_calls` entry
//! with the next `index`, its argument deltas after it. Finish reason: `tool_calls` when a call
//! was made, `length` for `incomplete_details.reason: max_output_tokens`, `content_filter` for
//! `content_filter`, else `stop`. Usage (`input_tokens` → `prompt_tokens`, cached and reasoning
//! details) is written as the last chunk only when the client sent
//! `stream_options.include_usage: true` (hence [`Translation::stream_for`]); the JSON answer
//! always carries it. `response.failed` and `error` become the Chat error chunk, which ends the
//! stream without `[DONE]`, as an OpenAI-compatible server ends a failed stream. Encrypted
//! reasoning is not requested: a Chat client has nowhere to carry it to the next turn.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::chat_answer::{include_usage, ChatCompletion, ChatStream, ChatUsage};
use super::chat_request::{self, given, refuse, ToolChoice};
use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};
use crate::protocol::responses::DEFAULT_INSTRUCTIONS;
use crate::protocol::sse::SseEvent;

pub struct ChatViaResponses;

impl Translation for ChatViaResponses {
    fn request(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
        let (request, messages) = chat_request::parse(body)?;
        let upstream = build_request(&request, &messages, target)?;
        let upstream_stream = upstream["stream"].as_bool().unwrap_or(false);
        let body = serde_json::to_vec(&upstream).map_err(|e| refuse("", e.to_string()))?;
        Ok(Translated {
            body: Bytes::from(body),
            upstream_stream,
        })
    }

    fn stream(client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(Stream::new(client_model, false))
    }

    fn stream_for(client_request: &[u8], client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(Stream::new(client_model, include_usage(client_request)))
    }

    fn json(upstream: &[u8], client_model: &str) -> Result<Bytes, String> {
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
                            Some("refusal") => {
                                refusal.push_str(part["refusal"].as_str().unwrap_or(""))
                            }
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
}

// === request ===

fn build_request(
    request: &Map<String, Value>,
    messages: &[Value],
    target: &Target,
) -> Result<Value, Untranslatable> {
    chat_request::refuse_unanswerable(request, "the Responses API")?;
    for key in ["functions", "function_call"] {
        if given(request, key).is_some() {
            return Err(refuse(
                key,
                "the deprecated `functions` API is not translated; use `tools`",
            ));
        }
    }
    if chat_request::stop_sequences(request)?.is_some() {
        return Err(refuse("stop", "the Responses API has no stop sequences"));
    }
    let codex = target.codex_backend;
    let mut out = Map::new();
    out.insert("model".to_owned(), json!(target.upstream_model));

    let mut instructions = Vec::new();
    let mut input = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        match message["role"].as_str() {
            Some(role @ ("system" | "developer")) => {
                let text =
                    chat_request::text_only(message.get("content"), &format!("{field}.content"))?
                        .unwrap_or_default();
                if codex {
                    instructions.push(text);
                } else {
                    input.push(json!({
                        "type": "message",
                        "role": role,
                        "content": [{ "type": "input_text", "text": text }],
                    }));
                }
            }
            Some("user") => input.push(json!({
                "type": "message",
                "role": "user",
                "content": user_content(message.get("content"), &format!("{field}.content"))?,
            })),
            Some("assistant") => assistant_items(message, &field, &mut input)?,
            Some("tool") => {
                let call_id = message["tool_call_id"].as_str().ok_or_else(|| {
                    refuse(
                        format!("{field}.tool_call_id"),
                        "a tool message needs `tool_call_id`",
                    )
                })?;
                let output =
                    chat_request::text_only(message.get("content"), &format!("{field}.content"))?
                        .unwrap_or_default();
                input.push(json!({
                    "type": "function_call_output",
                    "call_id": call_id,
                    "output": output,
                }));
            }
            _ => {
                return Err(refuse(
                    format!("{field}.role"),
                    "only system, developer, user, assistant and tool messages can be translated",
                ))
            }
        }
    }
    if codex {
        let joined = instructions.join("\n\n");
        let instructions = if joined.trim().is_empty() {
            DEFAULT_INSTRUCTIONS.to_owned()
        } else {
            joined
        };
        out.insert("instructions".to_owned(), json!(instructions));
    }
    out.insert("input".to_owned(), Value::Array(input));

    let tools = chat_request::function_tools(request)?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut tool = Map::new();
                tool.insert("type".to_owned(), json!("function"));
                tool.insert("name".to_owned(), json!(t.name));
                if let Some(d) = t.description {
                    tool.insert("description".to_owned(), d.clone());
                }
                tool.insert(
                    "parameters".to_owned(),
                    t.parameters
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                if let Some(s) = t.strict {
                    tool.insert("strict".to_owned(), s.clone());
                }
                Value::Object(tool)
            })
            .collect();
        out.insert("tools".to_owned(), Value::Array(tools));
    }
    if let Some(choice) = chat_request::tool_choice(request)? {
        let choice = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "name": name}),
        };
        out.insert("tool_choice".to_owned(), choice);
    }
    if let Some(parallel) = given(request, "parallel_tool_calls") {
        out.insert("parallel_tool_calls".to_owned(), parallel.clone());
    }

    let mut text = Map::new();
    if let Some(format) = given(request, "response_format") {
        text.insert("format".to_owned(), text_format(format)?);
    }
    if let Some(verbosity) = given(request, "verbosity") {
        text.insert("verbosity".to_owned(), verbosity.clone());
    }
    if !text.is_empty() {
        out.insert("text".to_owned(), Value::Object(text));
    }
    if let Some(effort) = given(request, "reasoning_effort") {
        out.insert("reasoning".to_owned(), json!({ "effort": effort }));
    }

    let max_tokens = chat_request::max_tokens(request)?;
    if codex {
        out.insert("store".to_owned(), json!(false));
        out.insert("stream".to_owned(), json!(true));
    } else {
        if let Some(n) = max_tokens {
            out.insert("max_output_tokens".to_owned(), json!(n));
        }
        for key in [
            "temperature",
            "top_p",
            "user",
            "metadata",
            "service_tier",
            "safety_identifier",
        ] {
            if let Some(v) = given(request, key) {
                out.insert(key.to_owned(), v.clone());
            }
        }
        // Chat stores nothing unless asked; Responses stores by default.
        let store = given(request, "store").cloned().unwrap_or(json!(false));
        out.insert("store".to_owned(), store);
        let stream = given(request, "stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        out.insert("stream".to_owned(), json!(stream));
    }
    if let Some(key) = given(request, "prompt_cache_key") {
        out.insert("prompt_cache_key".to_owned(), key.clone());
    }
    Ok(Value::Object(out))
}

/// A user message's content as Responses input parts.
fn user_content(content: Option<&Value>, field: &str) -> Result<Value, Untranslatable> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(json!([{ "type": "input_text", "text": text }])),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(refuse(
                field,
                "a user message needs content: a string or a list of parts",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let here = format!("{field}[{i}]");
        match part["type"].as_str() {
            Some("text") => {
                let text = part["text"]
                    .as_str()
                    .ok_or_else(|| refuse(format!("{here}.text"), "a text part needs `text`"))?;
                out.push(json!({ "type": "input_text", "text": text }));
            }
            Some("image_url") => {
                let url = part["image_url"]["url"]
                    .as_str()
                    .or_else(|| part["image_url"].as_str())
                    .ok_or_else(|| {
                        refuse(format!("{here}.image_url"), "an image part needs a URL")
                    })?;
                let mut image = json!({ "type": "input_image", "image_url": url });
                let detail = part["image_url"]["detail"].as_str().unwrap_or("auto");
                image["detail"] = json!(detail);
                out.push(image);
            }
            Some("file") => {
                let file = &part["file"];
                let mut item = Map::new();
                item.insert("type".to_owned(), json!("input_file"));
                for key in ["file_id", "file_data", "filename"] {
                    if let Some(v) = file.get(key).filter(|v| v.is_string()) {
                        item.insert(key.to_owned(), v.clone());
                    }
                }
                if !item.contains_key("file_id") && !item.contains_key("file_data") {
                    return Err(refuse(
                        format!("{here}.file"),
                        "a file part needs `file_id` or `file_data`",
                    ));
                }
                out.push(Value::Object(item));
            }
            _ => return Err(refuse(
                format!("{here}.type"),
                "the Responses API takes text, image and file parts here (audio is not translated)",
            )),
        }
    }
    Ok(Value::Array(out))
}

/// An assistant turn: its text (and refusal) as one `message` item, then its function calls.
fn assistant_items(
    message: &Value,
    field: &str,
    input: &mut Vec<Value>,
) -> Result<(), Untranslatable> {
    if message.get("function_call").is_some_and(|v| !v.is_null()) {
        return Err(refuse(
            format!("{field}.function_call"),
            "the deprecated `function_call` is not translated; use `tool_calls`",
        ));
    }
    let mut parts = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            if !text.is_empty() {
                parts.push(json!({ "type": "output_text", "text": text, "annotations": [] }));
            }
        }
        Some(Value::Array(list)) => {
            for (i, part) in list.iter().enumerate() {
                match (
                    part["type"].as_str(),
                    part["text"].as_str(),
                    part["refusal"].as_str(),
                ) {
                    (Some("text"), Some(text), _) => parts
                        .push(json!({ "type": "output_text", "text": text, "annotations": [] })),
                    (Some("refusal"), _, Some(refusal)) => {
                        parts.push(json!({ "type": "refusal", "refusal": refusal }))
                    }
                    _ => {
                        return Err(refuse(
                            format!("{field}.content[{i}]"),
                            "an assistant message takes text and refusal parts",
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(refuse(
                format!("{field}.content"),
                "content must be a string or a list of parts",
            ))
        }
    }
    if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
        if parts.iter().all(|p| p["type"] != "refusal") {
            parts.push(json!({ "type": "refusal", "refusal": refusal }));
        }
    }
    if !parts.is_empty() {
        input.push(json!({ "type": "message", "role": "assistant", "content": parts }));
    }
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(calls)) => calls,
        Some(_) => {
            return Err(refuse(
                format!("{field}.tool_calls"),
                "`tool_calls` must be a list",
            ))
        }
    };
    for (j, call) in calls.iter().enumerate() {
        let here = format!("{field}.tool_calls[{j}]");
        if call["type"].as_str().is_some_and(|t| t != "function") {
            return Err(refuse(
                format!("{here}.type"),
                "only function calls can be translated",
            ));
        }
        let (Some(id), Some(name)) = (call["id"].as_str(), call["function"]["name"].as_str())
        else {
            return Err(refuse(here, "a tool call needs `id` and `function.name`"));
        };
        let arguments = call["function"]["arguments"].as_str().unwrap_or("{}");
        input.push(json!({
            "type": "function_call",
            "call_id": id,
            "name": name,
            "arguments": arguments,
        }));
    }
    Ok(())
}

fn text_format(format: &Value) -> Result<Value, Untranslatable> {
    match format["type"].as_str() {
        Some("text") => Ok(json!({ "type": "text" })),
        Some("json_object") => Ok(json!({ "type": "json_object" })),
        Some("json_schema") => {
            let schema = &format["json_schema"];
            let mut out = Map::new();
            out.insert("type".to_owned(), json!("json_schema"));
            let name = schema["name"].as_str().ok_or_else(|| {
                refuse(
                    "response_format.json_schema.name",
                    "a JSON schema format needs a name",
                )
            })?;
            out.insert("name".to_owned(), json!(name));
            for key in ["schema", "strict", "description"] {
                if let Some(v) = schema.get(key).filter(|v| !v.is_null()) {
                    out.insert(key.to_owned(), v.clone());
                }
            }
            Ok(Value::Object(out))
        }
        _ => Err(refuse(
            "response_format.type",
            "only `text`, `json_object` and `json_schema` formats can be translated",
        )),
    }
}

// === answer ===

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
struct Stream {
    chat: ChatStream,
    /// Output indexes of message items whose text arrived as deltas (their `done` adds nothing).
    streamed_text: Vec<u64>,
    /// Output indexes of function calls whose arguments arrived as deltas.
    streamed_arguments: Vec<u64>,
}

impl Stream {
    fn new(client_model: &str, include_usage: bool) -> Self {
        Self {
            chat: ChatStream::new(client_model, include_usage),
            streamed_text: Vec::new(),
            streamed_arguments: Vec::new(),
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
        if self.chat.closed() {
            return;
        }
        let name = event.name();
        let data = event.data();
        let Ok(wire) = serde_json::from_slice::<WireEvent>(&data) else {
            return;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::golden;

    #[test]
    fn golden_cases() {
        let n = golden::run_all::<ChatViaResponses>("chat_via_responses");
        assert!(n >= 25, "only {n} golden cases");
    }

    fn target(codex_backend: bool) -> Target {
        Target {
            upstream_model: "gpt-5.1".to_owned(),
            codex_backend,
        }
    }

    #[test]
    fn the_upstream_streams_when_the_client_does_and_always_on_the_codex_backend() {
        let json = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let streamed = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let plain = ChatViaResponses::request(json, &target(false)).unwrap();
        assert!(!plain.upstream_stream);
        assert!(
            ChatViaResponses::request(streamed, &target(false))
                .unwrap()
                .upstream_stream
        );
        assert!(
            ChatViaResponses::request(json, &target(true))
                .unwrap()
                .upstream_stream
        );
    }

    /// One stream with usage in its terminal event, run through `translator`.
    fn usage_chunks(mut translator: Box<dyn StreamTranslator>) -> usize {
        let stream = concat!(
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"hi\"}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",",
            "\"output\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        );
        let mut out = BytesMut::new();
        crate::protocol::sse::SseScanner::new()
            .feed(stream.as_bytes(), |e| translator.event(&e, &mut out));
        translator.finish(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        text.matches("\"usage\"").count()
    }

    #[test]
    fn the_usage_chunk_is_written_only_when_the_client_asked() {
        assert_eq!(usage_chunks(ChatViaResponses::stream("m")), 0);
        let asked = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(usage_chunks(ChatViaResponses::stream_for(asked, "m")), 1);
        let not_asked = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
        assert_eq!(
            usage_chunks(ChatViaResponses::stream_for(not_asked, "m")),
            0
        );
    }

    #[test]
    fn a_failed_json_answer_is_an_upstream_error() {
        let failed = br#"{"id":"r","status":"failed","output":[],"error":{"code":"server_error","message":"boom"}}"#;
        let why = ChatViaResponses::json(failed, "m").unwrap_err();
        assert!(
            why.contains("server_error") && why.contains("boom"),
            "{why}"
        );
        assert!(ChatViaResponses::json(b"[]", "m").is_err());
    }
}
