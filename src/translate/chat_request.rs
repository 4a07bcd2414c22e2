//! Reading a Chat Completions request, shared by the directions whose client speaks Chat: the
//! body as a JSON object, text of `system`/`developer`/`tool` messages (a string or text parts),
//! and refusals that name the field.

use serde_json::{Map, Value};

use super::Untranslatable;

pub fn refuse(field: impl Into<String>, message: impl Into<String>) -> Untranslatable {
    Untranslatable {
        field: field.into(),
        message: message.into(),
    }
}

/// The request body as a JSON object with a `messages` list.
pub fn parse(body: &[u8]) -> Result<(Map<String, Value>, Vec<Value>), Untranslatable> {
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return Err(refuse("", "the request body must be a JSON object"));
    };
    let messages = match request.remove("messages") {
        Some(Value::Array(messages)) if !messages.is_empty() => messages,
        _ => return Err(refuse("messages", "`messages` must be a non-empty list")),
    };
    Ok((request, messages))
}

/// A field that is absent or `null` counts as not given.
pub fn given<'a>(request: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    request.get(key).filter(|v| !v.is_null())
}

/// The text of a message whose content may only be text: a string, or a list of `text` parts
/// (joined with blank lines, as separate paragraphs). `None` for absent or `null` content.
pub fn text_only(content: Option<&Value>, field: &str) -> Result<Option<String>, Untranslatable> {
    match content {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => texts.push(text),
                    _ => {
                        return Err(refuse(
                            format!("{field}[{i}]"),
                            "only text parts are accepted in this message",
                        ))
                    }
                }
            }
            Ok(Some(texts.join("\n\n")))
        }
        Some(_) => Err(refuse(field, "content must be a string or a list of parts")),
    }
}

/// `n` above 1, `logprobs`, audio output: things no translated upstream can answer.
pub fn refuse_unanswerable(
    request: &Map<String, Value>,
    upstream: &str,
) -> Result<(), Untranslatable> {
    if given(request, "n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(refuse(
            "n",
            format!("{upstream} gives one choice per request"),
        ));
    }
    if given(request, "logprobs").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(refuse(
            "logprobs",
            format!("{upstream} does not return log probabilities here"),
        ));
    }
    if given(request, "audio").is_some() {
        return Err(refuse(
            "audio",
            format!("{upstream} does not answer with audio here"),
        ));
    }
    if let Some(modalities) = given(request, "modalities") {
        let text_only = modalities
            .as_array()
            .is_some_and(|m| m.iter().all(|m| m == "text"));
        if !text_only {
            return Err(refuse(
                "modalities",
                format!("{upstream} answers with text only here"),
            ));
        }
    }
    if given(request, "web_search_options").is_some() {
        return Err(refuse(
            "web_search_options",
            format!("Chat's web search has no form for {upstream} here"),
        ));
    }
    Ok(())
}

/// One function tool of the request.
pub struct FunctionTool<'a> {
    pub name: &'a str,
    pub description: Option<&'a Value>,
    pub parameters: Option<&'a Value>,
    pub strict: Option<&'a Value>,
}

pub fn function_tools(
    request: &Map<String, Value>,
) -> Result<Vec<FunctionTool<'_>>, Untranslatable> {
    let Some(tools) = given(request, "tools") else {
        return Ok(Vec::new());
    };
    let tools = tools
        .as_array()
        .ok_or_else(|| refuse("tools", "`tools` must be a list"))?;
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        let function = &tool["function"];
        let name = function["name"].as_str();
        match (tool["type"].as_str(), name) {
            (Some("function"), Some(name)) => out.push(FunctionTool {
                name,
                description: function.get("description").filter(|v| !v.is_null()),
                parameters: function.get("parameters").filter(|v| !v.is_null()),
                strict: function.get("strict").filter(|v| !v.is_null()),
            }),
            (Some("function"), None) => {
                return Err(refuse(
                    format!("tools[{i}].function.name"),
                    "a function tool needs a name",
                ))
            }
            _ => {
                return Err(refuse(
                    format!("tools[{i}].type"),
                    "only `function` tools can be translated",
                ))
            }
        }
    }
    Ok(out)
}

/// What `tool_choice` asks for.
pub enum ToolChoice<'a> {
    Auto,
    None,
    Required,
    Function(&'a str),
}

pub fn tool_choice(request: &Map<String, Value>) -> Result<Option<ToolChoice<'_>>, Untranslatable> {
    let Some(choice) = given(request, "tool_choice") else {
        return Ok(None);
    };
    match choice {
        Value::String(s) if s == "auto" => Ok(Some(ToolChoice::Auto)),
        Value::String(s) if s == "none" => Ok(Some(ToolChoice::None)),
        Value::String(s) if s == "required" => Ok(Some(ToolChoice::Required)),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            match choice["function"]["name"].as_str() {
                Some(name) => Ok(Some(ToolChoice::Function(name))),
                None => Err(refuse(
                    "tool_choice.function.name",
                    "a named tool choice needs a name",
                )),
            }
        }
        _ => Err(refuse(
            "tool_choice",
            "only `auto`, `none`, `required` and a named function can be translated",
        )),
    }
}

/// `stop`: a string or a list of strings; `None` when absent, `null` or empty.
pub fn stop_sequences(request: &Map<String, Value>) -> Result<Option<Vec<String>>, Untranslatable> {
    let stops = match given(request, "stop") {
        None => return Ok(None),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| refuse("stop", "`stop` must be a string or a list of strings"))?,
        Some(_) => {
            return Err(refuse(
                "stop",
                "`stop` must be a string or a list of strings",
            ))
        }
    };
    Ok((!stops.is_empty()).then_some(stops))
}

/// `max_completion_tokens`, else the older `max_tokens`.
pub fn max_tokens(request: &Map<String, Value>) -> Result<Option<u64>, Untranslatable> {
    for key in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = given(request, key) {
            return v
                .as_u64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| refuse(key, format!("`{key}` must be a positive integer")));
        }
    }
    Ok(None)
}
