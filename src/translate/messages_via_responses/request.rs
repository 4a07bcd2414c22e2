//! The client's Messages request → a Responses request body (the mapping table is in the
//! module doc of [`super`]).
//!
//! The body is read once into borrowed parts ([`client`]) and the upstream body is written once
//! from typed parts ([`upstream`]); the texts between them are carried as spans of the client's
//! JSON ([`Text`]), never through a `serde_json::Value` tree. A body whose shape does not fit is
//! read a second time, only to name the field (see [`shape_refusal`]).

mod client;
mod upstream;

use std::borrow::Cow;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::stop::{MAX_COUNT, MAX_LEN};
use super::REASONING_SIGNATURE_PREFIX;
use crate::protocol::responses::DEFAULT_INSTRUCTIONS;
use crate::translate::json_text::{self, StrOrList, Text};
use crate::translate::{Target, Translated, Untranslatable};
use client::{Block, Message, Request, Source, SystemBlock, Tool, ToolChoice, ToolContent};
use upstream::{
    AnyObject, Body, Choice, FunctionChoice, FunctionTool, Item, Output, Part, Reasoning, Schema,
    Summary,
};

pub fn translate(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Err(e) => not_json(&e),
                Ok(_) => refuse("", "the request body must be a JSON object"),
            },
        );
    }
    let request: Request<'_> = serde_json::from_slice(body).map_err(|_| shape_refusal(body))?;
    let codex = target.codex_backend;

    let mut instructions = match &request.system {
        None => None,
        Some(system) => Some(system_text(system)?),
    };
    if codex && instructions.as_ref().is_none_or(Text::is_blank) {
        instructions = Some(Text::Plain(Cow::Borrowed(DEFAULT_INSTRUCTIONS)));
    }
    // An empty `system` sends no instructions.
    let instructions = instructions.filter(|text| !text.is_empty());

    let messages = request
        .messages
        .as_deref()
        .ok_or_else(|| refuse("messages", "`messages` must be a list"))?;
    let mut input = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        message_items(message, i, &mut input)?;
    }

    let tools = request
        .tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, tool)| function_tool(tool, i))
        .collect::<Result<Vec<_>, _>>()?;
    let (tool_choice, disable_parallel) = match &request.tool_choice {
        Some(choice) => {
            let (mapped, disable) = tool_choice(choice)?;
            (Some(mapped), disable)
        }
        None => (None, false),
    };
    let parallel_tool_calls = (!tools.is_empty()).then_some(!disable_parallel);

    let mut reasoning = match &request.thinking {
        Some(thinking) => reasoning(thinking)?,
        None => None,
    };
    // store:false keeps nothing upstream: the reasoning of a turn comes back in the next
    // request only as its encrypted content, carried in the thinking block's signature.
    let include = reasoning
        .is_some()
        .then_some(["reasoning.encrypted_content"]);
    if let Some(effort) = request
        .output_config
        .as_ref()
        .and_then(|c| c.effort)
        .filter(|e| json_text::is_string(e))
    {
        let effort = match json_text::decoded(effort).as_ref() {
            "low" => "low",
            "medium" => "medium",
            "high" | "max" => "high",
            other => {
                return Err(refuse(
                    "output_config.effort",
                    format!("effort {other:?} is not low, medium, high or max"),
                ))
            }
        };
        reasoning.get_or_insert_with(Reasoning::default).effort = Some(effort);
    }

    // The Codex backend refuses `max_output_tokens`, `temperature` and `top_p` with 400
    // "Unsupported parameter" (it manages its own budget and sampling), so they are dropped there.
    let mut max_output_tokens = None;
    if let Some(max) = request.max_tokens {
        let max = serde_json::from_str::<u64>(max.get())
            .map_err(|_| refuse("max_tokens", "`max_tokens` must be a positive integer"))?;
        if !codex {
            // The Responses API takes no fewer than 16.
            max_output_tokens = Some(max.max(16));
        }
    }
    // OpenAI's reasoning models refuse any sampling setting but the default. Sent only when it
    // says something: not the default 1, and not with thinking, where
    // Anthropic itself takes only the default temperature.
    let sendable = !codex && reasoning.is_none();
    let temperature = sampling("temperature", request.temperature, sendable)?;
    let top_p = sampling("top_p", request.top_p, sendable)?;
    if let Some(stops) = &request.stop_sequences {
        check_stop_sequences(stops)?;
    }
    // `metadata.user_id` is not sent: it is the client's identity, longer than the 64
    // characters OpenAI takes as a `prompt_cache_key`, and the relay derives the upstream key
    // from it per API key (as for a native client's `prompt_cache_key`), which needs the
    // relay's secret.

    // Content or tools run by Anthropic, which an OpenAI upstream has no form for.
    for (key, present) in [
        ("mcp_servers", request.mcp_servers.is_some()),
        ("container", request.container.is_some()),
    ] {
        if present {
            return Err(refuse(
                key,
                format!(
                    "`{key}` has no equivalent in the OpenAI Responses API this account speaks"
                ),
            ));
        }
    }

    let client_stream = match request.stream.map(RawValue::get) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(refuse("stream", "`stream` must be a boolean")),
    };
    let upstream_stream = codex || client_stream;

    let body = Body {
        model: &target.upstream_model,
        instructions,
        input,
        tools,
        tool_choice,
        parallel_tool_calls,
        reasoning,
        include,
        max_output_tokens,
        temperature,
        top_p,
        stream: upstream_stream,
        // A Messages conversation is stateless: nothing is kept upstream (the Codex backend
        // requires this too).
        store: false,
    };
    let body = serde_json::to_vec(&body)
        .map_err(|e| refuse("", format!("the translated body cannot be written: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        upstream_stream,
    })
}

