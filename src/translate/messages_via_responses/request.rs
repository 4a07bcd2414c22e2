//! The client's Messages request → a Responses request body (the mapping table is in the
//! module doc of [`super`]).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::stop::{MAX_COUNT, MAX_LEN};
use super::REASONING_SIGNATURE_PREFIX;
use crate::protocol::responses::DEFAULT_INSTRUCTIONS;
use crate::translate::{Target, Translated, Untranslatable};

/// Top-level fields that bring content or tools run by Anthropic, which an OpenAI upstream has
/// no form for: refused. Other fields not mapped (`top_k`, `service_tier`,
/// `context_management`, …) are hints and are dropped.
const REFUSED_FIELDS: &[&str] = &["mcp_servers", "container"];

pub fn translate(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
    let request: Value = serde_json::from_slice(body)
        .map_err(|e| refuse("", format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(request) = request else {
        return Err(refuse("", "the request body must be a JSON object"));
    };
    let codex = target.codex_backend;
    let mut out = Map::new();
    out.insert("model".into(), json!(target.upstream_model));

    let mut instructions = match request.get("system") {
        None | Some(Value::Null) => String::new(),
        Some(system) => system_text(system)?,
    };
    if codex && instructions.trim().is_empty() {
        instructions = DEFAULT_INSTRUCTIONS.to_owned();
    }
    if !instructions.is_empty() {
        out.insert("instructions".into(), Value::String(instructions));
    }

    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| refuse("messages", "`messages` must be a list"))?;
    let mut input = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        message_items(message, i, &mut input)?;
    }
    out.insert("input".into(), Value::Array(input));

    let mut has_tools = false;
    if let Some(tools) = request.get("tools").filter(|t| !t.is_null()) {
        let tools = tools
            .as_array()
            .ok_or_else(|| refuse("tools", "`tools` must be a list"))?;
        let mapped = tools
            .iter()
            .enumerate()
            .map(|(i, tool)| function_tool(tool, i))
            .collect::<Result<Vec<_>, _>>()?;
        has_tools = !mapped.is_empty();
        if has_tools {
            out.insert("tools".into(), Value::Array(mapped));
        }
    }
    let mut parallel = true;
    if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
        let (mapped, disable_parallel) = tool_choice(choice)?;
        parallel = !disable_parallel;
        out.insert("tool_choice".into(), mapped);
    }
    if has_tools {
        out.insert("parallel_tool_calls".into(), Value::Bool(parallel));
    }

    if let Some(thinking) = request.get("thinking").filter(|t| !t.is_null()) {
        if let Some(reasoning) = reasoning(thinking)? {
            out.insert("reasoning".into(), reasoning);
            // store:false keeps nothing upstream: the reasoning of a turn comes back in the next
            // request only as its encrypted content, carried in the thinking block's signature.
            out.insert("include".into(), json!(["reasoning.encrypted_content"]));
        }
    }

    if let Some(effort) = request
        .get("output_config")
        .and_then(|c| c.get("effort"))
        .and_then(Value::as_str)
    {
        let effort = match effort {
            "low" | "medium" | "high" => effort,
            "max" => "high",
            other => {
                return Err(refuse(
                    "output_config.effort",
                    format!("effort {other:?} is not low, medium, high or max"),
                ))
            }
        };
        let reasoning = out.entry("reasoning").or_insert_with(|| json!({}));
        reasoning["effort"] = json!(effort);
    }

    // The Codex backend refuses `max_output_tokens`, `temperature` and `top_p` with 400
    // "Unsupported parameter" (it manages its own budget and sampling), so they are dropped there.
    if let Some(max) = request.get("max_tokens").filter(|v| !v.is_null()) {
        let max = max
            .as_u64()
            .ok_or_else(|| refuse("max_tokens", "`max_tokens` must be a positive integer"))?;
        if !codex {
            // The Responses API takes no fewer than 16.
            out.insert("max_output_tokens".into(), json!(max.max(16)));
        }
    }
    // OpenAI's reasoning models refuse any sampling setting but the default. Sent only when it
    // says something: not the default 1, and not with thinking, where
    // Anthropic itself takes only the default temperature.
    let thinking = out.contains_key("reasoning");
    for key in ["temperature", "top_p"] {
        if let Some(value) = request.get(key).filter(|v| !v.is_null()) {
            let number = value
                .as_f64()
                .ok_or_else(|| refuse(key, format!("`{key}` must be a number")))?;
            if !codex && !thinking && number != 1.0 {
                out.insert(key.into(), value.clone());
            }
        }
    }
    if let Some(stops) = request.get("stop_sequences").filter(|v| !v.is_null()) {
        check_stop_sequences(stops)?;
    }
    // `metadata.user_id` is not sent: it is the client's identity, longer than the 64
    // characters OpenAI takes as a `prompt_cache_key`, and the relay derives the upstream key
    // from it per API key (as for a native client's `prompt_cache_key`), which needs the
    // relay's secret.

    for key in REFUSED_FIELDS {
        if request.get(*key).is_some_and(|v| !v.is_null()) {
            return Err(refuse(
                key,
                format!(
                    "`{key}` has no equivalent in the OpenAI Responses API this account speaks"
                ),
            ));
        }
    }

    let client_stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(refuse("stream", "`stream` must be a boolean")),
    };
    let upstream_stream = codex || client_stream;
    out.insert("stream".into(), Value::Bool(upstream_stream));
    // A Messages conversation is stateless: nothing is kept upstream (the Codex backend requires
    // this too).
    out.insert("store".into(), Value::Bool(false));

    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| refuse("", format!("the translated body cannot be written: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        upstream_stream,
    })
}

