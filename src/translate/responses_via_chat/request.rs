//! The client's Responses request → a Chat Completions request (the mapping table is in the
//! module doc of [`super`]).

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::messages::{required, Messages};
use super::names::flat_name;
use crate::translate::{Target, Translated, Untranslatable};

/// Top-level request keys that carry no content and have no Chat form: dropped.
const DROPPED_KEYS: &[&str] = &[
    "include",
    "prompt_cache_key",
    "client_metadata",
    "store",
    "metadata",
    "service_tier",
    "truncation",
    "top_logprobs",
    "max_tool_calls",
    "stream_options",
    "safety_identifier",
    "prompt_cache_retention",
    "generate",
    "user",
];

/// Tools the Responses API runs on OpenAI's side (and `tool_search`, whose calls have their own
/// item type). A Chat upstream cannot run them, and Codex sends some on every request
/// (`web_search`), so they are dropped: the model works without the capability.
const HOSTED_TOOLS: &[&str] = &[
    "web_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "file_search",
    "code_interpreter",
    "image_generation",
    "computer",
    "computer_use",
    "computer_use_preview",
    "mcp",
    "tool_search",
];

/// The description added to a freeform (`custom`) tool once it is a function with one string
/// argument.
const FREEFORM_NOTE: &str = "Pass the whole raw input as the `input` string argument.";

pub fn translate(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
    let request: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| refuse("", format!("the request body is not a JSON object: {e}")))?;
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut out = Map::new();
    out.insert("model".into(), Value::String(target.upstream_model.clone()));

    let mut messages = Messages::default();
    for (key, value) in &request {
        match key.as_str() {
            "model" | "stream" | "input" | "tools" | "tool_choice" | "parallel_tool_calls" => {}
            "instructions" => {
                match value {
                    Value::String(text) if !text.is_empty() => messages.push(json!({
                        "role": "system", "content": text
                    })),
                    Value::String(_) | Value::Null => {}
                    _ => return Err(refuse(
                        "instructions",
                        "only a string `instructions` can become a Chat Completions system message",
                    )),
                }
            }
            "previous_response_id" | "conversation" | "prompt" if !value.is_null() => {
                return Err(refuse(
                    key,
                    format!(
                        "`{key}` refers to conversation state stored by the OpenAI Responses \
                         API; a Chat Completions upstream has none, so the request would lose \
                         it. Send the whole conversation in `input` instead"
                    ),
                ));
            }
            "background" if value.as_bool() == Some(true) => {
                return Err(refuse(
                    key,
                    "background responses need the OpenAI Responses API; a Chat Completions \
                     upstream answers in the foreground only",
                ));
            }
            "max_output_tokens" => copy(&mut out, "max_tokens", value),
            "temperature" | "top_p" => copy(&mut out, key, value),
            "reasoning" => {
                if let Some(effort) = value.get("effort").filter(|e| !e.is_null()) {
                    out.insert("reasoning_effort".into(), effort.clone());
                }
            }
            "text" => {
                if let Some(format) = value.get("format").filter(|f| !f.is_null()) {
                    if let Some(format) = response_format(format)? {
                        out.insert("response_format".into(), format);
                    }
                }
            }
            key if DROPPED_KEYS.contains(&key) => {}
            // Unknown keys: hints of newer API versions. Keys that carry conversation content
            // are all handled above.
            _ => {}
        }
    }

    match request.get("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                messages.item(item, &format!("input[{i}]"))?;
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(refuse(
                "input",
                "`input` must be a string or a list of items",
            ))
        }
    }
    out.insert("messages".into(), Value::Array(messages.finish()));

    let tools = tools(request.get("tools"))?;
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = request.get("tool_choice").filter(|c| !c.is_null()) {
            out.insert("tool_choice".into(), tool_choice(choice)?);
        }
        // OpenAI refuses `parallel_tool_calls` on a request without tools.
        copy(
            &mut out,
            "parallel_tool_calls",
            request.get("parallel_tool_calls").unwrap_or(&Value::Null),
        );
    } else if let Some(choice) = request.get("tool_choice") {
        // Without tools the only meaningful choices are "auto" and "none" (there is nothing
        // to call either way); a forced tool cannot be honoured.
        if !matches!(choice, Value::Null | Value::String(_)) || choice == "required" {
            return Err(refuse(
                "tool_choice",
                "`tool_choice` forces a tool, but the request has no tool a Chat Completions \
                 upstream can call",
            ));
        }
    }

    if stream {
        out.insert("stream".into(), Value::Bool(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let body = serde_json::to_vec(&Value::Object(out))
        .map_err(|e| refuse("", format!("the translated request cannot be written: {e}")))?;
    Ok(Translated {
        body: Bytes::from(body),
        upstream_stream: stream,
    })
}

pub fn refuse(field: &str, message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        field: field.to_owned(),
        message: message.into(),
    }
}

pub fn copy(out: &mut Map<String, Value>, key: &str, value: &Value) {
    if !value.is_null() {
        out.insert(key.to_owned(), value.clone());
    }
}

// === Tools ===

fn tools(tools: Option<&Value>) -> Result<Vec<Value>, Untranslatable> {
    let list = match tools {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(refuse("tools", "`tools` must be a list")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "function" => out.push(function_tool(tool, required(tool, "name", &at)?)),
            "custom" => {
                let name = required(tool, "name", &at)?;
                let mut description = tool
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                if !description.is_empty() {
                    description.push_str("\n\n");
                }
                description.push_str(FREEFORM_NOTE);
                let format = &tool["format"];
                if format["type"] == "grammar" {
                    if let Some(definition) = format["definition"].as_str() {
                        let syntax = format["syntax"].as_str().unwrap_or("grammar");
                        description.push_str(&format!(
                            " The input must follow this {syntax} grammar:\n{definition}"
                        ));
                    }
                }
                out.push(json!({"type": "function", "function": {
                    "name": name,
                    "description": description,
                    "parameters": {
                        "type": "object",
                        "properties": {"input": {"type": "string"}},
                        "required": ["input"],
                        "additionalProperties": false,
                    },
                }}));
            }
            "local_shell" => out.push(json!({"type": "function", "function": {
                "name": "local_shell",
                "description": "Runs a command on the user's machine and returns its output.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "command": {"type": "array", "items": {"type": "string"}},
                        "workdir": {"type": "string"},
                        "timeout_ms": {"type": "number"},
                    },
                    "required": ["command"],
                    "additionalProperties": false,
                },
            }})),
            kind if HOSTED_TOOLS.contains(&kind) => {}
            // Function tools grouped under a name (Codex's MCP and collaboration tools): one
            // flat-named function each; answers name the namespace again (`names`).
            "namespace" => {
                let namespace = required(tool, "name", &at)?;
                let namespace = namespace.as_str().unwrap_or_default();
                let nested = tool["tools"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for (j, inner) in nested.iter().enumerate() {
                    let here = format!("{at}.tools[{j}]");
                    if inner["type"] != "function" {
                        return Err(refuse(
                            &here,
                            "only function tools of a namespace have a Chat Completions form",
                        ));
                    }
                    let name = required(inner, "name", &here)?;
                    let flat = flat_name(namespace, name.as_str().unwrap_or_default());
                    out.push(function_tool(inner, Value::String(flat)));
                }
            }
            other => {
                return Err(refuse(
                    &at,
                    format!("tools of type `{other}` have no Chat Completions form"),
                ));
            }
        }
    }
    Ok(out)
}

