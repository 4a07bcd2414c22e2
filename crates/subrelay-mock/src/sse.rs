//! Server-sent event streams, for every API the mock imitates.
//!
//! A stream is written whole into one buffer (remembering where each event ends), then cut down
//! to what the behaviour lets through: every event, or the events before a scripted cut or hang.
//! The last event written is the stream's terminal one (`response.completed`, `message_stop`,
//! `data: [DONE]`), and a cut or hang never lets it through, so a client can always tell a
//! broken stream from a finished one.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;

use crate::behavior::Behavior;
use crate::body::{Ending, MockBody, Segment};

/// Size of the chunks the hostile modes write (a huge line, a long preamble).
const HOSTILE_PIECE: usize = 64 * 1024;
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
    pub(crate) fn into_reply(mut self, behavior: &Behavior) -> Reply {
        if let Some(at) = behavior.malformed_event_at {
            self.cut_data_of(at);
        }
        let (sent, ending) = stop_point(behavior, self.ends.len());
        let separate = !behavior.event_interval.is_zero();
        let hostile =
            behavior.huge_line.is_some() || behavior.preamble_bytes.is_some() || behavior.endless;
        let body = if hostile {
            let interval = if behavior.endless {
                behavior.event_interval.max(Duration::from_millis(1))
            } else {
                behavior.event_interval
            };
            MockBody::segments(self.into_hostile(behavior, sent), interval, ending)
        } else {
            MockBody::chunks(
                self.into_chunks(sent, separate),
                behavior.event_interval,
                ending,
            )
        };
        Reply {
            status: StatusCode::OK,
            content_type: "text/event-stream",
            body,
        }
    }

    /// Cuts the data of event `at` in half (so it is no longer JSON), keeping it one event.
    fn cut_data_of(&mut self, at: usize) {
        let Some(&end) = self.ends.get(at) else {
            return;
        };
        let start = at.checked_sub(1).map_or(0, |i| self.ends[i]);
        let event = &self.buf[start..end];
        let data = event
            .windows(6)
            .position(|w| w == b"data: ")
            .map_or(0, |i| i + 6);
        // The data runs up to the blank line ending the event.
        let keep = data + (event.len() - 2 - data) / 2;
        let mut buf = BytesMut::with_capacity(self.buf.len());
        buf.put_slice(&self.buf[..start + keep]);
        buf.put_slice(b"\n\n");
        let shrunk = end - (start + keep + 2);
        buf.put_slice(&self.buf[end..]);
        self.buf = buf;
        for later in &mut self.ends[at..] {
            *later -= shrunk;
        }
    }

    /// The first `sent` events with the hostile modes' segments put in: a long preamble after
    /// the first event, a huge line after `hostile_at` events, and (endless) the last event
    /// before the terminal one repeated forever instead of the terminal event.
    fn into_hostile(self, behavior: &Behavior, sent: usize) -> Vec<Segment> {
        let Self { buf, ends } = self;
        let all = buf.freeze();
        let sent = if behavior.endless {
            sent.min(ends.len().saturating_sub(1))
        } else {
            sent
        };
        let end_of = |i: usize| match i.min(sent) {
            0 => 0,
            i => ends[i - 1],
        };
        let event = |i: usize| all.slice(end_of(i)..end_of(i + 1));
        // (events before it, segments), in stream order
        let mut inserts: Vec<(usize, Vec<Segment>)> = Vec::new();
        if let Some(bytes) = behavior.preamble_bytes.filter(|_| sent > 0) {
            let first = event(0);
            let copies = (HOSTILE_PIECE / first.len().max(1)).max(1);
            let piece = Bytes::from(first.repeat(copies));
            let left = bytes.div_ceil(piece.len()) * piece.len();
            inserts.push((
                1,
                vec![Segment::Repeat {
                    piece,
                    left: Some(left),
                }],
            ));
        }
        if let Some(bytes) = behavior.huge_line {
            let at = behavior.hostile_at.unwrap_or(1).min(sent);
            inserts.push((
                at,
                vec![
                    Segment::Once(Bytes::from_static(b"data: ")),
                    Segment::Repeat {
                        piece: Bytes::from(vec![b'x'; HOSTILE_PIECE]),
                        left: Some(bytes),
                    },
                    Segment::Once(Bytes::from_static(b"\n\n")),
                ],
            ));
        }
        if behavior.endless && sent > 0 {
            inserts.push((
                sent,
                vec![Segment::Repeat {
                    piece: event(sent - 1),
                    left: None,
                }],
            ));
        }
        inserts.sort_by_key(|(at, _)| *at);
        let mut segments = Vec::new();
        let mut done = 0;
        for (at, mut insert) in inserts {
            if at > done {
                segments.push(Segment::Once(all.slice(end_of(done)..end_of(at))));
                done = at;
            }
            segments.append(&mut insert);
        }
        if sent > done {
            segments.push(Segment::Once(all.slice(end_of(done)..end_of(sent))));
        }
        segments
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

    async fn written(body: MockBody, limit: usize) -> Vec<u8> {
        use http_body_util::BodyExt;
        let mut body = body;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(frame) = body.frame().await else {
                break;
            };
            out.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        out
    }

    fn three_events() -> SseWriter {
        let mut sse = SseWriter::with_capacity(3, 64);
        sse.event("a", &1).unwrap();
        sse.event("b", &2).unwrap();
        sse.event("end", &3).unwrap();
        sse
    }

    #[tokio::test]
    async fn a_huge_line_goes_after_the_chosen_event() {
        let b = Behavior {
            huge_line: Some(100_000),
            hostile_at: Some(2),
            ..Behavior::default()
        };
        let out = written(three_events().into_reply(&b).body, usize::MAX).await;
        let text = String::from_utf8(out).unwrap();
        let line = format!("data: {}\n\n", "x".repeat(100_000));
        let expected =
            format!("event: a\ndata: 1\n\nevent: b\ndata: 2\n\n{line}event: end\ndata: 3\n\n");
        assert_eq!(text, expected);
    }

    #[tokio::test]
    async fn a_long_preamble_repeats_the_first_event() {
        let b = Behavior {
            preamble_bytes: Some(1000),
            ..Behavior::default()
        };
        let out = written(three_events().into_reply(&b).body, usize::MAX).await;
        let text = String::from_utf8(out).unwrap();
        let copies = text.matches("event: a\n").count();
        assert!(copies * 17 >= 1001, "{copies} copies");
        assert!(text.ends_with("event: b\ndata: 2\n\nevent: end\ndata: 3\n\n"));
    }

    #[tokio::test]
    async fn an_endless_stream_repeats_without_its_terminal_event() {
        let b = Behavior {
            endless: true,
            ..Behavior::default()
        };
        let out = written(three_events().into_reply(&b).body, 10_000).await;
        let text = String::from_utf8(out).unwrap();
        assert!(text.len() >= 10_000);
        assert!(text.matches("event: b\n").count() > 100);
        assert!(!text.contains("event: end"));
    }

    #[test]
    fn a_malformed_event_has_half_its_data_and_stays_one_event() {
        let mut sse = SseWriter::with_capacity(3, 64);
        for n in 0..3 {
            sse.event("e", &serde_json::json!({"type": "e", "n": n}))
                .unwrap();
        }
        let before = sse.buf.len();
        sse.cut_data_of(1);
        assert_eq!(sse.ends.len(), 3);
        let all = std::str::from_utf8(&sse.buf).unwrap();
        let events: Vec<&str> = all.split_terminator("\n\n").collect();
        assert_eq!(events.len(), 3, "{all}");
        let data = events[1].split("data: ").nth(1).unwrap();
        assert!(
            serde_json::from_str::<serde_json::Value>(data).is_err(),
            "{data}"
        );
        assert!(serde_json::from_str::<serde_json::Value>(
            events[2].split("data: ").nth(1).unwrap()
        )
        .is_ok());
        assert_eq!(*sse.ends.last().unwrap(), sse.buf.len());
        assert!(sse.buf.len() < before);
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
