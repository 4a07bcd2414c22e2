//! The Anthropic Messages API: `POST /v1/messages` (stream or JSON) and
//! `POST /v1/messages/count_tokens`.
//!
//! Requests are checked in `request` (auth, version header, body, thinking signatures); this
//! module builds the answers with the shared machinery (`sse`, `reply`) from the shapes in `wire`.
//!
//! A stream is `message_start`, `ping`, [a thinking block: `content_block_start`,
//! `thinking_delta`, `signature_delta`, `content_block_stop`], `content_block_start`, N ×
//! `text_delta`, `content_block_stop`, `message_delta`, `message_stop`. With
//! `fail_before_output` it is `message_start`, `ping`, then an `error` event (`overloaded_error`).

mod request;
mod wire;

pub(crate) use request::{read, Ask};

use crate::behavior::Behavior;
use crate::errors::{AnthropicError, Dialect};
use crate::ids;
use crate::reply::{json_reply, output_text, split_even, to_json, Reply};
use crate::sse::SseWriter;
use request::signature_for;
use wire::{Block, Delta, Message, MessageUsage, OutputUsage, StopDelta, StreamEvent, TokenCount};

/// The text of the thinking block answered when thinking is enabled.
const THINKING: &str = "The subrelay mock thinks about the request.";

/// The answer a behaviour asks for; `credential` signs thinking blocks.
pub(crate) fn answer(
    ask: &Ask,
    model: &str,
    credential: Option<&str>,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let signature = signature_for(credential.unwrap_or_default());
    let signature = ask.thinking.then_some(signature.as_str());
    if ask.count_tokens {
        count_tokens(behavior)
    } else if ask.stream {
        stream(model, signature, behavior)
    } else {
        message_json(model, signature, behavior)
    }
}

/// `{"input_tokens": N}`.
fn count_tokens(behavior: &Behavior) -> Result<Reply, serde_json::Error> {
    if behavior.fail_before_output {
        return Dialect::Anthropic.failure();
    }
    let count = TokenCount {
        input_tokens: behavior.usage_or_default().input,
    };
    Ok(json_reply(to_json(&count, 32)?, behavior))
}

/// The non-stream answer: one `message` object.
fn message_json(
    model: &str,
    signature: Option<&str>,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    if behavior.fail_before_output {
        return Dialect::Anthropic.failure();
    }
    let id = ids::fresh("msg_");
    let text = output_text(behavior);
    let text_block = Block::Text { text: &text };
    let blocks = match signature {
        Some(signature) => vec![
            Block::Thinking {
                thinking: THINKING,
                signature,
            },
            text_block,
        ],
        None => vec![text_block],
    };
    let message = Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model,
        content: &blocks,
        stop_reason: Some("end_turn"),
        stop_sequence: None,
        usage: MessageUsage::from(behavior.usage_or_default()),
    };
    Ok(json_reply(to_json(&message, 768 + text.len())?, behavior))
}

/// The stream answer.
fn stream(
    model: &str,
    signature: Option<&str>,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let id = ids::fresh("msg_");
    let usage = behavior.usage_or_default();
    let deltas = behavior.delta_events();
    let text = output_text(behavior);
    let mut sse = SseWriter::with_capacity(deltas + 11, 2048 + deltas * 128 + text.len());

    let started = Message {
        id: &id,
        kind: "message",
        role: "assistant",
        model,
        content: &[],
        stop_reason: None,
        stop_sequence: None,
        usage: MessageUsage {
            output_tokens: 1,
            ..MessageUsage::from(usage)
        },
    };
    emit(&mut sse, StreamEvent::MessageStart { message: &started })?;
    emit(&mut sse, StreamEvent::Ping)?;

    if behavior.fail_before_output {
        sse.event(
            "error",
            &AnthropicError::new("overloaded_error", "Overloaded"),
        )?;
        return Ok(sse.into_reply(behavior));
    }

    let mut index = 0;
    if let Some(signature) = signature {
        let opening = Block::Thinking {
            thinking: "",
            signature: "",
        };
        emit(
            &mut sse,
            StreamEvent::ContentBlockStart {
                index,
                content_block: &opening,
            },
        )?;
        emit(
            &mut sse,
            StreamEvent::ContentBlockDelta {
                index,
                delta: Delta::Thinking { thinking: THINKING },
            },
        )?;
        emit(
            &mut sse,
            StreamEvent::ContentBlockDelta {
                index,
                delta: Delta::Signature { signature },
            },
        )?;
        emit(&mut sse, StreamEvent::ContentBlockStop { index })?;
        index += 1;
    }
    let opening = Block::Text { text: "" };
    emit(
        &mut sse,
        StreamEvent::ContentBlockStart {
            index,
            content_block: &opening,
        },
    )?;
    for piece in split_even(&text, deltas) {
        emit(
            &mut sse,
            StreamEvent::ContentBlockDelta {
                index,
                delta: Delta::Text { text: piece },
            },
        )?;
    }
    emit(&mut sse, StreamEvent::ContentBlockStop { index })?;
    emit(
        &mut sse,
        StreamEvent::MessageDelta {
            delta: StopDelta {
                stop_reason: "end_turn",
                stop_sequence: None,
            },
            usage: OutputUsage {
                output_tokens: usage.output,
            },
        },
    )?;
    emit(&mut sse, StreamEvent::MessageStop)?;
    Ok(sse.into_reply(behavior))
}

fn emit(sse: &mut SseWriter, event: StreamEvent<'_>) -> Result<(), serde_json::Error> {
    sse.event(event.name(), &event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::frames;

    #[tokio::test]
    async fn ready_events_leave_in_one_write_and_paced_ones_one_by_one() {
        let together = stream("m", None, &Behavior::default()).unwrap();
        assert_eq!(frames(together).await.len(), 1);
        let paced = Behavior {
            event_interval: std::time::Duration::from_millis(1),
            ..Behavior::default()
        };
        let chunks = frames(stream("m", Some("sig:k"), &paced).unwrap()).await;
        assert_eq!(chunks.len(), 13, "9 events plus 4 of the thinking block");
        assert!(chunks
            .iter()
            .all(|c| c.starts_with(b"event: ") && c.ends_with(b"\n\n")));
    }
}