/// `stop_sequences` are applied by the translator (see [`super::stop`]), not sent upstream; they
/// are checked here, bounded.
fn check_stop_sequences(stops: &Value) -> Result<(), Untranslatable> {
    let list = stops.as_array().ok_or_else(|| {
        refuse(
            "stop_sequences",
            "`stop_sequences` must be a list of strings",
        )
    })?;
    if list.len() > MAX_COUNT {
        return Err(refuse(
            "stop_sequences",
            format!("at most {MAX_COUNT} stop sequences can be applied on this account"),
        ));
    }
    for (i, stop) in list.iter().enumerate() {
        let at = format!("stop_sequences[{i}]");
        let text = stop
            .as_str()
            .ok_or_else(|| refuse(&at, "a stop sequence must be a string"))?;
        if text.len() > MAX_LEN {
            return Err(refuse(
                &at,
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

/// `system` as one string: a string as is, text blocks joined by a blank line.
fn system_text(system: &Value) -> Result<String, Untranslatable> {
    match system {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (i, block) in blocks.iter().enumerate() {
                match (block_type(block), block.get("text").and_then(Value::as_str)) {
                    ("text", Some(text)) => parts.push(text),
                    _ => {
                        return Err(refuse(
                            &format!("system[{i}]"),
                            "only text blocks can become OpenAI instructions",
                        ))
                    }
                }
            }
            Ok(parts.join("\n\n"))
        }
        _ => Err(refuse(
            "system",
            "`system` must be a string or a list of text blocks",
        )),
    }
}

fn block_type(block: &Value) -> &str {
    block.get("type").and_then(Value::as_str).unwrap_or("")
}

/// A message's content as blocks (a string is one text block).
fn blocks_of(message: &Value, path: &str) -> Result<Vec<Value>, Untranslatable> {
    match message.get("content") {
        Some(Value::String(text)) => Ok(vec![json!({"type": "text", "text": text})]),
        Some(Value::Array(blocks)) => Ok(blocks.clone()),
        _ => Err(refuse(
            &format!("{path}.content"),
            "`content` must be a string or a list of blocks",
        )),
    }
}

/// Appends the input items of one message. Blocks keep their order: runs of text (and images)
/// become one `message` item, each tool call or result its own item between them.
fn message_items(
    message: &Value,
    index: usize,
    input: &mut Vec<Value>,
) -> Result<(), Untranslatable> {
    let path = format!("messages[{index}]");
    let role = message.get("role").and_then(Value::as_str).unwrap_or("");
    let blocks = blocks_of(message, &path)?;
    let (upstream_role, text_type) = match role {
        "user" => ("user", "input_text"),
        "assistant" => ("assistant", "output_text"),
        // Claude Code sends mid-conversation system entries; Responses calls them developer.
        "system" => ("developer", "input_text"),
        _ => {
            return Err(refuse(
                &format!("{path}.role"),
                format!("role {role:?} is not one the Messages API has"),
            ))
        }
    };
    let mut parts: Vec<Value> = Vec::new();
    let flush = |parts: &mut Vec<Value>, input: &mut Vec<Value>| {
        if !parts.is_empty() {
            input.push(json!({
                "type": "message",
                "role": upstream_role,
                "content": std::mem::take(parts),
            }));
        }
    };
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{path}.content[{j}]");
        match (role, block_type(block)) {
            (_, "text") => {
                let text = block.get("text").and_then(Value::as_str).ok_or_else(|| {
                    refuse(&format!("{at}.text"), "a text block needs a string `text`")
                })?;
                if !text.is_empty() {
                    parts.push(json!({"type": text_type, "text": text}));
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
                let carried = block
                    .get("signature")
                    .and_then(Value::as_str)
                    .and_then(|s| s.strip_prefix(REASONING_SIGNATURE_PREFIX));
                if let Some(encrypted) = carried {
                    flush(&mut parts, input);
                    let text = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                    let summary = if text.is_empty() {
                        json!([])
                    } else {
                        json!([{"type": "summary_text", "text": text}])
                    };
                    input.push(json!({
                        "type": "reasoning",
                        "summary": summary,
                        "encrypted_content": encrypted,
                    }));
                }
            }
            ("assistant", "redacted_thinking") => {}
            (_, other) => {
                return Err(refuse(
                    &at,
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

/// An `image` block → `input_image` (a data URL for base64 sources).
fn image_part(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let source = &block["source"];
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str);
            let data = source.get("data").and_then(Value::as_str);
            match (media, data) {
                (Some(media), Some(data)) => Ok(json!({
                    "type": "input_image",
                    "image_url": format!("data:{media};base64,{data}"),
                })),
                _ => Err(refuse(
                    &format!("{at}.source"),
                    "a base64 image needs `media_type` and `data`",
                )),
            }
        }
        Some("url") => match source.get("url").and_then(Value::as_str) {
            Some(url) => Ok(json!({"type": "input_image", "image_url": url})),
            None => Err(refuse(
                &format!("{at}.source.url"),
                "a URL image needs `url`",
            )),
        },
        _ => Err(refuse(
            &format!("{at}.source"),
            "only base64 and URL images can be sent to the OpenAI Responses API",
        )),
    }
}

/// A `document` block: a base64 PDF → `input_file`; a plain-text source → `input_text`.
fn document_part(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let source = &block["source"];
    let kind = source.get("type").and_then(Value::as_str);
    let media = source.get("media_type").and_then(Value::as_str);
    let data = source.get("data").and_then(Value::as_str);
    match (kind, media, data) {
        (Some("base64"), Some("application/pdf"), Some(data)) => Ok(json!({
            "type": "input_file",
            "filename": block.get("title").and_then(Value::as_str).unwrap_or("document.pdf"),
            "file_data": format!("data:application/pdf;base64,{data}"),
        })),
        (Some("text"), _, Some(text)) => Ok(json!({"type": "input_text", "text": text})),
        _ => Err(refuse(
            &format!("{at}.source"),
            "only base64 PDF and plain-text documents can be sent to the OpenAI Responses API",
        )),
    }
}

/// A `tool_use` block → a `function_call` item; the id passes through as the `call_id`.
fn function_call(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let id = block.get("id").and_then(Value::as_str);
    let name = block.get("name").and_then(Value::as_str);
    let (Some(id), Some(name)) = (id, name) else {
        return Err(refuse(at, "a tool_use block needs `id` and `name`"));
    };
    let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_owned(),
        // Arguments this relay handed over as a string (cut short, not JSON) go back as they
        // came.
        Some(Value::String(raw)) => raw.clone(),
        Some(input) => input.to_string(),
    };
    Ok(json!({
        "type": "function_call",
        "call_id": id,
        "name": name,
        "arguments": arguments,
    }))
}

/// What an `is_error` result's output starts with: Responses has no error flag on a tool output,
/// so the model is told in words.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// A `tool_result` block → a `function_call_output` item paired by `call_id`. Text-only content
/// is one string; content with images is a list of `input_text`/`input_image` parts.
fn tool_output(block: &Value, at: &str) -> Result<Value, Untranslatable> {
    let call_id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            refuse(
                &format!("{at}.tool_use_id"),
                "a tool_result needs `tool_use_id`",
            )
        })?;
    let is_error = block
        .get("is_error")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut parts: Vec<Value> = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => parts.push(json!({"type": "input_text", "text": text})),
        Some(Value::Array(blocks)) => {
            for (k, inner) in blocks.iter().enumerate() {
                let inner_at = format!("{at}.content[{k}]");
                match block_type(inner) {
                    "text" => {
                        let text = inner.get("text").and_then(Value::as_str).ok_or_else(|| {
                            refuse(&format!("{inner_at}.text"), "a text block needs `text`")
                        })?;
                        parts.push(json!({"type": "input_text", "text": text}));
                    }
                    "image" => parts.push(image_part(inner, &inner_at)?),
                    other => {
                        return Err(refuse(
                            &inner_at,
                            format!("a {other:?} block in a tool result has no form in the OpenAI Responses API"),
                        ))
                    }
                }
            }
        }
        Some(_) => {
            return Err(refuse(
                &format!("{at}.content"),
                "`content` must be a string or a list of blocks",
            ))
        }
    }
    let only_text = parts.iter().all(|p| p["type"] == "input_text");
    let output = if only_text {
        let text = parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n");
        let text = if is_error {
            format!("{TOOL_ERROR_PREFIX}{text}")
        } else {
            text
        };
        Value::String(text)
    } else {
        if is_error {
            parts.insert(
                0,
                json!({"type": "input_text", "text": TOOL_ERROR_PREFIX.trim_end()}),
            );
        }
        Value::Array(parts)
    };
    Ok(json!({
        "type": "function_call_output",
        "call_id": call_id,
        "output": output,
    }))
}

/// A client tool → a function tool. Anthropic's server tools (`web_search_…`, `bash_…`, …) run
/// on Anthropic's side and have no counterpart here.
fn function_tool(tool: &Value, index: usize) -> Result<Value, Untranslatable> {
    let at = format!("tools[{index}]");
    if let Some(kind) = tool.get("type").and_then(Value::as_str) {
        if kind != "custom" {
            return Err(refuse(
                &format!("{at}.type"),
                format!("the Anthropic server tool {kind:?} cannot run on an OpenAI account"),
            ));
        }
    }
    let name = tool
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(&format!("{at}.name"), "a tool needs a `name`"))?;
    let mut function = json!({
        "type": "function",
        "name": name,
        "parameters": tool.get("input_schema").cloned().unwrap_or_else(|| json!({"type": "object"})),
        "strict": false,
    });
    if let Some(description) = tool.get("description").and_then(Value::as_str) {
        function["description"] = json!(description);
    }
    Ok(function)
}

/// `tool_choice` → Responses' `tool_choice`, and whether parallel calls are disabled.
fn tool_choice(choice: &Value) -> Result<(Value, bool), Untranslatable> {
    let disable_parallel = choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mapped = match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "name": name}),
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
fn reasoning(thinking: &Value) -> Result<Option<Value>, Untranslatable> {
    match thinking.get("type").and_then(Value::as_str) {
        Some("disabled") => Ok(None),
        Some("enabled") => {
            let budget = thinking
                .get("budget_tokens")
                .and_then(Value::as_u64)
                .ok_or_else(|| {
                    refuse(
                        "thinking.budget_tokens",
                        "enabled thinking needs `budget_tokens`",
                    )
                })?;
            Ok(Some(
                json!({"effort": effort_for_budget(budget), "summary": "auto"}),
            ))
        }
        // The model decides how much to think: the upstream's default effort.
        Some("adaptive") => Ok(Some(json!({"summary": "auto"}))),
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
