//! A Chat Completions client served by an Anthropic Messages upstream (OpenAI SDK clients on
//! Claude accounts).
//!
//! Request, Chat → Messages:
//!
//! | Chat | Messages |
//! |---|---|
//! | `model` | the target's upstream model |
//! | `system` / `developer` messages (string or text parts), wherever they stand | `system` text blocks, in order (Messages has one system prompt, so their position in the conversation is lost) |
//! | `user` string, `text` parts | `user` turn with `text` blocks (empty text is left out: Anthropic refuses empty blocks) |
//! | `user` `image_url` part: `data:<type>;base64,…` | `image` block, `base64` source |
//! | `user` `image_url` part: `http(s)://…` | `image` block, `url` source |
//! | `user` `file` part with `file_data` `data:application/pdf;base64,…` | `document` block, `base64` source |
//! | `assistant` text / `refusal` parts | `assistant` turn with `text` blocks |
//! | `assistant` `tool_calls[]` | `tool_use` blocks (`input` = the parsed `arguments`, `{}` when empty) |
//! | `tool` messages | `tool_result` blocks (`tool_use_id` = `tool_call_id`) in one `user` turn; consecutive ones, and a `user` message right after them, share that turn, tool results first |
//! | `tools[]` (function) | tools with `input_schema` = `parameters` (an empty object schema when absent) |
//! | `tool_choice` `auto` / `required` / `none` / named | `{"type":"auto"}` / `any` / `none` / `{"type":"tool","name"}` |
//! | `parallel_tool_calls: false` | `disable_parallel_tool_use: true` on the tool choice |
//! | `max_completion_tokens`, else `max_tokens` | `max_tokens`; Anthropic requires it, so absent it is [`DEFAULT_MAX_TOKENS`] (plus the thinking budget when thinking) |
//! | `reasoning_effort` `low` / `medium` / `high` | `thinking: {"type":"enabled","budget_tokens"}` with 1024 / 4096 / 16384 (capped below `max_tokens`); `none` / `minimal`: no thinking. Not with a forced tool choice, nor when the last assistant turn called tools (Anthropic then wants that turn's signed thinking block, which a Chat client cannot send back): the hint is dropped there |
//! | `stop` (string or list) | `stop_sequences` |
//! | `temperature` | same, clamped to Anthropic's 0–1 (Chat allows up to 2); dropped with thinking (Anthropic takes only its default then) |
//! | `top_p` | same; dropped with thinking |
//! | `user` | `metadata.user_id` |
//! | `stream` | same |
//!
//! Ids: tool call ids pass through unchanged, except that characters Anthropic refuses in a
//! `tool_use` id (anything but letters, digits, `_` and `-`) become `_`, the same way in the call
//! and in its result, so the pair still matches. Ids coming back from Anthropic (`toolu_…`) are
//! valid Chat ids as they are.
//!
//! Dropped (hints without content): `stream_options` (the usage chunk is decided here),
//! `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `top_logprobs` without
//! `logprobs`, `prediction`, `metadata`, `store`, `service_tier`, `prompt_cache_key`,
//! `safety_identifier`, `verbosity`, tool `strict`, message `name`s, an assistant message's
//! `reasoning_content` (Anthropic takes earlier thinking only with its signature, which a Chat
//! client does not have) and its `audio` reference.
//!
//! Refused (400 naming the field): `n` > 1, `logprobs`, `audio` / audio `modalities`,
//! `web_search_options`, `response_format` other than `text` (structured output needs an
//! Anthropic beta header a translation cannot set), tools other than functions, `input_audio`
//! parts, files other than inline PDFs, image URLs that are neither base64 data nor http(s),
//! tool call `arguments` that are not a JSON object, the deprecated `function` role and
//! `functions`/`function_call`.
//!
//! Answer, Messages → Chat: `text_delta` → `content`, `thinking_delta` → `reasoning_content`
//! (the field DeepSeek-style clients read), each `tool_use` block → a `tool_calls` entry with the
//! next `index`, its `input_json_delta`s as argument fragments; `signature_delta` and redacted
//! thinking are not shown. `stop_reason` → `finish_reason`: `end_turn`, `stop_sequence`,
//! `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use` →
//! `tool_calls`; `refusal` → `content_filter`. Usage: Anthropic's `input_tokens` excludes cache
//! reads and writes, Chat's `prompt_tokens` includes them, so `prompt_tokens` = input + cache
//! read + cache write, `prompt_tokens_details.cached_tokens` = cache read; the usage chunk is
//! written only when the client sent `stream_options.include_usage: true`. `event: error`
//! becomes the Chat error chunk (code = the Anthropic error type), which ends the stream without
//! `[DONE]`. Messages carries no timestamp and translators read no clock, so `created` is 0.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::chat_answer::{include_usage, ChatCompletion, ChatStream, ChatUsage};
use super::chat_request::{self, given, refuse, ToolChoice};
use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};
use crate::protocol::sse::SseEvent;

