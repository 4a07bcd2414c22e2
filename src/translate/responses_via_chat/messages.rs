//! Responses input items → Chat `messages` (the mapping table is in the module doc of
//! [`super`]).

use serde_json::{json, Map, Value};

use super::names::flat_name;
use super::request::{copy, refuse};
use crate::translate::Untranslatable;

/// Builds the Chat `messages` list: consecutive tool calls join one assistant message, tool
/// results follow it, and reasoning text rides on the next assistant message.
#[derive(Default)]
pub struct Messages {
    list: Vec<Value>,
    /// Reasoning text of `reasoning` items not yet attached to an assistant message.
    reasoning: Vec<String>,
    /// Images returned by tool calls: Chat tool messages carry only text, so they go in a user
    /// message after the run of tool messages.
    tool_images: Vec<Value>,
}

impl Messages {
    pub fn push(&mut self, message: Value) {
        self.flush_tool_images();
        self.list.push(message);
    }

    fn flush_tool_images(&mut self) {
        if !self.tool_images.is_empty() {
            let mut parts =
                vec![json!({"type": "text", "text": "Images returned by the tool calls above:"})];
            parts.append(&mut self.tool_images);
            self.list.push(json!({"role": "user", "content": parts}));
        }
    }

    pub fn finish(mut self) -> Vec<Value> {
        self.flush_tool_images();
        self.list
    }

    /// Runs `edit` on the assistant message of the current turn: the last message when it is an
    /// assistant message and `join` allows (tool calls join the text before them), else a new
    /// one. Pending reasoning text is attached to it.
    fn with_assistant(&mut self, join: bool, edit: impl FnOnce(&mut Map<String, Value>)) {
        let open = join
            && self.tool_images.is_empty()
            && self.list.last().is_some_and(|m| {
                m["role"] == "assistant"
                    && (self.reasoning.is_empty() || m.get("reasoning_content").is_none())
            });
        if !open {
            self.push(json!({"role": "assistant", "content": null}));
        }
        let reasoning = std::mem::take(&mut self.reasoning);
        if let Some(Value::Object(last)) = self.list.last_mut() {
            if !reasoning.is_empty() {
                last.insert(
                    "reasoning_content".into(),
                    Value::String(reasoning.join("\n")),
                );
            }
            edit(last);
        }
    }

    fn tool_call(&mut self, id: &Value, name: &Value, arguments: String) {
        let call = json!({
            "id": id, "type": "function",
            "function": {"name": name, "arguments": arguments},
        });
        self.with_assistant(true, |assistant| {
            match assistant
                .get_mut("tool_calls")
                .and_then(Value::as_array_mut)
            {
                Some(calls) => calls.push(call),
                None => {
                    assistant.insert("tool_calls".into(), Value::Array(vec![call]));
                }
            }
        });
    }

    pub fn item(&mut self, item: &Value, at: &str) -> Result<(), Untranslatable> {
        let kind = item.get("type").and_then(Value::as_str);
        let kind = match kind {
            Some(kind) => kind,
            // A message may omit `type` (the easy input message form).
            None if item.get("role").is_some() => "message",
            None => return Err(refuse(at, "an input item needs a `type`")),
        };
        match kind {
            "message" => self.message(item, at),
            "function_call" => {
                let arguments = string_field(item, "arguments", at)?.to_owned();
                let mut name = required(item, "name", at)?;
                // A call of a namespaced tool keeps the flat name its tool was sent under.
                if let (Some(namespace), Some(plain)) =
                    (item.get("namespace").and_then(Value::as_str), name.as_str())
                {
                    name = Value::String(flat_name(namespace, plain));
                }
                self.tool_call(&required(item, "call_id", at)?, &name, arguments);
                Ok(())
            }
            "custom_tool_call" => {
                let input = string_field(item, "input", at)?;
                let arguments = json!({"input": input}).to_string();
                self.tool_call(
                    &required(item, "call_id", at)?,
                    &required(item, "name", at)?,
                    arguments,
                );
                Ok(())
            }
            "local_shell_call" => {
                let action = &item["action"];
                let mut arguments = Map::new();
                arguments.insert("command".into(), action["command"].clone());
                copy(&mut arguments, "workdir", &action["working_directory"]);
                copy(&mut arguments, "timeout_ms", &action["timeout_ms"]);
                let id = item
                    .get("call_id")
                    .filter(|v| !v.is_null())
                    .or_else(|| item.get("id"))
                    .cloned()
                    .ok_or_else(|| {
                        refuse(
                            &format!("{at}.call_id"),
                            "a `local_shell_call` needs a `call_id`",
                        )
                    })?;
                self.tool_call(
                    &id,
                    &json!("local_shell"),
                    Value::Object(arguments).to_string(),
                );
                Ok(())
            }
            "function_call_output" | "custom_tool_call_output" => self.tool_output(item, at),
            "reasoning" => {
                let text: Vec<&str> = ["summary", "content"]
                    .iter()
                    .filter_map(|key| item.get(*key).and_then(Value::as_array))
                    .flatten()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect();
                // Encrypted reasoning alone is readable only by the OpenAI account that wrote
                // it: nothing a Chat upstream can take.
                if !text.is_empty() {
                    self.reasoning.push(text.join("\n"));
                }
                Ok(())
            }
            "item_reference" => Err(refuse(
                at,
                "an `item_reference` points at an item stored by the OpenAI Responses API; a Chat \
                 Completions upstream cannot resolve it",
            )),
            "compaction" | "compaction_trigger" => Err(refuse(
                at,
                format!(
                    "a `{kind}` item is read only by the OpenAI Responses API; a Chat \
                     Completions upstream cannot compact or read compacted history"
                ),
            )),
            other => Err(refuse(
                at,
                format!("input items of type `{other}` have no Chat Completions form"),
            )),
        }
    }

