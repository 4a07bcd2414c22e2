//! The request half of [`super`]: a Chat Completions body → a Responses body.

use serde_json::{json, Map, Value};

use crate::protocol::responses::DEFAULT_INSTRUCTIONS;
use crate::translate::chat_request::{self, given, refuse, ToolChoice};
use crate::translate::{Target, Untranslatable};

pub(super) fn build(
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
