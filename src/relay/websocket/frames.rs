//! A turn's SSE answer cut into the events that become its frames.
//!
//! The relay answers a turn with the SSE text of the upstream's stream, usually exactly as the
//! Responses API writes it: whole events of two lines, `event: NAME\ndata: JSON\n\n`, each
//! upstream read ending on an event's end. [`whole_events`] reads that shape in one pass over
//! the line ends; anything else (an event cut by the read, a comment, `\r\n`, several data
//! lines, another field) is left to the general [`SseScanner`](crate::protocol::sse::SseScanner),
//! which reads every shape the SSE format allows and was most of a turn's own cost when it read
//! the usual one too.

use bytes::Bytes;

/// The events of `chunk` when it is whole events of the usual two-line shape, appended to
/// `events` as (whether the history reads it, its data as a slice of `chunk`). `false` (with
/// `events` as it was) for any other shape.
pub fn whole_events(chunk: &Bytes, events: &mut Vec<(bool, Bytes)>) -> bool {
    let before = events.len();
    let mut rest: &[u8] = chunk;
    while !rest.is_empty() {
        let Some((name, data, next)) = one_event(rest) else {
            events.truncate(before);
            return false;
        };
        events.push((notable(name), chunk.slice_ref(data)));
        rest = next;
    }
    true
}

/// An event's data as its own bytes: a slice of the chunk (no copy) when it is one line there,
/// as the relay writes it; else the joined lines.
pub fn data_of(chunk: &Bytes, data: std::borrow::Cow<'_, [u8]>) -> Bytes {
    match data {
        std::borrow::Cow::Borrowed(part) if within(chunk, part) => chunk.slice_ref(part),
        data => Bytes::from(data.into_owned()),
    }
}

fn within(chunk: &[u8], part: &[u8]) -> bool {
    let (outer, inner) = (chunk.as_ptr_range(), part.as_ptr_range());
    outer.start <= inner.start && inner.end <= outer.end
}

/// Whether the socket's history reads the event (see `observe`).
pub fn notable(name: &[u8]) -> bool {
    matches!(
        name,
        b"response.output_item.done" | b"response.completed" | b"response.incomplete"
    )
}

/// `event: NAME\ndata: DATA\n\n` at the start of `text`: the name, the data and what follows.
fn one_event(text: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let text = text.strip_prefix(b"event: ")?;
    let end = memchr::memchr(b'\n', text)?;
    let (name, text) = (&text[..end], &text[end + 1..]);
    let text = text.strip_prefix(b"data: ")?;
    let end = memchr::memchr(b'\n', text)?;
    let (data, text) = (&text[..end], &text[end + 1..]);
    let next = text.strip_prefix(b"\n")?;
    let plain = |s: &[u8]| !s.is_empty() && !s.ends_with(b"\r") && !s.starts_with(b" ");
    (plain(name) && plain(data)).then_some((name, data, next))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::protocol::sse::SseScanner;

    /// What the general scanner makes of a chunk, as the socket used it.
    fn scanned(chunk: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        SseScanner::new().feed(chunk, |event| {
            if event.raw().first() != Some(&b':') {
                out.push((notable(event.name()), event.data().into_owned()));
            }
        });
        out
    }

    fn split(chunk: &[u8]) -> Option<Vec<(bool, Vec<u8>)>> {
        let mut events = vec![(false, Bytes::from_static(b"kept"))];
        let whole = whole_events(&Bytes::copy_from_slice(chunk), &mut events);
        let first = events.remove(0);
        assert_eq!(first.1, "kept", "what was there stays");
        if !whole {
            assert!(events.is_empty(), "nothing added: {chunk:?}");
            return None;
        }
        Some(events.into_iter().map(|(n, d)| (n, d.to_vec())).collect())
    }

    #[test]
    fn the_usual_stream_is_read_as_the_scanner_reads_it() {
        let chunk = b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n\
event: response.output_text.delta\ndata: {\"delta\":\"a: b\\n\"}\n\n\
event: response.output_item.done\ndata: {\"item\":{}}\n\n\
event: response.completed\ndata: {\"response\":{\"id\":\"r\"}}\n\n";
        let events = split(chunk).unwrap();
        assert_eq!(events, scanned(chunk));
        let notable: Vec<bool> = events.iter().map(|(n, _)| *n).collect();
        assert_eq!(notable, [false, false, true, true]);
        assert_eq!(split(b""), Some(Vec::new()));
    }

    /// Every other shape is left to the scanner, which still reads it (no event is lost).
    #[test]
    fn any_other_shape_is_left_to_the_scanner() {
        for chunk in [
            &b"event: a\ndata: {}\n\nevent: b\ndata: {"[..], // cut by the read
            b"event: a\ndata: {}\n",                         // the blank line not yet here
            b": keepalive\n\nevent: a\ndata: {}\n\n",        // a comment
            b"event: a\r\ndata: {}\r\n\r\n",                 // CRLF
            b"event: a\ndata: {\ndata: }\n\n",               // two data lines
            b"event: a\nid: 1\ndata: {}\n\n",                // another field
            b"data: {\"type\":\"a\"}\n\n",                   // no event line
            b"event:a\ndata:{}\n\n",                         // no space after the colon
            b"event: a\ndata:  {}\n\n",                      // two spaces
            b"event: \ndata: {}\n\n",                        // an empty name
        ] {
            assert_eq!(split(chunk), None, "{:?}", String::from_utf8_lossy(chunk));
        }
        // Control: the scanner reads the whole ones among them.
        assert_eq!(scanned(b"event: a\r\ndata: {}\r\n\r\n").len(), 1);
    }
}