    fn message(&mut self, item: &Value, at: &str) -> Result<(), Untranslatable> {
        let role = item.get("role").and_then(Value::as_str).unwrap_or("");
        let role = match role {
            "user" | "assistant" | "system" => role,
            // `developer` is OpenAI's newer name for system; most Chat servers know only `system`.
            "developer" => "system",
            _ => {
                return Err(refuse(
                    &format!("{at}.role"),
                    format!("message role `{role}` has no Chat Completions form"),
                ))
            }
        };
        let parts = content_parts(&item["content"], role, &format!("{at}.content"))?;
        if role == "assistant" {
            let text = parts
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("");
            // Text joins an assistant message that has none yet (one that only holds tool
            // calls): a second assistant message between calls and their results would break
            // the Chat order (results right after the calls).
            let join = self
                .list
                .last()
                .is_some_and(|m| m["role"] == "assistant" && m["content"].is_null());
            self.with_assistant(join, |assistant| {
                assistant.insert("content".into(), Value::String(text));
            });
            return Ok(());
        }
        // Reasoning that no assistant output followed belongs to no message.
        self.reasoning.clear();
        self.push(json!({"role": role, "content": content_value(parts)}));
        Ok(())
    }

    fn tool_output(&mut self, item: &Value, at: &str) -> Result<(), Untranslatable> {
        let call_id = required(item, "call_id", at)?;
        let content = match &item["output"] {
            Value::String(text) => text.clone(),
            Value::Array(_) => {
                let parts = content_parts(&item["output"], "tool", &format!("{at}.output"))?;
                let mut texts = Vec::new();
                for part in parts {
                    match part["type"].as_str() {
                        Some("image_url") => self.tool_images.push(part),
                        _ => texts.push(part["text"].as_str().unwrap_or("").to_owned()),
                    }
                }
                texts.join("\n")
            }
            Value::Null => String::new(),
            _ => {
                return Err(refuse(
                    &format!("{at}.output"),
                    "a tool output must be a string or a list of parts",
                ))
            }
        };
        // Tool messages must follow their assistant message directly: images wait.
        self.list
            .push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
        Ok(())
    }
}

pub fn required(item: &Value, key: &str, at: &str) -> Result<Value, Untranslatable> {
    match item.get(key) {
        Some(Value::String(s)) => Ok(Value::String(s.clone())),
        _ => Err(refuse(
            &format!("{at}.{key}"),
            format!("`{key}` must be a string"),
        )),
    }
}

pub fn string_field<'a>(item: &'a Value, key: &str, at: &str) -> Result<&'a str, Untranslatable> {
    item.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| refuse(&format!("{at}.{key}"), format!("`{key}` must be a string")))
}

/// Responses content (a string or a list of parts) → Chat parts (`text` / `image_url`).
/// `role`: images are allowed for `user` and `tool` (tool images are moved to a user message).
fn content_parts(content: &Value, role: &str, at: &str) -> Result<Vec<Value>, Untranslatable> {
    let parts = match content {
        Value::String(text) => return Ok(vec![json!({"type": "text", "text": text})]),
        Value::Null => return Ok(Vec::new()),
        Value::Array(parts) => parts,
        _ => return Err(refuse(at, "content must be a string or a list of parts")),
    };
    let mut out = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        let here = format!("{at}[{i}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" | "output_text" | "text" => {
                out.push(json!({"type": "text", "text": string_field(part, "text", &here)?}));
            }
            "refusal" => {
                out.push(json!({"type": "text", "text": string_field(part, "refusal", &here)?}));
            }
            "input_image" => {
                if role != "user" && role != "tool" {
                    return Err(refuse(
                        &here,
                        format!(
                            "Chat Completions takes images only in user messages, not in `{role}` \
                         messages"
                        ),
                    ));
                }
                let Some(url) = part.get("image_url").and_then(Value::as_str) else {
                    return Err(refuse(
                        &here,
                        "an image given by `file_id` refers to a file stored by OpenAI; a Chat \
                         Completions upstream takes only `image_url` (an https or data: URL)",
                    ));
                };
                let mut image = Map::new();
                image.insert("url".into(), Value::String(url.to_owned()));
                if let Some(detail) = part.get("detail").filter(|d| !d.is_null()) {
                    image.insert("detail".into(), detail.clone());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            other => {
                return Err(refuse(
                    &here,
                    format!("content parts of type `{other}` have no Chat Completions form"),
                ));
            }
        }
    }
    Ok(out)
}

/// Text-only content becomes one string (every Chat server takes that; DeepSeek takes nothing
/// else); content with images stays a list of parts.
fn content_value(parts: Vec<Value>) -> Value {
    if parts.iter().all(|p| p["type"] == "text") {
        let text: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        Value::String(text.join("\n"))
    } else {
        Value::Array(parts)
    }
}
