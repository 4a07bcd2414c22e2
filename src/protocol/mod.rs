//! Wire facts of the APIs subrelay speaks: request inspection, body edits, SSE framing, usage
//! extraction, error shapes, and what each stream event means. Pure functions over bytes:
//! nothing here does I/O.
//!
//! One file per API (`responses`, `chat`, `anthropic`), each with the same parts: `inspect`,
//! body edits, `usage_of_json`, a [`StreamWatch`] for its streams, and its in-stream failure.

pub mod anthropic;
pub mod body;
pub mod chat;
pub mod errors;
pub mod model_name;
pub mod responses;
pub mod sse;

use bytes::Bytes;
use serde::Serialize;

use sse::SseEvent;

pub use crate::domain::Protocol;

/// What each protocol's wire looks like: the behaviour of [`Protocol`], whose names live in
/// `crate::domain`.
pub trait Wire {
    fn error_shape(self) -> errors::ErrorShape;
    /// A watcher for one upstream stream of this protocol.
    /// `drop_usage_chunk`: the client did not ask for the usage chunk subrelay requested.
    fn stream_watch(self, drop_usage_chunk: bool) -> Box<dyn StreamWatch>;
    /// Reads the routing facts of a request body; nothing else is built.
    fn inspect(self, body: &[u8]) -> Result<Inspected, String>;
    /// The `usage` of a non-stream answer. The one pass also checks that the answer is a JSON
    /// object; other fields are skipped, not built.
    fn usage_of_json(self, body: &[u8]) -> Result<TokenUsage, String>;
}

impl Wire for Protocol {
    fn error_shape(self) -> errors::ErrorShape {
        match self {
            Protocol::Responses | Protocol::Chat => errors::ErrorShape::OpenAi,
            Protocol::Messages => errors::ErrorShape::Anthropic,
        }
    }

    fn stream_watch(self, drop_usage_chunk: bool) -> Box<dyn StreamWatch> {
        match self {
            Protocol::Responses => Box::new(responses::Watch::default()),
            Protocol::Chat => Box::new(chat::Watch::new(drop_usage_chunk)),
            Protocol::Messages => Box::new(anthropic::Watch::default()),
        }
    }

    fn inspect(self, body: &[u8]) -> Result<Inspected, String> {
        Ok(match self {
            Protocol::Responses => {
                let r = responses::inspect(body)?;
                Inspected {
                    model: r.model,
                    stream: r.stream,
                    prompt_cache_key: r.prompt_cache_key,
                    user_id: None,
                    include_usage: false,
                }
            }
            Protocol::Chat => {
                let r = chat::inspect(body)?;
                Inspected {
                    model: r.model,
                    stream: r.stream,
                    prompt_cache_key: r.prompt_cache_key,
                    user_id: None,
                    include_usage: r.include_usage,
                }
            }
            Protocol::Messages => {
                let r = anthropic::inspect(body)?;
                Inspected {
                    model: r.model,
                    stream: r.stream,
                    prompt_cache_key: None,
                    user_id: r.user_id,
                    include_usage: false,
                }
            }
        })
    }

    fn usage_of_json(self, body: &[u8]) -> Result<TokenUsage, String> {
        match self {
            Protocol::Responses => responses::usage_of_json(body),
            Protocol::Chat => chat::usage_of_json(body),
            Protocol::Messages => anthropic::usage_of_json(body),
        }
        .map(Option::unwrap_or_default)
    }
}

/// What the relay reads from a request body, whatever the protocol.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub model: String,
    pub stream: bool,
    /// Responses and Chat: the client's `prompt_cache_key` (a conversation identity).
    pub prompt_cache_key: Option<String>,
    /// Messages: `metadata.user_id` (Claude Code's session).
    pub user_id: Option<String>,
    /// Chat: the client asked for the usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Tokens of one request, as the upstream counted them. OpenAI's `input` includes the cached
/// part; Anthropic's `input` excludes cache reads and writes (reported beside it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenUsage {
    pub input: u64,
    pub cached_input: u64,
    /// Anthropic prompt-cache writes.
    pub cache_creation: u64,
    pub output: u64,
    pub reasoning: u64,
    /// The upstream sent a `usage` object that could not be read (wrong types): its counts are
    /// recorded as 0, and the record says so.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unparsed: bool,
}

/// A `usage` object as the upstream sent it: read, or present but not readable (a count that is
/// a string, a negative number…). `null` or no `usage` at all is `Option::None` around it.
pub enum Reported<T> {
    Read(T),
    Unparsed,
}

impl<'de, T: serde::de::DeserializeOwned> serde::Deserialize<'de> for Reported<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Kept as its JSON text, then read: a tree of `Value`s cost more than the rest of a
        // terminal event's reading.
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(serde_json::from_str(raw.get()).map_or(Reported::Unparsed, Reported::Read))
    }
}

impl<T: Into<TokenUsage>> Reported<T> {
    pub fn into_usage(self) -> TokenUsage {
        match self {
            Reported::Read(usage) => usage.into(),
            Reported::Unparsed => TokenUsage {
                unparsed: true,
                ..TokenUsage::default()
            },
        }
    }
}

impl TokenUsage {
    /// The most tokens of one kind recorded for one request: far above any real context window
    /// or answer, and low enough that summing a billion rows cannot overflow an `i64`.
    pub const MAX_PER_REQUEST: u64 = 1_000_000_000;

    /// Caps every count at [`Self::MAX_PER_REQUEST`]; true when one was above it (an upstream
    /// reporting nonsense).
    pub fn clamp(&mut self) -> bool {
        let mut clamped = false;
        for n in [
            &mut self.input,
            &mut self.cached_input,
            &mut self.cache_creation,
            &mut self.output,
            &mut self.reasoning,
        ] {
            if *n > Self::MAX_PER_REQUEST {
                *n = Self::MAX_PER_REQUEST;
                clamped = true;
            }
        }
        clamped
    }
}

/// What one event of an upstream stream means for the relay.
#[derive(Debug)]
pub enum EventRole {
    /// Before output: keep it back until real output starts (failover is still possible).
    Hold,
    /// Semantic output (after the first, everything is output).
    Output,
    /// A failure before any output: the attempt failed, the client saw nothing.
    FailBeforeOutput(Terminal),
    /// Not for the client (a usage chunk it did not ask for).
    Drop,
}

/// What a stream's terminal (or failure) event said.
#[derive(Debug, Default, Clone)]
pub struct Terminal {
    pub response_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// Watches one upstream stream: classifies events, collects usage, knows when it is over.
pub trait StreamWatch: Send + Sync {
    /// Looks at one event. `output_started`: the client already got output.
    fn observe(&mut self, event: &SseEvent<'_>, output_started: bool) -> EventRole;
    /// The stream reached its terminal event.
    fn finished(&self) -> bool;
    /// Whether the finished stream was a success (no failure event).
    fn succeeded(&self) -> bool;
    fn usage(&self) -> TokenUsage;
    /// Whether some events are dropped, so forwarding must go event by event instead of
    /// passing upstream chunks through as they are.
    fn filters(&self) -> bool {
        false
    }
    /// The in-protocol event that ends a stream which cannot go on.
    fn failure_event(&self, code: &str, message: &str) -> Bytes;

    /// The terminal event [`StreamWatch::observe`] just read, for a translator of this stream
    /// to take instead of reading the event again (a Responses terminal event repeats the whole
    /// answer). Only the Responses watch keeps it.
    fn take_terminal_read(&mut self) -> Option<responses::TerminalRead> {
        None
    }
}

/// `"code"` of a JSON error value as text, whether the upstream sent a string or a number.
fn code_text(value: serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}