/// A Responses function tool as a Chat tool named `name`.
fn function_tool(tool: &Value, name: Value) -> Value {
    let mut function = Map::new();
    function.insert("name".into(), name);
    for key in ["description", "parameters", "strict"] {
        copy(&mut function, key, tool.get(key).unwrap_or(&Value::Null));
    }
    json!({"type": "function", "function": function})
}

fn tool_choice(choice: &Value) -> Result<Value, Untranslatable> {
    match choice {
        Value::String(mode) if matches!(mode.as_str(), "auto" | "none" | "required") => {
            Ok(choice.clone())
        }
        Value::Object(forced)
            if matches!(
                forced.get("type").and_then(Value::as_str),
                Some("function" | "custom")
            ) =>
        {
            let name = required(choice, "name", "tool_choice")?;
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
        _ => Err(refuse(
            "tool_choice",
            "only `auto`, `none`, `required` or a function tool can be chosen on a Chat \
             Completions upstream",
        )),
    }
}

/// `text.format` → `response_format`; `None` for plain text (the Chat default).
fn response_format(format: &Value) -> Result<Option<Value>, Untranslatable> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                copy(&mut schema, key, format.get(key).unwrap_or(&Value::Null));
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(refuse(
            "text.format",
            "only `text`, `json_object` and `json_schema` formats have a Chat Completions \
             form",
        )),
    }
}