/// A sampling setting, checked to be a number; sent (as the client wrote it) when `sendable`
/// and not the default 1.
fn sampling<'a>(
    key: &str,
    value: Option<&'a RawValue>,
    sendable: bool,
) -> Result<Option<&'a RawValue>, Untranslatable> {
    let Some(value) = value else { return Ok(None) };
    let number = serde_json::from_str::<serde_json::Number>(value.get())
        .ok()
        .and_then(|n| n.as_f64())
        .ok_or_else(|| refuse(key, format!("`{key}` must be a number")))?;
    Ok((sendable && number != 1.0).then_some(value))
}

fn not_json(e: &serde_json::Error) -> Untranslatable {
    refuse("", format!("the request body is not valid JSON: {e}"))
}

/// Why a body that did not fit [`Request`] was refused: read again with its path tracked, so
/// the refusal names the field (`messages[2].content[0].text`) and what was expected there.
/// Only a refused request pays for this second reading.
#[cold]
fn shape_refusal(body: &[u8]) -> Untranslatable {
    let mut reader = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, Request<'_>>(&mut reader) {
        Ok(_) => refuse("", "the request body could not be read"),
        Err(e) => {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let inner = e.into_inner();
            if inner.is_data() {
                refuse(&field, inner.to_string())
            } else {
                not_json(&inner)
            }
        }
    }
}

/// `stop_sequences` are applied by the translator (see [`super::stop`]), not sent upstream; they
/// are checked here, bounded.
fn check_stop_sequences(list: &[Cow<'_, str>]) -> Result<(), Untranslatable> {
    if list.len() > MAX_COUNT {
        return Err(refuse(
            "stop_sequences",
            format!("at most {MAX_COUNT} stop sequences can be applied on this account"),
        ));
    }
    for (i, text) in list.iter().enumerate() {
        if text.len() > MAX_LEN {
            return Err(refuse(
                &format!("stop_sequences[{i}]"),
                format!("a stop sequence can be at most {MAX_LEN} bytes on this account"),
            ));
        }
    }
    Ok(())
}

fn refuse(field: &str, message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A string field of a block, which the mapping needs as a string.
fn string_field<'a>(
    field: Option<&'a RawValue>,
    at: impl FnOnce() -> String,
    message: &str,
) -> Result<Text<'a>, Untranslatable> {
    field
        .and_then(Text::literal)
        .ok_or_else(|| refuse(&at(), message))
}

