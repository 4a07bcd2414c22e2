//! OpenAI Chat Completions, as any OpenAI-compatible server speaks it (OpenAI, OpenRouter,
//! DeepSeek, vLLM, Ollama): `data:` chunks ending with `data: [DONE]`, usage only when
//! `stream_options.include_usage` is set — which subrelay sets upstream so usage is always
//! known, and hides from a client that did not ask for it.

use std::borrow::Cow;

use bytes::Bytes;
use memchr::memmem;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::body::TopLevel;
use super::sse::SseEvent;
use super::{EventRole, StreamWatch, Terminal, TokenUsage};

/// The routing facts of a Chat Completions request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub include_usage: bool,
    /// `prompt_cache_key` (OpenAI's Chat API takes one too): the conversation's identity.
    pub prompt_cache_key: Option<String>,
}

pub fn inspect(body: &[u8]) -> Result<ChatRequest, String> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(default)]
        stream_options: Option<StreamOptions>,
        #[serde(borrow, default)]
        prompt_cache_key: Option<Cow<'a, str>>,
    }
    #[derive(Deserialize)]
    struct StreamOptions {
        #[serde(default)]
        include_usage: Option<bool>,
    }
    let probe: Probe<'_> = super::body::probe(body)?;
    Ok(ChatRequest {
        model: super::body::required_model(probe.model, "`model` is required")?,
        stream: probe.stream.unwrap_or(false),
        include_usage: probe
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        prompt_cache_key: probe.prompt_cache_key.map(Cow::into_owned),
    })
}

/// Top-level edits: the account's model name, and `stream_options.include_usage: true` for a
/// stream. Other values are copied byte for byte.
pub fn rewrite(body: &[u8], model: Option<&str>, request_usage: bool) -> Result<Bytes, String> {
    let mut fields = TopLevel::parse(body)?;
    if let Some(model) = model {
        fields.set_str("model", model)?;
    }
    if request_usage {
        let mut options = fields
            .get("stream_options")
            .and_then(|raw| serde_json::from_str::<serde_json::Map<String, Value>>(raw.get()).ok())
            .unwrap_or_default();
        options.insert("include_usage".to_owned(), Value::Bool(true));
        fields.set_json("stream_options", Value::Object(options).to_string())?;
    }
    fields.to_bytes()
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default)]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for TokenUsage {
    fn from(u: WireUsage) -> Self {
        TokenUsage {
            input: u.prompt_tokens,
            cached_input: u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            cache_creation: 0,
            output: u.completion_tokens,
            reasoning: u
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            unparsed: false,
        }
    }
}

/// The `usage` of a `chat.completion` answer.
pub fn usage_of_json(body: &[u8]) -> Result<Option<TokenUsage>, String> {
    super::body::top_level_usage::<super::Reported<WireUsage>>(body)
        .map(|u| u.map(super::Reported::into_usage))
}

