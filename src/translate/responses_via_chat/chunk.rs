//! The Chat Completions chunk as this translator reads it: strings borrowed where they need
//! no unescaping, so a text delta costs one pass and no tree of values.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// One Chat chunk.
#[derive(Deserialize)]
pub struct Chunk<'a> {
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    /// Read leniently: a server writing it as a float loses only the timestamp.
    #[serde(default)]
    pub created: Option<Value>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<Choice<'a>>>,
    #[serde(default)]
    pub usage: Option<IgnoredAny>,
    #[serde(default)]
    pub error: Option<Value>,
    /// `"error"` on the top-level error objects older vLLM versions stream, whose `message`,
    /// `type` and `code` sit beside it.
    #[serde(borrow, default)]
    pub object: Option<Cow<'a, str>>,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default, rename = "type")]
    pub kind: Option<Value>,
    #[serde(default)]
    pub code: Option<Value>,
}

impl Chunk<'_> {
    /// The failure this chunk reports, as `(code, message)`: `{"error":{…}}` (OpenAI,
    /// DeepSeek, OpenRouter, newer vLLM), `{"error":"…"}` (some llama.cpp-style servers), or a
    /// top-level `{"object":"error",…}` (older vLLM).
    pub fn failure(&self) -> Option<(String, String)> {
        let (code, kind, message) = match &self.error {
            Some(Value::String(message)) => {
                return Some(("upstream_error".into(), message.clone()))
            }
            Some(error @ Value::Object(_)) => {
                (error.get("code"), error.get("type"), error.get("message"))
            }
            _ if self.object.as_deref() == Some("error") => (
                self.code.as_ref(),
                self.kind.as_ref(),
                self.message.as_ref(),
            ),
            _ => return None,
        };
        let code = match code.filter(|c| !c.is_null()).or(kind) {
            Some(Value::String(code)) => code.clone(),
            Some(Value::Number(code)) => code.to_string(),
            _ => "upstream_error".to_owned(),
        };
        let message = message
            .and_then(Value::as_str)
            .unwrap_or("the upstream failed")
            .to_owned();
        Some((code, message))
    }
}

#[derive(Deserialize)]
pub struct Choice<'a> {
    #[serde(default)]
    pub index: u64,
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub struct Delta<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub refusal: Option<Cow<'a, str>>,
    /// DeepSeek's name for streamed reasoning.
    #[serde(borrow, default)]
    pub reasoning_content: Option<Text<'a>>,
    /// OpenRouter's, vLLM's and Ollama's.
    #[serde(borrow, default)]
    pub reasoning: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<CallDelta<'a>>>,
}

/// A field that is text from most servers and something else (an object) from a few: only
/// text is read.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Text<'a> {
    Text(#[serde(borrow)] Cow<'a, str>),
    Other(IgnoredAny),
}

impl<'a> Text<'a> {
    pub fn text(&self) -> Option<&str> {
        match self {
            Text::Text(text) if !text.is_empty() => Some(text),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
pub struct CallDelta<'a> {
    #[serde(default)]
    pub index: Option<u64>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}