/// `system` as one string: a string as is, text blocks joined by a blank line.
fn system_text<'a>(system: &'a StrOrList<'a, SystemBlock<'a>>) -> Result<Text<'a>, Untranslatable> {
    match system {
        StrOrList::Str(text) => Ok(Text::Plain(Cow::Borrowed(text))),
        StrOrList::List(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match (block.kind.as_deref(), block.text) {
                    (Some("text"), Some(text)) if json_text::is_string(text) => texts.push(text),
                    _ => {
                        return Err(refuse(
                            &format!("system[{i}]"),
                            "only text blocks can become OpenAI instructions",
                        ))
                    }
                }
            }
            Ok(Text::joined("", &texts, "\n\n"))
        }
    }
}

/// Appends the input items of one message. Blocks keep their order: runs of text (and images)
/// become one `message` item, each tool call or result its own item between them.
fn message_items<'a>(
    message: &'a Message<'a>,
    index: usize,
    input: &mut Vec<Item<'a>>,
) -> Result<(), Untranslatable> {
    let path = || format!("messages[{index}]");
    let role = message.role.as_deref().unwrap_or("");
    let (upstream_role, assistant) = match role {
        "user" => ("user", false),
        "assistant" => ("assistant", true),
        // Claude Code sends mid-conversation system entries; Responses calls them developer.
        "system" => ("developer", false),
        _ => {
            return Err(refuse(
                &format!("{}.role", path()),
                format!("role {role:?} is not one the Messages API has"),
            ))
        }
    };
    let text_part = |text: Text<'a>| {
        if assistant {
            Part::OutputText { text }
        } else {
            Part::InputText { text }
        }
    };
    let blocks = match &message.content {
        Some(StrOrList::Str(text)) => {
            if !text.is_empty() {
                input.push(Item::Message {
                    role: upstream_role,
                    content: vec![text_part(Text::Plain(Cow::Borrowed(text)))],
                });
            }
            return Ok(());
        }
        Some(StrOrList::List(blocks)) => blocks,
        None => {
            return Err(refuse(
                &format!("{}.content", path()),
                "`content` must be a string or a list of blocks",
            ))
        }
    };
    let mut parts: Vec<Part<'a>> = Vec::new();
    let flush = |parts: &mut Vec<Part<'a>>, input: &mut Vec<Item<'a>>| {
        if !parts.is_empty() {
            input.push(Item::Message {
                role: upstream_role,
                content: std::mem::take(parts),
            });
        }
    };
    for (j, block) in blocks.iter().enumerate() {
        let at = || format!("{}.content[{j}]", path());
        match (role, block.kind.as_deref().unwrap_or("")) {
            (_, "text") => {
                let text = string_field(
                    block.text,
                    || format!("{}.text", at()),
                    "a text block needs a string `text`",
                )?;
                if !text.is_empty() {
                    parts.push(text_part(text));
                }
            }
            ("user", "image") => parts.push(image_part(block, &at)?),
            ("user", "document") => parts.push(document_part(block, &at)?),
            ("user", "tool_result") => {
                flush(&mut parts, input);
                input.push(tool_output(block, &at)?);
            }
            ("assistant", "tool_use") => {
                flush(&mut parts, input);
                input.push(function_call(block, &at)?);
            }
            ("assistant", "thinking") => {
                // Only reasoning this relay carried from an OpenAI upstream can go back; a
                // signature from Anthropic means nothing there (the relay drops such blocks for
                // another Anthropic account alike).
                if let Some(item) = carried_reasoning(block) {
                    flush(&mut parts, input);
                    input.push(item);
                }
            }
            ("assistant", "redacted_thinking") => {}
            (_, other) => {
                return Err(refuse(
                    &at(),
                    format!(
                    "a {other:?} block in the {role} message has no form in the OpenAI Responses API"
                ),
                ))
            }
        }
    }
    flush(&mut parts, input);
    Ok(())
}

