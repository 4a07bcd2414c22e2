//! Building answers: streams, JSON response objects, compactions and errors.
//!
//! Everything here is synchronous and does no I/O: each function turns a [`Behavior`] into a
//! [`Reply`] whose body chunks are already serialized. Timing (delays, pauses between events,
//! cuts and hangs) is carried out later by the body, so the bytes are computed once, into
//! buffers sized up front.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;

use crate::behavior::{Behavior, DEFAULT_TEXT};
use crate::body::{Ending, MockBody};
use crate::ids;
use crate::wire::{
    Compaction, CompactionItem, ErrorBody, ErrorDetail, Event, InputText, MessageItem, OutputText,
    ResponseError, ResponseObject, RetainedMessage, UsageWire,
};

/// Filler repeated to reach a requested text size.
const FILLER: &str = "The quick brown fox jumps over the lazy dog. ";

/// Body of the last-resort answer when an answer cannot be serialized.
const UNWRITABLE: &str = r#"{"error":{"message":"subrelay-mock could not write its answer","type":"server_error","code":"server_error","param":null}}"#;

/// A status, a content type and a prepared body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: MockBody,
}

impl Reply {
    /// The answer used when serialization fails (it cannot, for these types, but the error path
    /// must still give the client something well-formed).
    pub(crate) fn unwritable() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            content_type: "application/json",
            body: MockBody::full(Bytes::from_static(UNWRITABLE.as_bytes())),
        }
    }
}

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
    let mut sse = SseWriter::new(deltas, text.len());

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

    let (sent, ending) = stop_point(behavior, sse.events());
    let separate = !behavior.event_interval.is_zero();
    Ok(Reply {
        status: StatusCode::OK,
        content_type: "text/event-stream",
        body: MockBody::chunks(
            sse.into_chunks(sent, separate),
            behavior.event_interval,
            ending,
        ),
    })
}

/// How many events leave before the stream stops, and how it stops. The earlier of `cut_after`
/// and `hang_after` wins; either is clamped so the terminal event is never sent.
fn stop_point(behavior: &Behavior, events: usize) -> (usize, Ending) {
    let last_before_terminal = events.saturating_sub(1);
    let cut = behavior.cut_after.map(|n| (n, Ending::Cut));
    let hang = behavior.hang_after.map(|n| (n, Ending::Hang));
    match (cut, hang) {
        (Some(c), Some(h)) if h.0 < c.0 => (h.0.min(last_before_terminal), h.1),
        (Some(stop), _) | (None, Some(stop)) => (stop.0.min(last_before_terminal), stop.1),
        (None, None) => (events, Ending::Complete),
    }
}

/// Writes server-sent events into one buffer and remembers where each ends.
struct SseWriter {
    buf: BytesMut,
    ends: Vec<usize>,
    sequence: u64,
}

impl SseWriter {
    fn new(deltas: usize, text_len: usize) -> Self {
        // Three full response objects, small events, and the text written out five times
        // (deltas, text.done, content_part.done, output_item.done, completed).
        let capacity = 3 * 1024 + (deltas + 6) * 256 + text_len.saturating_mul(5);
        Self {
            buf: BytesMut::with_capacity(capacity),
            ends: Vec::with_capacity(deltas + 9),
            sequence: 0,
        }
    }

    /// Appends one event, numbered with the next sequence number.
    fn emit<'a>(&mut self, event: impl FnOnce(u64) -> Event<'a>) -> Result<(), serde_json::Error> {
        let event = event(self.sequence);
        self.sequence += 1;
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(event.name().as_bytes());
        self.buf.put_slice(b"\ndata: ");
        serde_json::to_writer((&mut self.buf).writer(), &event)?;
        self.buf.put_slice(b"\n\n");
        self.ends.push(self.buf.len());
        Ok(())
    }

    fn events(&self) -> usize {
        self.ends.len()
    }

    /// The first `count` events, as one chunk or one chunk per event.
    fn into_chunks(mut self, count: usize, separate: bool) -> Vec<Bytes> {
        let Some(&end) = count.checked_sub(1).and_then(|last| self.ends.get(last)) else {
            return Vec::new();
        };
        self.buf.truncate(end);
        let all = self.buf.freeze();
        if !separate {
            return vec![all];
        }
        let mut start = 0;
        self.ends[..count]
            .iter()
            .map(|&end| {
                let chunk = all.slice(start..end);
                start = end;
                chunk
            })
            .collect()
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
        return failure();
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
        return failure();
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
        usage: UsageWire::from(behavior.usage_or_default()),
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
    response.usage = Some(UsageWire::from(behavior.usage_or_default()));
    response
}

