//! The JSON shapes of the Anthropic Messages API, as the mock writes them.
//!
//! Borrowed, serialize-only structs, like the Responses shapes in `wire`. Enum variants are
//! written with their `type` first and named in snake case, the way the API names them
//! (`message_start`, `content_block_delta`, `text_delta`, ...).

use serde::Serialize;

use crate::behavior::Usage;

/// A `message` object: the non-stream answer, and the one in `message_start`.
#[derive(Serialize)]
pub(crate) struct Message<'a> {
    pub id: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub role: &'static str,
    pub model: &'a str,
    pub content: &'a [Block<'a>],
    pub stop_reason: Option<&'static str>,
    pub stop_sequence: Option<&'static str>,
    pub usage: MessageUsage,
}

/// A content block.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Block<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
}

/// `message.usage`.
#[derive(Serialize)]
pub(crate) struct MessageUsage {
    pub input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Usage> for MessageUsage {
    fn from(usage: Usage) -> Self {
        Self {
            input_tokens: usage.input,
            cache_creation_input_tokens: usage.cache_creation,
            cache_read_input_tokens: usage.cached,
            output_tokens: usage.output,
        }
    }
}

/// The delta of a `content_block_delta`.
#[derive(Serialize)]
#[serde(tag = "type")]
pub(crate) enum Delta<'a> {
    #[serde(rename = "text_delta")]
    Text { text: &'a str },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: &'a str },
    #[serde(rename = "signature_delta")]
    Signature { signature: &'a str },
}

/// One event of a Messages stream (the `error` event is written from `errors::AnthropicError`).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum StreamEvent<'a> {
    MessageStart {
        message: &'a Message<'a>,
    },
    Ping,
    ContentBlockStart {
        index: u32,
        content_block: &'a Block<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: Delta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: StopDelta,
        usage: OutputUsage,
    },
    MessageStop,
}

impl StreamEvent<'_> {
    /// The event type, also written on the `event:` line.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::MessageStart { .. } => "message_start",
            Self::Ping => "ping",
            Self::ContentBlockStart { .. } => "content_block_start",
            Self::ContentBlockDelta { .. } => "content_block_delta",
            Self::ContentBlockStop { .. } => "content_block_stop",
            Self::MessageDelta { .. } => "message_delta",
            Self::MessageStop => "message_stop",
        }
    }
}

/// `message_delta.delta`.
#[derive(Serialize)]
pub(crate) struct StopDelta {
    pub stop_reason: &'static str,
    pub stop_sequence: Option<&'static str>,
}

/// `message_delta.usage`.
#[derive(Serialize)]
pub(crate) struct OutputUsage {
    pub output_tokens: u64,
}

/// The answer of `/v1/messages/count_tokens`.
#[derive(Serialize)]
pub(crate) struct TokenCount {
    pub input_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_named_as_their_type() {
        let block = Block::Text { text: "" };
        let events = [
            StreamEvent::Ping,
            StreamEvent::MessageStop,
            StreamEvent::ContentBlockStop { index: 0 },
            StreamEvent::ContentBlockStart {
                index: 0,
                content_block: &block,
            },
            StreamEvent::ContentBlockDelta {
                index: 0,
                delta: Delta::Signature { signature: "s" },
            },
        ];
        for event in events {
            let json = serde_json::to_value(&event).unwrap();
            assert_eq!(json["type"], event.name());
        }
    }
}