/// A thinking block whose signature this relay made → the `reasoning` item it came from.
fn carried_reasoning<'a>(block: &Block<'a>) -> Option<Item<'a>> {
    let signature = block.signature.filter(|s| json_text::is_string(s))?;
    let encrypted = match json_text::decoded(signature) {
        Cow::Borrowed(s) => Cow::Borrowed(s.strip_prefix(REASONING_SIGNATURE_PREFIX)?),
        Cow::Owned(s) => Cow::Owned(s.strip_prefix(REASONING_SIGNATURE_PREFIX)?.to_owned()),
    };
    let summary = match block.thinking.and_then(Text::literal) {
        Some(text) if !text.is_empty() => vec![Summary { text }],
        _ => Vec::new(),
    };
    Some(Item::Reasoning {
        summary,
        encrypted_content: Text::Plain(encrypted),
    })
}

/// A block's `source`, read for the block types that have one.
fn source_of<'a>(
    block: &Block<'a>,
    at: &impl Fn() -> String,
) -> Result<Source<'a>, Untranslatable> {
    let raw = block.source.map_or("null", RawValue::get);
    serde_json::from_str(raw).map_err(|_| {
        refuse(
            &format!("{}.source", at()),
            "`source` must be an object with a `type`",
        )
    })
}

/// An `image` block → `input_image` (a data URL for base64 sources).
fn image_part<'a>(block: &Block<'a>, at: &impl Fn() -> String) -> Result<Part<'a>, Untranslatable> {
    let source = source_of(block, at)?;
    match source.kind.as_deref() {
        Some("base64") => {
            let media = source.media_type.filter(|m| json_text::is_string(m));
            let data = source.data.filter(|d| json_text::is_string(d));
            match (media, data) {
                (Some(media), Some(data)) => Ok(Part::InputImage {
                    image_url: data_url(media, data),
                }),
                _ => Err(refuse(
                    &format!("{}.source", at()),
                    "a base64 image needs `media_type` and `data`",
                )),
            }
        }
        Some("url") => match source.url.and_then(Text::literal) {
            Some(url) => Ok(Part::InputImage { image_url: url }),
            None => Err(refuse(
                &format!("{}.source.url", at()),
                "a URL image needs `url`",
            )),
        },
        _ => Err(refuse(
            &format!("{}.source", at()),
            "only base64 and URL images can be sent to the OpenAI Responses API",
        )),
    }
}

/// `data:<media type>;base64,<data>`, from the two string literals.
fn data_url<'a>(media: &'a RawValue, data: &'a RawValue) -> Text<'a> {
    let media = json_text::decoded(media);
    Text::joined(&format!("data:{media};base64,"), &[data], "")
}

/// A `document` block: a base64 PDF → `input_file`; a plain-text source → `input_text`.
fn document_part<'a>(
    block: &Block<'a>,
    at: &impl Fn() -> String,
) -> Result<Part<'a>, Untranslatable> {
    let source = source_of(block, at)?;
    let media = source
        .media_type
        .filter(|m| json_text::is_string(m))
        .map(json_text::decoded);
    let data = source.data.filter(|d| json_text::is_string(d));
    match (source.kind.as_deref(), media.as_deref(), data) {
        (Some("base64"), Some("application/pdf"), Some(data)) => Ok(Part::InputFile {
            filename: block
                .title
                .and_then(Text::literal)
                .unwrap_or(Text::Plain(Cow::Borrowed("document.pdf"))),
            file_data: Text::joined("data:application/pdf;base64,", &[data], ""),
        }),
        (Some("text"), _, Some(text)) => Ok(Part::InputText {
            text: Text::Literal(text),
        }),
        _ => Err(refuse(
            &format!("{}.source", at()),
            "only base64 PDF and plain-text documents can be sent to the OpenAI Responses API",
        )),
    }
}