/// `data: {"error":{...}}`: what OpenAI-compatible servers send when a stream fails, and what
/// the OpenAI SDKs raise as an error.
pub fn error_chunk(code: &str, message: &str) -> Bytes {
    let chunk = serde_json::json!({
        "error": { "message": message, "type": "upstream_error", "code": code }
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

/// The failure a stream chunk reports, if it is one: `{"error":{…}}` (OpenAI, DeepSeek,
/// OpenRouter, newer vLLM), `{"error":"…"}` (llama.cpp-style servers) or a top-level
/// `{"object":"error",…}` (older vLLM). The code is the error's `code`, else its `type`.
pub fn stream_failure(data: &[u8]) -> Option<Terminal> {
    #[derive(Deserialize)]
    struct ErrorChunk {
        #[serde(default)]
        error: Option<Value>,
        #[serde(default)]
        object: Option<Value>,
        #[serde(default)]
        message: Option<Value>,
        #[serde(default)]
        code: Option<Value>,
        #[serde(default, rename = "type")]
        kind: Option<Value>,
    }
    let chunk: ErrorChunk = serde_json::from_slice(data).ok()?;
    let (code, kind, message) = match chunk.error {
        Some(Value::String(message)) => (None, None, Some(Value::String(message))),
        Some(Value::Object(mut error)) => (
            error.remove("code"),
            error.remove("type"),
            error.remove("message"),
        ),
        _ if chunk.object.as_ref().and_then(Value::as_str) == Some("error") => {
            (chunk.code, chunk.kind, chunk.message)
        }
        _ => return None,
    };
    let code = code
        .filter(|c| !c.is_null())
        .or(kind.filter(|k| !k.is_null()))
        .map(super::code_text);
    Some(Terminal {
        response_id: None,
        error_code: code,
        error_message: message.and_then(|m| m.as_str().map(str::to_owned)),
    })
}

/// Watches a Chat Completions stream.
pub struct Watch {
    drop_usage_chunk: bool,
    finished: bool,
    failed: bool,
    usage: TokenUsage,
}

impl Watch {
    pub fn new(drop_usage_chunk: bool) -> Self {
        Self {
            drop_usage_chunk,
            finished: false,
            failed: false,
            usage: TokenUsage::default(),
        }
    }
}

impl StreamWatch for Watch {
    fn observe(&mut self, event: &SseEvent<'_>, output_started: bool) -> EventRole {
        let data = event.data();
        if data.trim_ascii() == b"[DONE]" {
            self.finished = true;
            return EventRole::Output;
        }
        // Only chunks that mention usage or an error are parsed; content chunks are not.
        let mentions = |key: &[u8]| memmem::find(&data, key).is_some();
        if mentions(b"\"error\"") {
            if let Some(terminal) = stream_failure(&data) {
                if !output_started {
                    return EventRole::FailBeforeOutput(terminal);
                }
                self.failed = true;
                self.finished = true;
                return EventRole::Output;
            }
        }
        if mentions(b"\"usage\"") {
            #[derive(Deserialize)]
            struct UsageChunk {
                #[serde(default)]
                usage: Option<super::Reported<WireUsage>>,
                #[serde(default)]
                choices: Vec<IgnoredAny>,
            }
            if let Ok(chunk) = serde_json::from_slice::<UsageChunk>(&data) {
                if let Some(usage) = chunk.usage {
                    self.usage = usage.into_usage();
                    if self.drop_usage_chunk && chunk.choices.is_empty() {
                        return EventRole::Drop;
                    }
                }
            }
        }
        EventRole::Output
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn succeeded(&self) -> bool {
        self.finished && !self.failed
    }

    fn usage(&self) -> TokenUsage {
        self.usage
    }

    fn filters(&self) -> bool {
        self.drop_usage_chunk
    }

    fn failure_event(&self, code: &str, message: &str) -> Bytes {
        error_chunk(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse::SseScanner;

    #[test]
    fn a_usage_object_of_the_wrong_types_is_unparsed() {
        let usage = usage_of_json(br#"{"choices":[],"usage":{"prompt_tokens":"5"}}"#)
            .unwrap()
            .unwrap();
        assert!(usage.unparsed);
        let fine =
            usage_of_json(br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#)
                .unwrap()
                .unwrap();
        assert!(!fine.unparsed);
    }

    #[test]
    fn inspect_and_rewrite() {
        let r = inspect(br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#)
            .unwrap();
        assert!(r.stream && r.include_usage);
        let out = rewrite(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"stream_options":{"foo":1}}"#, Some("up"), true).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["model"], "up");
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["foo"], 1);
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .contains(r#""messages":[{"role":"user","content":"x"}]"#));
    }

    #[test]
    fn the_usage_chunk_is_read_and_dropped_when_the_client_did_not_ask() {
        let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\n\ndata: [DONE]\n\n";
        let mut watch = Watch::new(true);
        let mut roles = Vec::new();
        SseScanner::new().feed(stream, |e| roles.push(watch.observe(&e, true)));
        assert!(matches!(
            roles[..],
            [EventRole::Output, EventRole::Drop, EventRole::Output]
        ));
        assert!(watch.succeeded());
        assert_eq!(watch.usage().input, 5);
        assert_eq!(watch.usage().cached_input, 1);
        let mut keep = Watch::new(false);
        let mut roles = Vec::new();
        SseScanner::new().feed(stream, |e| roles.push(keep.observe(&e, true)));
        assert!(matches!(roles[1], EventRole::Output));
    }

    #[test]
    fn an_error_chunk_before_output_is_a_failure_of_the_attempt() {
        let mut watch = Watch::new(false);
        let mut roles = Vec::new();
        SseScanner::new().feed(
            b"data: {\"error\":{\"message\":\"overloaded\",\"code\":503}}\n\n",
            |e| roles.push(watch.observe(&e, false)),
        );
        assert!(
            matches!(&roles[0], EventRole::FailBeforeOutput(t) if t.error_code.as_deref() == Some("503"))
        );
    }

    #[test]
    fn every_error_chunk_shape_is_a_failure_and_content_mentioning_errors_is_not() {
        let vllm = stream_failure(br#"{"object":"error","message":"boom","type":"BadRequestError","param":null,"code":400}"#).unwrap();
        assert_eq!(vllm.error_code.as_deref(), Some("400"));
        assert_eq!(vllm.error_message.as_deref(), Some("boom"));
        let typed = stream_failure(
            br#"{"error":{"message":"m","type":"invalid_request_error","code":null}}"#,
        )
        .unwrap();
        assert_eq!(typed.error_code.as_deref(), Some("invalid_request_error"));
        let text = stream_failure(br#"{"error":"the model crashed"}"#).unwrap();
        assert_eq!(text.error_message.as_deref(), Some("the model crashed"));
        assert!(text.error_code.is_none());
        assert!(stream_failure(
            br#"{"object":"chat.completion.chunk","choices":[{"delta":{"content":"\"error\""}}]}"#
        )
        .is_none());
        assert!(stream_failure(br#"{"error":null,"choices":[]}"#).is_none());
    }
}
