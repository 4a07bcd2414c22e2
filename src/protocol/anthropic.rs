//! The Anthropic Messages API, as Claude Code and the Anthropic SDKs speak it: what the relay
//! reads from a request, where usage sits, what each stream event means, the in-stream error,
//! and the one body edit subrelay ever makes on its own (dropping thinking blocks another
//! account signed).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::body::TopLevel;
use super::sse::SseEvent;
use super::{EventRole, Reported, StreamWatch, Terminal, TokenUsage};

/// `anthropic-version` sent when the client sent none.
pub const DEFAULT_VERSION: &str = "2023-06-01";
/// The beta token sign-in (OAuth) accounts need in `anthropic-beta`.
pub const OAUTH_BETA: &str = "oauth-2025-04-20";

/// The routing facts of a Messages request.
#[derive(Debug, Clone)]
pub struct MessagesRequest {
    pub model: String,
    pub stream: bool,
    /// `metadata.user_id`: Claude Code puts its session in it.
    pub user_id: Option<String>,
}

pub fn inspect(body: &[u8]) -> Result<MessagesRequest, String> {
    #[derive(Deserialize)]
    struct Probe<'a> {
        #[serde(borrow, default)]
        model: Option<Cow<'a, str>>,
        #[serde(default)]
        stream: Option<bool>,
        #[serde(default)]
        metadata: Option<Metadata>,
    }
    #[derive(Deserialize)]
    struct Metadata {
        #[serde(default)]
        user_id: Option<String>,
    }
    let probe: Probe<'_> = super::body::probe(body)?;
    Ok(MessagesRequest {
        model: super::body::required_model(probe.model, "model: Field required")?,
        stream: probe.stream.unwrap_or(false),
        user_id: probe
            .metadata
            .and_then(|m| m.user_id)
            .filter(|u| !u.is_empty()),
    })
}

/// The account's model name, a top-level edit; everything else is copied byte for byte.
pub fn rewrite_model(body: &[u8], model: &str) -> Result<Bytes, String> {
    let mut fields = TopLevel::parse(body)?;
    fields.set_str("model", model)?;
    fields.to_bytes()
}

/// Whether a 400 is the upstream refusing thinking blocks another account signed.
pub fn is_foreign_signature_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    text.contains("signature") && text.contains("thinking")
}

/// The body without `thinking`/`redacted_thinking` blocks in earlier assistant turns: what a
/// conversation that moved to another account can still send. `None` when there were none.
pub fn strip_thinking(body: &[u8]) -> Option<Bytes> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    let mut removed = 0usize;
    for message in value.get_mut("messages")?.as_array_mut()? {
        if message.get("role").and_then(Value::as_str) != Some("assistant") {
            continue;
        }
        if let Some(content) = message.get_mut("content").and_then(Value::as_array_mut) {
            let before = content.len();
            content.retain(|block| {
                !matches!(
                    block.get("type").and_then(Value::as_str),
                    Some("thinking" | "redacted_thinking")
                )
            });
            removed += before - content.len();
        }
    }
    (removed > 0).then(|| Bytes::from(value.to_string()))
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// Later figures replace earlier ones; an unreadable `usage` marks the record unparsed.
fn merge(reported: Reported<WireUsage>, usage: &mut TokenUsage) {
    match reported {
        Reported::Read(u) => u.merge_into(usage),
        Reported::Unparsed => usage.unparsed = true,
    }
}

impl WireUsage {
    /// Later figures (message_delta) replace earlier ones (message_start) where given.
    fn merge_into(self, usage: &mut TokenUsage) {
        if let Some(n) = self.input_tokens {
            usage.input = n;
        }
        if let Some(n) = self.cache_creation_input_tokens {
            usage.cache_creation = n;
        }
        if let Some(n) = self.cache_read_input_tokens {
            usage.cached_input = n;
        }
        if let Some(n) = self.output_tokens {
            usage.output = n;
        }
    }
}

/// The `usage` of a `message` answer (input, cache creation, cache read, output).
pub fn usage_of_json(body: &[u8]) -> Result<Option<TokenUsage>, String> {
    Ok(
        super::body::top_level_usage::<Reported<WireUsage>>(body)?.map(|u| {
            let mut usage = TokenUsage::default();
            merge(u, &mut usage);
            usage
        }),
    )
}

/// `event: error` with an Anthropic error object.
pub fn error_event(kind: &str, message: &str) -> Bytes {
    let data = serde_json::json!({
        "type": "error",
        "error": { "type": kind, "message": message },
    });
    Bytes::from(format!("event: error\ndata: {data}\n\n"))
}