/// `max_tokens` when the client gave none (Anthropic requires one): an answer length every
/// Claude model accepts.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u64 = 1024;

pub struct ChatViaMessages;

impl Translation for ChatViaMessages {
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
}

// === request ===

fn build_request(
    request: &Map<String, Value>,
    messages: &[Value],
    target: &Target,
) -> Result<Value, Untranslatable> {
    chat_request::refuse_unanswerable(request, "the Messages API")?;
    for key in ["functions", "function_call"] {
        if given(request, key).is_some() {
            return Err(refuse(
                key,
                "the deprecated `functions` API is not translated; use `tools`",
            ));
        }
    }
    if let Some(format) = given(request, "response_format") {
        if format["type"] != "text" {
            return Err(refuse(
                "response_format",
                "JSON output formats have no form on the Messages API here; ask for JSON in the prompt",
            ));
        }
    }

    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let field = format!("messages[{i}]");
        match message["role"].as_str() {
            Some("system" | "developer") => {
                let text =
                    chat_request::text_only(message.get("content"), &format!("{field}.content"))?;
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    system.push(json!({ "type": "text", "text": text }));
                }
            }
            Some("user") => {
                let blocks = user_blocks(message.get("content"), &format!("{field}.content"))?;
                push_turn(&mut turns, "user", blocks);
            }
            Some("assistant") => {
                let blocks = assistant_blocks(message, &field)?;
                push_turn(&mut turns, "assistant", blocks);
            }
            Some("tool") => {
                let id = message["tool_call_id"].as_str().ok_or_else(|| {
                    refuse(
                        format!("{field}.tool_call_id"),
                        "a tool message needs `tool_call_id`",
                    )
                })?;
                let output =
                    chat_request::text_only(message.get("content"), &format!("{field}.content"))?
                        .unwrap_or_default();
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": tool_id(id),
                    "content": output,
                });
                push_turn(&mut turns, "user", vec![block]);
            }
            _ => {
                return Err(refuse(
                    format!("{field}.role"),
                    "only system, developer, user, assistant and tool messages can be translated",
                ))
            }
        }
    }
    if turns.is_empty() {
        return Err(refuse(
            "messages",
            "the Messages API needs at least one user or assistant message",
        ));
    }

    let mut out = Map::new();
    out.insert("model".to_owned(), json!(target.upstream_model));
    if !system.is_empty() {
        out.insert("system".to_owned(), Value::Array(system));
    }
    let tool_loop = open_tool_loop(&turns);
    let turns: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({ "role": role, "content": content }))
        .collect();
    out.insert("messages".to_owned(), Value::Array(turns));

    let asked_max = chat_request::max_tokens(request)?;
    let tool_choice = chat_request::tool_choice(request)?;
    let forced_tool = matches!(
        tool_choice,
        Some(ToolChoice::Required | ToolChoice::Function(_))
    );
    // Anthropic refuses thinking with forced tool use, and in a tool loop whose last assistant
    // turn has no signed thinking block (a Chat client has none to send back): the effort hint
    // is dropped there rather than failing the request.
    let budget = thinking_budget(request)?.filter(|_| !forced_tool && !tool_loop);
    match budget {
        Some(budget) => {
            let max_tokens = asked_max.unwrap_or(budget + DEFAULT_MAX_TOKENS);
            let budget = budget.min(max_tokens.saturating_sub(1));
            if budget < MIN_THINKING_BUDGET {
                return Err(refuse(
                    "reasoning_effort",
                    format!(
                        "thinking on the Messages API needs max_tokens above {MIN_THINKING_BUDGET}"
                    ),
                ));
            }
            out.insert("max_tokens".to_owned(), json!(max_tokens));
            out.insert(
                "thinking".to_owned(),
                json!({ "type": "enabled", "budget_tokens": budget }),
            );
        }
        None => {
            out.insert(
                "max_tokens".to_owned(),
                json!(asked_max.unwrap_or(DEFAULT_MAX_TOKENS)),
            );
        }
    }
    if let Some(stops) = chat_request::stop_sequences(request)? {
        out.insert("stop_sequences".to_owned(), json!(stops));
    }
    // With thinking, Anthropic takes only its default temperature and a top_p of at least 0.95:
    // sampling hints are dropped then.
    if !out.contains_key("thinking") {
        if let Some(t) = given(request, "temperature") {
            let t = t
                .as_f64()
                .ok_or_else(|| refuse("temperature", "`temperature` must be a number"))?;
            out.insert("temperature".to_owned(), json!(t.clamp(0.0, 1.0)));
        }
        if let Some(p) = given(request, "top_p") {
            out.insert("top_p".to_owned(), p.clone());
        }
    }

    let tools = chat_request::function_tools(request)?;
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut tool = Map::new();
                tool.insert("name".to_owned(), json!(t.name));
                if let Some(d) = t.description {
                    tool.insert("description".to_owned(), d.clone());
                }
                tool.insert(
                    "input_schema".to_owned(),
                    t.parameters
                        .cloned()
                        .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                );
                Value::Object(tool)
            })
            .collect();
        out.insert("tools".to_owned(), Value::Array(tools));
    }
    let mut choice = match tool_choice {
        None => None,
        Some(ToolChoice::Auto) => Some(json!({ "type": "auto" })),
        Some(ToolChoice::Required) => Some(json!({ "type": "any" })),
        Some(ToolChoice::None) => Some(json!({ "type": "none" })),
        Some(ToolChoice::Function(name)) => Some(json!({ "type": "tool", "name": name })),
    };
    let serial = given(request, "parallel_tool_calls") == Some(&Value::Bool(false));
    if serial && out.contains_key("tools") {
        let choice = choice.get_or_insert_with(|| json!({ "type": "auto" }));
        if choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        out.insert("tool_choice".to_owned(), choice);
    }
    if let Some(user) = given(request, "user").and_then(Value::as_str) {
        out.insert("metadata".to_owned(), json!({ "user_id": user }));
    }
    let stream = given(request, "stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    out.insert("stream".to_owned(), json!(stream));
    Ok(Value::Object(out))
}