/// A `tool_use` block → a `function_call` item; the id passes through as the `call_id`.
fn function_call<'a>(
    block: &Block<'a>,
    at: &impl Fn() -> String,
) -> Result<Item<'a>, Untranslatable> {
    let id = block.id.and_then(Text::literal);
    let name = block.name.and_then(Text::literal);
    let (Some(call_id), Some(name)) = (id, name) else {
        return Err(refuse(&at(), "a tool_use block needs `id` and `name`"));
    };
    let arguments = match block.input {
        None => Text::Plain(Cow::Borrowed("{}")),
        // Arguments this relay handed over as a string (cut short, not JSON) go back as they
        // came.
        Some(raw) if json_text::is_string(raw) => Text::Literal(raw),
        // The object's JSON text as the client wrote it: for a call this relay relayed, the
        // upstream's own arguments text, so the conversation's prefix stays the same.
        Some(raw) => Text::Plain(Cow::Borrowed(raw.get())),
    };
    Ok(Item::FunctionCall {
        call_id,
        name,
        arguments,
    })
}

/// What an `is_error` result's output starts with: Responses has no error flag on a tool output,
/// so the model is told in words.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// A `tool_result` block → a `function_call_output` item paired by `call_id`. Text-only content
/// is one string; content with images is a list of `input_text`/`input_image` parts.
fn tool_output<'a>(
    block: &Block<'a>,
    at: &impl Fn() -> String,
) -> Result<Item<'a>, Untranslatable> {
    let call_id = string_field(
        block.tool_use_id,
        || format!("{}.tool_use_id", at()),
        "a tool_result needs `tool_use_id`",
    )?;
    let is_error = block.is_error.is_some_and(|e| e.get() == "true");
    let content: Option<ToolContent<'a>> = match block.content {
        None => None,
        Some(raw) => Some(serde_json::from_str(raw.get()).map_err(|_| {
            refuse(
                &format!("{}.content", at()),
                "`content` must be a string or a list of blocks",
            )
        })?),
    };
    let prefix = if is_error { TOOL_ERROR_PREFIX } else { "" };
    let output = match &content {
        None => Output::Text(Text::Plain(Cow::Borrowed(prefix))),
        // A string is written as it came (with the prefix, a joined literal).
        Some(StrOrList::Str(_)) => match block.content {
            Some(raw) => Output::Text(Text::joined(prefix, &[raw], "")),
            None => Output::Text(Text::Plain(Cow::Borrowed(prefix))),
        },
        Some(StrOrList::List(blocks)) => tool_output_parts(blocks, prefix, at)?,
    };
    Ok(Item::FunctionCallOutput { call_id, output })
}

/// A tool result's blocks: text only → one string (texts joined by a newline), with images →
/// `input_text`/`input_image` parts.
fn tool_output_parts<'a>(
    blocks: &[Block<'a>],
    prefix: &'static str,
    at: &impl Fn() -> String,
) -> Result<Output<'a>, Untranslatable> {
    let mut texts = Vec::with_capacity(blocks.len());
    let mut parts = Vec::new();
    for (k, inner) in blocks.iter().enumerate() {
        let inner_at = || format!("{}.content[{k}]", at());
        match inner.kind.as_deref().unwrap_or("") {
            "text" => {
                let text = inner
                    .text
                    .filter(|t| json_text::is_string(t))
                    .ok_or_else(|| {
                        refuse(&format!("{}.text", inner_at()), "a text block needs `text`")
                    })?;
                texts.push(text);
                parts.push(Part::InputText {
                    text: Text::Literal(text),
                });
            }
            "image" => parts.push(image_part(inner, &inner_at)?),
            other => {
                return Err(refuse(
                    &inner_at(),
                    format!(
                        "a {other:?} block in a tool result has no form in the OpenAI Responses API"
                    ),
                ))
            }
        }
    }
    if parts.iter().all(Part::is_text) {
        return Ok(Output::Text(Text::joined(prefix, &texts, "\n")));
    }
    if !prefix.is_empty() {
        parts.insert(
            0,
            Part::InputText {
                text: Text::Plain(Cow::Borrowed(prefix.trim_end())),
            },
        );
    }
    Ok(Output::Parts(parts))
}