/// A 200 JSON reply; `cut_after`/`hang_after` send half of it, then cut or hang.
fn json_reply(bytes: Bytes, behavior: &Behavior) -> Reply {
    let stop = match (behavior.cut_after, behavior.hang_after) {
        (Some(_), _) => Some(Ending::Cut),
        (None, Some(_)) => Some(Ending::Hang),
        (None, None) => None,
    };
    let body = match stop {
        Some(ending) => {
            let half = bytes.slice(..bytes.len() / 2);
            MockBody::chunks(vec![half], std::time::Duration::ZERO, ending)
        }
        None => MockBody::full(bytes),
    };
    Reply {
        status: StatusCode::OK,
        content_type: "application/json",
        body,
    }
}

// === errors ===

/// An OpenAI-shaped error answer.
pub(crate) fn error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Result<Reply, serde_json::Error> {
    let body = ErrorBody {
        error: ErrorDetail {
            message,
            kind,
            code,
            param,
        },
    };
    Ok(Reply {
        status,
        content_type: "application/json",
        body: MockBody::full(to_json(&body, 192 + message.len())?),
    })
}

/// The error answer for a scripted status, typed the way the real API types it.
pub(crate) fn scripted_error(status: StatusCode) -> Result<Reply, serde_json::Error> {
    let (kind, code, text) = match status.as_u16() {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "permission_error",
            None,
            "You are not allowed to sample from this model.",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist.",
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests.",
        ),
        500..=599 => (
            "server_error",
            Some("server_error"),
            "The server had an error while processing your request.",
        ),
        _ => ("invalid_request_error", None, "The request was rejected."),
    };
    let message = format!(
        "{text} (subrelay-mock: scripted status {})",
        status.as_u16()
    );
    error(status, &message, kind, code, None)
}

/// The non-stream counterpart of `fail_before_output`.
fn failure() -> Result<Reply, serde_json::Error> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "subrelay-mock: scripted failure before any output",
        "server_error",
        Some("server_error"),
        None,
    )
}

// === text ===

/// The output text: empty with zero events, else `text_bytes` of filler or the default sentence.
fn output_text(behavior: &Behavior) -> Cow<'static, str> {
    if behavior.delta_events() == 0 {
        return Cow::Borrowed("");
    }
    let Some(size) = behavior.text_bytes else {
        return Cow::Borrowed(DEFAULT_TEXT);
    };
    let mut text = String::with_capacity(size);
    while text.len() < size {
        let take = (size - text.len()).min(FILLER.len());
        text.push_str(&FILLER[..take]);
    }
    Cow::Owned(text)
}

/// Splits `text` into `parts` pieces of nearly equal size (some empty when the text is short).
fn split_even(text: &str, parts: usize) -> impl Iterator<Item = &str> {
    let boundary = move |i: usize| {
        let mut at = if parts == 0 {
            0
        } else {
            (text.len() as u128 * i as u128 / parts as u128) as usize
        };
        while !text.is_char_boundary(at) {
            at += 1;
        }
        at
    };
    (0..parts).map(move |i| &text[boundary(i)..boundary(i + 1)])
}

fn to_json(value: &impl Serialize, capacity: usize) -> Result<Bytes, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(capacity);
    serde_json::to_writer((&mut buf).writer(), value)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_text() {
        let pieces: Vec<_> = split_even("abcdefghij", 3).collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), "abcdefghij");
        let pieces: Vec<_> = split_even("ab", 5).collect();
        assert_eq!(pieces.len(), 5);
        assert_eq!(pieces.concat(), "ab");
        let pieces: Vec<_> = split_even("héllo wörld", 4).collect();
        assert_eq!(pieces.concat(), "héllo wörld");
    }

    #[test]
    fn text_size_is_exact() {
        let behavior = Behavior {
            text_bytes: Some(1000),
            ..Behavior::default()
        };
        assert_eq!(output_text(&behavior).len(), 1000);
        assert_eq!(output_text(&Behavior::default()), DEFAULT_TEXT);
    }

    async fn frames(reply: Reply) -> Vec<Bytes> {
        use http_body_util::BodyExt;
        let mut body = reply.body;
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        chunks
    }

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

    #[test]
    fn stop_point_never_reaches_the_terminal_event() {
        let b = |cut, hang| Behavior {
            cut_after: cut,
            hang_after: hang,
            ..Behavior::default()
        };
        assert_eq!(stop_point(&b(None, None), 10), (10, Ending::Complete));
        assert_eq!(stop_point(&b(Some(4), None), 10), (4, Ending::Cut));
        assert_eq!(stop_point(&b(Some(40), None), 10), (9, Ending::Cut));
        assert_eq!(stop_point(&b(Some(5), Some(3)), 10), (3, Ending::Hang));
        assert_eq!(stop_point(&b(Some(3), Some(3)), 10), (3, Ending::Cut));
    }
}
