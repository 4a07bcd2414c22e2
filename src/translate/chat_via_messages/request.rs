//! The request half of [`super`]: a Chat Completions body → a Messages body.

use serde_json::{json, Map, Value};

use super::DEFAULT_MAX_TOKENS;
use crate::translate::chat_request::{self, given, refuse, ToolChoice};
use crate::translate::{Target, Untranslatable};

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u64 = 1024;

pub(super) fn build(
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

#[cfg(test)]
mod tests {
    use super::*;

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