/// A client tool → a function tool. Anthropic's server tools (`web_search_…`, `bash_…`, …) run
/// on Anthropic's side and have no counterpart here.
fn function_tool<'a>(tool: &'a Tool<'a>, index: usize) -> Result<FunctionTool<'a>, Untranslatable> {
    let at = || format!("tools[{index}]");
    if let Some(kind) = tool.kind.filter(|k| json_text::is_string(k)) {
        let kind = json_text::decoded(kind);
        if kind != "custom" {
            return Err(refuse(
                &format!("{}.type", at()),
                format!("the Anthropic server tool {kind:?} cannot run on an OpenAI account"),
            ));
        }
    }
    let name = string_field(
        tool.name,
        || format!("{}.name", at()),
        "a tool needs a `name`",
    )?;
    Ok(FunctionTool {
        name,
        description: tool.description.and_then(Text::literal),
        parameters: tool
            .input_schema
            .map_or(Schema::AnyObject(AnyObject {}), Schema::Given),
        strict: false,
    })
}

/// `tool_choice` → Responses' `tool_choice`, and whether parallel calls are disabled.
fn tool_choice<'a>(choice: &'a ToolChoice<'a>) -> Result<(Choice<'a>, bool), Untranslatable> {
    let disable_parallel = choice
        .disable_parallel_tool_use
        .is_some_and(|d| d.get() == "true");
    let mapped = match choice.kind.as_deref() {
        Some("auto") => Choice::Mode("auto"),
        Some("any") => Choice::Mode("required"),
        Some("none") => Choice::Mode("none"),
        Some("tool") => match choice.name.and_then(Text::literal) {
            Some(name) => Choice::Function(FunctionChoice { name }),
            None => return Err(refuse("tool_choice.name", "a `tool` choice needs `name`")),
        },
        _ => {
            return Err(refuse(
                "tool_choice.type",
                "`tool_choice.type` must be auto, any, tool or none",
            ))
        }
    };
    Ok((mapped, disable_parallel))
}

/// `thinking` → `reasoning` (`None` when thinking is disabled). Budgets map to efforts by
/// Claude Code's own steps: "think" (4k) low, "think hard" (10k) medium, "ultrathink" (32k) high.
fn reasoning(thinking: &client::Thinking<'_>) -> Result<Option<Reasoning>, Untranslatable> {
    match thinking.kind.as_deref() {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let budget = thinking
                .budget_tokens
                .and_then(|b| serde_json::from_str::<u64>(b.get()).ok())
                .ok_or_else(|| {
                    refuse(
                        "thinking.budget_tokens",
                        "enabled thinking needs `budget_tokens`",
                    )
                })?;
            Ok(Some(Reasoning {
                effort: Some(effort_for_budget(budget)),
                summary: Some("auto"),
            }))
        }
        // The model decides how much to think: the upstream's default effort.
        Some("adaptive") => Ok(Some(Reasoning {
            effort: None,
            summary: Some("auto"),
        })),
        _ => Err(refuse(
            "thinking.type",
            "`thinking.type` must be enabled, adaptive or disabled",
        )),
    }
}

pub fn effort_for_budget(budget: u64) -> &'static str {
    match budget {
        0..4_096 => "low",
        4_096..16_384 => "medium",
        _ => "high",
    }
}