/// Consecutive messages of one Anthropic role share a turn; in a user turn, tool results come
/// first (Anthropic requires them before any other block).
fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, content)) if *last == role => {
            content.extend(blocks);
            if role == "user" {
                content.sort_by_key(|b| b["type"] != "tool_result");
            }
        }
        _ => turns.push((role, blocks)),
    }
}

/// A tool call id as Anthropic accepts it (`^[a-zA-Z0-9_-]+$`), the same for a call and its
/// result.
fn tool_id(id: &str) -> String {
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "_".to_owned()
    } else {
        id
    }
}

/// Whether the last assistant turn called tools (the request continues a tool loop).
fn open_tool_loop(turns: &[(&'static str, Vec<Value>)]) -> bool {
    turns
        .iter()
        .rev()
        .find(|(role, _)| *role == "assistant")
        .is_some_and(|(_, blocks)| blocks.iter().any(|b| b["type"] == "tool_use"))
}

fn thinking_budget(request: &Map<String, Value>) -> Result<Option<u64>, Untranslatable> {
    match given(request, "reasoning_effort").map(|v| v.as_str()) {
        None | Some(Some("none" | "minimal")) => Ok(None),
        Some(Some("low")) => Ok(Some(1024)),
        Some(Some("medium")) => Ok(Some(4096)),
        Some(Some("high")) => Ok(Some(16384)),
        Some(_) => Err(refuse(
            "reasoning_effort",
            "`reasoning_effort` must be none, minimal, low, medium or high",
        )),
    }
}

fn user_blocks(content: Option<&Value>, field: &str) -> Result<Vec<Value>, Untranslatable> {
    let parts = match content {
        Some(Value::String(text)) => return Ok(text_block(text).into_iter().collect()),
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
                out.extend(text_block(text));
            }
            Some("image_url") => {
                let url = part["image_url"]["url"]
                    .as_str()
                    .or_else(|| part["image_url"].as_str())
                    .ok_or_else(|| refuse(format!("{here}.image_url"), "an image part needs a URL"))?;
                out.push(image_block(url, &format!("{here}.image_url.url"))?);
            }
            Some("file") => out.push(document_block(&part["file"], &format!("{here}.file"))?),
            _ => {
                return Err(refuse(
                    format!("{here}.type"),
                    "the Messages API takes text, image and PDF file parts here (audio is not translated)",
                ))
            }
        }
    }
    Ok(out)
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// `data:<media type>;base64,<data>` → `(media type, data)`.
fn base64_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

fn image_block(url: &str, field: &str) -> Result<Value, Untranslatable> {
    if let Some((media_type, data)) = base64_data_url(url) {
        return Ok(json!({
            "type": "image",
            "source": { "type": "base64", "media_type": media_type, "data": data },
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({ "type": "image", "source": { "type": "url", "url": url } }));
    }
    Err(refuse(
        field,
        "an image must be a base64 data URL or an http(s) URL for the Messages API",
    ))
}

fn document_block(file: &Value, field: &str) -> Result<Value, Untranslatable> {
    let data = file["file_data"].as_str().and_then(base64_data_url);
    match data {
        Some(("application/pdf", data)) => {
            let mut block = json!({
                "type": "document",
                "source": { "type": "base64", "media_type": "application/pdf", "data": data },
            });
            if let Some(name) = file["filename"].as_str() {
                block["title"] = json!(name);
            }
            Ok(block)
        }
        _ => Err(refuse(
            field,
            "the Messages API takes files here only as inline PDF data (`file_data: data:application/pdf;base64,…`)",
        )),
    }
}

fn assistant_blocks(message: &Value, field: &str) -> Result<Vec<Value>, Untranslatable> {
    if message.get("function_call").is_some_and(|v| !v.is_null()) {
        return Err(refuse(
            format!("{field}.function_call"),
            "the deprecated `function_call` is not translated; use `tool_calls`",
        ));
    }
    let mut blocks = Vec::new();
    match message.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => blocks.extend(text_block(text)),
        Some(Value::Array(parts)) => {
            for (i, part) in parts.iter().enumerate() {
                match (
                    part["type"].as_str(),
                    part["text"].as_str(),
                    part["refusal"].as_str(),
                ) {
                    (Some("text"), Some(text), _) | (Some("refusal"), _, Some(text)) => {
                        blocks.extend(text_block(text))
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
    let calls = match message.get("tool_calls") {
        None | Some(Value::Null) => return Ok(blocks),
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
        let arguments = call["function"]["arguments"].as_str().unwrap_or("");
        let input = if arguments.trim().is_empty() {
            json!({})
        } else {
            match serde_json::from_str::<Value>(arguments) {
                Ok(input @ Value::Object(_)) => input,
                _ => {
                    return Err(refuse(
                        format!("{here}.function.arguments"),
                        "tool call arguments must be a JSON object for the Messages API",
                    ))
                }
            }
        };
        blocks.push(json!({ "type": "tool_use", "id": tool_id(id), "name": name, "input": input }));
    }
    Ok(blocks)
}

// === answer ===

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
struct Stream {
    chat: ChatStream,
    usage: Usage,
    stop_reason: Option<String>,
}

impl Stream {
    fn new(client_model: &str, include_usage: bool) -> Self {
        Self {
            chat: ChatStream::new(client_model, include_usage),
            usage: Usage::default(),
            stop_reason: None,
        }
    }

    fn end(&mut self, out: &mut BytesMut) {
        let reason = finish_reason(self.stop_reason.as_deref(), self.chat.has_tool_calls());
        self.chat.end(reason, Some(self.usage.to_chat()), out);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::golden;

    #[test]
    fn golden_cases() {
        let n = golden::run_all::<ChatViaMessages>("chat_via_messages");
        assert!(n >= 25, "only {n} golden cases");
    }

    #[test]
    fn the_upstream_streams_when_the_client_does() {
        let target = Target {
            upstream_model: "claude".to_owned(),
            codex_backend: false,
        };
        let json = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let streamed = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        assert!(
            !ChatViaMessages::request(json, &target)
                .unwrap()
                .upstream_stream
        );
        assert!(
            ChatViaMessages::request(streamed, &target)
                .unwrap()
                .upstream_stream
        );
    }

    #[test]
    fn an_error_object_is_not_an_answer() {
        let error =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(ChatViaMessages::json(error, "m").is_err());
        assert!(ChatViaMessages::json(b"[]", "m").is_err());
    }

    #[test]
    fn tool_ids_keep_what_anthropic_accepts_and_map_the_rest_the_same_way() {
        assert_eq!(tool_id("call_Ab-9"), "call_Ab-9");
        assert_eq!(tool_id("functions.get:0"), "functions_get_0");
        assert_eq!(tool_id(""), "_");
    }

    #[test]
    fn data_urls_split_into_media_type_and_data() {
        assert_eq!(
            base64_data_url("data:image/png;base64,iVBO"),
            Some(("image/png", "iVBO"))
        );
        assert_eq!(base64_data_url("data:text/plain,hello"), None);
        assert_eq!(base64_data_url("https://x/y.png"), None);
    }
}
