//! Responses API answers (Codex backend and `/v1/responses`): streams, JSON response objects and
//! compactions.
//!
//! Everything here is synchronous and does no I/O: each function turns a [`Behavior`] into a
//! [`Reply`] whose body chunks are already serialized. Timing (delays, pauses between events,
//! cuts and hangs) is carried out later by the body, so the bytes are computed once, into
//! buffers sized up front.

use crate::behavior::Behavior;
use crate::errors::Dialect;
use crate::ids;
use crate::reply::{json_reply, output_text, split_even, to_json, Reply};
use crate::sse::SseWriter;
use crate::wire::{
    Compaction, CompactionItem, Event, InputText, MessageItem, OutputText, ResponseError,
    ResponseObject, RetainedMessage, UsageWire,
};

// === streams ===

/// A `text/event-stream` answer: the full event sequence of a response.
pub(crate) fn stream(
    model: &str,
    store: bool,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let response_id = ids::fresh("resp_");
    let item_id = ids::fresh("msg_");
    let created_at = ids::now_unix();
    let deltas = behavior.delta_events();
    let text = output_text(behavior);
    let mut sse = Sequenced::new(deltas, text.len());

    let started = ResponseObject::new(&response_id, created_at, model, store);
    sse.emit(|sequence_number| Event::Created {
        sequence_number,
        response: &started,
    })?;
    sse.emit(|sequence_number| Event::InProgress {
        sequence_number,
        response: &started,
    })?;

    if behavior.fail_before_output {
        let mut failed = ResponseObject::new(&response_id, created_at, model, store);
        failed.status = "failed";
        failed.error = Some(ResponseError {
            code: "server_error",
            message: "subrelay-mock: scripted failure before any output",
        });
        sse.emit(|sequence_number| Event::Failed {
            sequence_number,
            response: &failed,
        })?;
    } else {
        let (output_index, content_index) = (0, 0);
        let opening = MessageItem {
            id: &item_id,
            kind: "message",
            status: "in_progress",
            role: "assistant",
            content: &[],
        };
        sse.emit(|sequence_number| Event::OutputItemAdded {
            sequence_number,
            output_index,
            item: &opening,
        })?;
        let empty_part = OutputText::new("");
        sse.emit(|sequence_number| Event::ContentPartAdded {
            sequence_number,
            item_id: &item_id,
            output_index,
            content_index,
            part: &empty_part,
        })?;
        for delta in split_even(&text, deltas) {
            sse.emit(|sequence_number| Event::OutputTextDelta {
                sequence_number,
                item_id: &item_id,
                output_index,
                content_index,
                delta,
                logprobs: [],
            })?;
        }
        sse.emit(|sequence_number| Event::OutputTextDone {
            sequence_number,
            item_id: &item_id,
            output_index,
            content_index,
            text: &text,
            logprobs: [],
        })?;
        let parts = [OutputText::new(&text)];
        sse.emit(|sequence_number| Event::ContentPartDone {
            sequence_number,
            item_id: &item_id,
            output_index,
            content_index,
            part: &parts[0],
        })?;
        let items = [MessageItem {
            id: &item_id,
            kind: "message",
            status: "completed",
            role: "assistant",
            content: &parts,
        }];
        sse.emit(|sequence_number| Event::OutputItemDone {
            sequence_number,
            output_index,
            item: &items[0],
        })?;
        let done = completed_response(&response_id, created_at, model, store, &items, behavior);
        sse.emit(|sequence_number| Event::Completed {
            sequence_number,
            response: &done,
        })?;
    }

    Ok(sse.writer.into_reply(behavior))
}

/// An SSE writer that numbers Responses events with `sequence_number`.
struct Sequenced {
    writer: SseWriter,
    next: u64,
}

impl Sequenced {
    fn new(deltas: usize, text_len: usize) -> Self {
        // Three full response objects, small events, and the text written out five times
        // (deltas, text.done, content_part.done, output_item.done, completed).
        let capacity = 3 * 1024 + (deltas + 6) * 256 + text_len.saturating_mul(5);
        Self {
            writer: SseWriter::with_capacity(deltas + 9, capacity),
            next: 0,
        }
    }

    /// Appends one event, numbered with the next sequence number.
    fn emit<'a>(&mut self, event: impl FnOnce(u64) -> Event<'a>) -> Result<(), serde_json::Error> {
        let event = event(self.next);
        self.next += 1;
        self.writer.event(event.name(), &event)
    }
}

// === JSON answers ===

/// The non-stream answer of `/v1/responses`: one completed `response` object.
pub(crate) fn response_json(
    model: &str,
    store: bool,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    if behavior.fail_before_output {
        return Dialect::OpenAi.failure();
    }
    let response_id = ids::fresh("resp_");
    let item_id = ids::fresh("msg_");
    let text = output_text(behavior);
    let parts = [OutputText::new(&text)];
    let items = [MessageItem {
        id: &item_id,
        kind: "message",
        status: "completed",
        role: "assistant",
        content: &parts,
    }];
    let response = completed_response(
        &response_id,
        ids::now_unix(),
        model,
        store,
        &items,
        behavior,
    );
    let bytes = to_json(&response, 1024 + text.len())?;
    Ok(json_reply(bytes, behavior))
}

/// The answer of `/responses/compact`: a retained user message and an opaque compaction item.
pub(crate) fn compaction(behavior: &Behavior) -> Result<Reply, serde_json::Error> {
    if behavior.fail_before_output {
        return Dialect::OpenAi.failure();
    }
    let id = ids::fresh("cmp_");
    let blob = ids::opaque_blob(&id);
    let text = output_text(behavior);
    let compaction = Compaction {
        id: &id,
        object: "response.compaction",
        created_at: ids::now_unix(),
        output: (
            RetainedMessage {
                kind: "message",
                role: "user",
                content: [InputText {
                    kind: "input_text",
                    text: &text,
                }],
            },
            CompactionItem {
                kind: "compaction",
                encrypted_content: &blob,
            },
        ),
        usage: UsageWire::of(behavior),
    };
    let bytes = to_json(&compaction, 512 + text.len())?;
    Ok(json_reply(bytes, behavior))
}

fn completed_response<'a>(
    id: &'a str,
    created_at: u64,
    model: &'a str,
    store: bool,
    items: &'a [MessageItem<'a>],
    behavior: &Behavior,
) -> ResponseObject<'a> {
    let mut response = ResponseObject::new(id, created_at, model, store);
    response.status = "completed";
    response.output = items;
    response.usage = Some(UsageWire::of(behavior));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::frames;

    #[tokio::test]
    async fn ready_events_leave_in_one_write_and_paced_ones_one_by_one() {
        let together = stream("m", false, &Behavior::default()).unwrap();
        assert_eq!(frames(together).await.len(), 1);
        let paced = Behavior {
            event_interval: std::time::Duration::from_millis(1),
            ..Behavior::default()
        };
        let chunks = frames(stream("m", false, &paced).unwrap()).await;
        assert_eq!(chunks.len(), 11);
        assert!(chunks
            .iter()
            .all(|c| c.starts_with(b"event: ") && c.ends_with(b"\n\n")));
    }
}