fn read_error(data: &[u8]) -> Terminal {
    #[derive(Deserialize)]
    struct Event {
        error: Option<Inner>,
    }
    #[derive(Deserialize)]
    struct Inner {
        #[serde(rename = "type")]
        kind: Option<String>,
        message: Option<String>,
    }
    let inner = serde_json::from_slice::<Event>(data)
        .ok()
        .and_then(|e| e.error);
    Terminal {
        response_id: None,
        error_code: inner.as_ref().and_then(|i| i.kind.clone()),
        error_message: inner.and_then(|i| i.message),
    }
}

/// Watches a Messages stream: `message_start` and `ping` are held back until the first content
/// event, so an `error` (say `overloaded_error`) before it still fails over.
#[derive(Default)]
pub struct Watch {
    finished: bool,
    failed: bool,
    usage: TokenUsage,
}

impl StreamWatch for Watch {
    fn observe(&mut self, event: &SseEvent<'_>, output_started: bool) -> EventRole {
        match event.name() {
            b"message_start" => {
                #[derive(Deserialize)]
                struct Start {
                    message: Option<Message>,
                }
                #[derive(Deserialize)]
                struct Message {
                    usage: Option<Reported<WireUsage>>,
                }
                if let Ok(Start {
                    message: Some(Message { usage: Some(u) }),
                }) = serde_json::from_slice(&event.data())
                {
                    merge(u, &mut self.usage);
                }
                if output_started {
                    EventRole::Output
                } else {
                    EventRole::Hold
                }
            }
            b"ping" if !output_started => EventRole::Hold,
            b"error" => {
                let terminal = read_error(&event.data());
                if !output_started {
                    return EventRole::FailBeforeOutput(terminal);
                }
                self.failed = true;
                self.finished = true;
                EventRole::Output
            }
            b"message_delta" => {
                #[derive(Deserialize)]
                struct Delta {
                    usage: Option<Reported<WireUsage>>,
                }
                if let Ok(Delta { usage: Some(u) }) = serde_json::from_slice(&event.data()) {
                    merge(u, &mut self.usage);
                }
                EventRole::Output
            }
            b"message_stop" => {
                self.finished = true;
                EventRole::Output
            }
            _ => EventRole::Output,
        }
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

    fn failure_event(&self, code: &str, message: &str) -> Bytes {
        let kind = match code {
            "stream_stalled" | "header_timeout" | "first_token_timeout" => "timeout_error",
            "overloaded_error" => "overloaded_error",
            _ => "api_error",
        };
        error_event(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sse::SseScanner;

    #[test]
    fn a_usage_object_of_the_wrong_types_is_unparsed() {
        let usage = usage_of_json(br#"{"type":"message","usage":{"input_tokens":{"n":1}}}"#)
            .unwrap()
            .unwrap();
        assert!(usage.unparsed);
        let fine = usage_of_json(br#"{"type":"message","usage":{"input_tokens":3}}"#)
            .unwrap()
            .unwrap();
        assert!(!fine.unparsed && fine.input == 3);
    }

    #[test]
    fn stream_roles_and_usage() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"cache_creation_input_tokens\":4,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\"}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":12}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut watch = Watch::default();
        let mut started = false;
        let mut roles = Vec::new();
        SseScanner::new().feed(stream.as_bytes(), |e| {
            let role = watch.observe(&e, started);
            if matches!(role, EventRole::Output) {
                started = true;
            }
            roles.push(role);
        });
        assert!(matches!(
            roles[..],
            [
                EventRole::Hold,
                EventRole::Hold,
                EventRole::Output,
                EventRole::Output,
                EventRole::Output,
                EventRole::Output
            ]
        ));
        assert!(watch.succeeded());
        assert_eq!(
            watch.usage(),
            TokenUsage {
                input: 9,
                cached_input: 5,
                cache_creation: 4,
                output: 12,
                reasoning: 0,
                unparsed: false,
            }
        );
    }

    #[test]
    fn an_error_before_content_fails_the_attempt() {
        let mut watch = Watch::default();
        let mut roles = Vec::new();
        SseScanner::new().feed(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            |e| roles.push(watch.observe(&e, false)),
        );
        assert!(
            matches!(&roles[0], EventRole::FailBeforeOutput(t) if t.error_code.as_deref() == Some("overloaded_error"))
        );
    }

    #[test]
    fn thinking_blocks_of_earlier_turns_are_stripped() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":"s"},{"type":"text","text":"a"}]},{"role":"user","content":"q2"}]}"#;
        let out: Value = serde_json::from_slice(&strip_thinking(body).unwrap()).unwrap();
        assert_eq!(out["messages"][1]["content"].as_array().unwrap().len(), 1);
        assert_eq!(out["messages"][1]["content"][0]["type"], "text");
        assert!(strip_thinking(br#"{"messages":[{"role":"user","content":"q"}]}"#).is_none());
    }
}
