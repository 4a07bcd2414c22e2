//! Server-sent event streams, for every API the mock imitates.
//!
//! A stream is written whole into one buffer (remembering where each event ends), then cut down
//! to what the behaviour lets through: every event, or the events before a scripted cut or hang.
//! The last event written is the stream's terminal one (`response.completed`, `message_stop`,
//! `data: [DONE]`), and a cut or hang never lets it through, so a client can always tell a
//! broken stream from a finished one.

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;

use crate::behavior::Behavior;
use crate::body::{Ending, MockBody};
use crate::reply::Reply;

/// Writes server-sent events into one buffer and remembers where each ends.
pub(crate) struct SseWriter {
    buf: BytesMut,
    ends: Vec<usize>,
}

impl SseWriter {
    /// A writer for about `events` events and `bytes` bytes.
    pub(crate) fn with_capacity(events: usize, bytes: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(bytes),
            ends: Vec::with_capacity(events),
        }
    }

    /// Appends `event: <name>\ndata: <json>\n\n`.
    pub(crate) fn event(
        &mut self,
        name: &str,
        data: &impl Serialize,
    ) -> Result<(), serde_json::Error> {
        self.buf.put_slice(b"event: ");
        self.buf.put_slice(name.as_bytes());
        self.buf.put_slice(b"\n");
        self.data(data)
    }

    /// Appends `data: <json>\n\n` (streams without `event:` lines, like Chat Completions).
    pub(crate) fn data(&mut self, data: &impl Serialize) -> Result<(), serde_json::Error> {
        self.buf.put_slice(b"data: ");
        serde_json::to_writer((&mut self.buf).writer(), data)?;
        self.end_event();
        Ok(())
    }

    /// Appends `data: [DONE]\n\n`, the end marker of Chat Completions streams.
    pub(crate) fn done(&mut self) {
        self.buf.put_slice(b"data: [DONE]");
        self.end_event();
    }

    fn end_event(&mut self) {
        self.buf.put_slice(b"\n\n");
        self.ends.push(self.buf.len());
    }

    /// The stream as a 200 `text/event-stream` reply paced and ended as `behavior` asks: events
    /// `event_interval` apart (all in one write when it is zero), up to a cut or hang.
    pub(crate) fn into_reply(self, behavior: &Behavior) -> Reply {
        let (sent, ending) = stop_point(behavior, self.ends.len());
        let separate = !behavior.event_interval.is_zero();
        Reply {
            status: StatusCode::OK,
            content_type: "text/event-stream",
            body: MockBody::chunks(
                self.into_chunks(sent, separate),
                behavior.event_interval,
                ending,
            ),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn events_are_framed_and_chunked() {
        let mut sse = SseWriter::with_capacity(3, 64);
        sse.event("ping", &serde_json::json!({"type": "ping"}))
            .unwrap();
        sse.data(&1).unwrap();
        sse.done();
        let chunks = sse.into_chunks(3, true);
        assert_eq!(
            chunks,
            [
                &b"event: ping\ndata: {\"type\":\"ping\"}\n\n"[..],
                b"data: 1\n\n",
                b"data: [DONE]\n\n"
            ]
        );
    }
}
