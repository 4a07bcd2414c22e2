//! An incremental scanner of Server-Sent Events that finds event boundaries and names without
//! copying or parsing the events it only forwards.
//!
//! The relay forwards upstream chunks as they are; the scanner watches the same bytes to learn
//! which events went by. It copies only the unfinished tail of a chunk (an event cut across two
//! reads), into a buffer that is reused, so a stream costs no allocation per event.

use std::borrow::Cow;

use bytes::{Buf, BytesMut};
use memchr::memmem;

/// One complete event, borrowed from the scanned bytes.
pub struct SseEvent<'a> {
    name: &'a [u8],
    raw: &'a [u8],
}

impl<'a> SseEvent<'a> {
    /// The event's type: its `event:` field, else the `"type"` of its JSON data (empty if
    /// neither says).
    pub fn name(&self) -> &'a [u8] {
        self.name
    }

    /// The event's bytes without the blank line that ends it.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The `data:` payload; lines joined with `\n` (borrowed when there is one line, the norm).
    pub fn data(&self) -> Cow<'a, [u8]> {
        let mut lines = data_lines(self.raw);
        let Some(first) = lines.next() else {
            return Cow::Borrowed(&[]);
        };
        match lines.next() {
            None => Cow::Borrowed(first),
            Some(second) => {
                let mut joined = first.to_vec();
                for line in std::iter::once(second).chain(lines) {
                    joined.push(b'\n');
                    joined.extend_from_slice(line);
                }
                Cow::Owned(joined)
            }
        }
    }

    /// The `data:` payload when it is one line (the norm), with where it starts in
    /// [`SseEvent::raw`]: what a caller needs to splice a new value into the event without
    /// rebuilding it. `None` for no data or several lines.
    pub fn single_data(&self) -> Option<(usize, &'a [u8])> {
        let mut found = None;
        let mut at = 0;
        for line in self.raw.split(|&b| b == b'\n') {
            let text = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(value) = field(text, b"data") {
                if found.is_some() {
                    return None;
                }
                found = Some((at + text.len() - value.len(), value));
            }
            at += line.len() + 1;
        }
        found
    }
}

#[derive(Default)]
pub struct SseScanner {
    carry: BytesMut,
    /// How much of `carry` has been searched for a boundary already. The search resumes there
    /// (less the two bytes a boundary cut by the chunk's end may have begun with), so a long
    /// event costs one pass over its bytes, not one pass per chunk.
    searched: usize,
    /// Bytes the boundary search has looked at, in all.
    examined: u64,
}

impl SseScanner {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans `chunk`, calling `on_event` for every event it completes, in order. Comment-only
    /// events (keepalives) are skipped.
    pub fn feed(&mut self, chunk: &[u8], mut on_event: impl FnMut(SseEvent<'_>)) {
        if self.carry.is_empty() {
            let used = scan(chunk, 0, &mut self.examined, &mut on_event);
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let resume = self.searched.saturating_sub(2);
            self.carry.extend_from_slice(chunk);
            let used = scan(&self.carry, resume, &mut self.examined, &mut on_event);
            self.carry.advance(used);
        }
        // Everything left has been searched: it holds no complete boundary.
        self.searched = self.carry.len();
    }

    /// Bytes of an unfinished event waiting for the rest.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Bytes the boundary search has examined since the scanner was made: about the bytes fed,
    /// whatever the chunking (the scan is linear).
    pub fn examined(&self) -> u64 {
        self.examined
    }
}

/// Calls `on_event` for each complete event in `buf`; returns how many bytes were consumed.
/// `resume`: no boundary starts before this offset (it was searched already).
fn scan(
    buf: &[u8],
    resume: usize,
    examined: &mut u64,
    on_event: &mut impl FnMut(SseEvent<'_>),
) -> usize {
    let mut start = 0;
    let mut from = resume;
    while let Some((end, next)) = boundary(buf, from, examined) {
        let raw = &buf[start..end];
        if let Some(name) = event_name(raw) {
            on_event(SseEvent { name, raw });
        }
        start = next;
        from = next;
    }
    start
}

/// The first event end in `buf` at or after `from`, and where the next event starts: a blank
/// line, written as `\n\n` or `\r\n\r\n` (or a mix). One pass: each byte is looked at once.
fn boundary(buf: &[u8], from: usize, examined: &mut u64) -> Option<(usize, usize)> {
    let rest = buf.get(from..)?;
    for at in memchr::memchr_iter(b'\n', rest) {
        let i = from + at;
        let after = &buf[i + 1..];
        let next = if after.starts_with(b"\n") {
            Some(i + 2)
        } else if after.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        };
        if let Some(next) = next {
            *examined += (i + 1 - from) as u64;
            return Some((i, next));
        }
    }
    *examined += rest.len() as u64;
    None
}

/// The event's lines, without their `\r`. Found with `memchr` (a data line is most of an
/// event's bytes, and every translated event's data is looked up).
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(raw);
    std::iter::from_fn(move || {
        let text = rest?;
        let line = match memchr::memchr(b'\n', text) {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                &text[..end]
            }
            None => {
                rest = None;
                text
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

fn field<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

fn data_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    lines(raw).filter_map(|l| field(l, b"data"))
}

/// The event's type: its `event:` field, else the `"type"` of its JSON data. `None` for an
/// event with neither (a comment-only keepalive).
fn event_name(raw: &[u8]) -> Option<&[u8]> {
    if let Some(name) = lines(raw).find_map(|l| field(l, b"event")) {
        return Some(name);
    }
    let data = data_lines(raw).next()?;
    Some(json_type(data).unwrap_or(b""))
}

/// The value of the first `"type":"…"` in a JSON text, without parsing it. Providers put the
/// event's own type first; a nested `type` comes later in the text.
fn json_type(data: &[u8]) -> Option<&[u8]> {
    let at = memmem::find(data, b"\"type\"")?;
    let rest = &data[at + 6..];
    let rest = rest
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let rest = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(scanner: &mut SseScanner, chunk: &[u8]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        scanner.feed(chunk, |e| {
            out.push((
                String::from_utf8(e.name().to_vec()).unwrap(),
                String::from_utf8(e.data().into_owned()).unwrap(),
            ))
        });
        out
    }

    #[test]
    fn finds_events_and_names_across_chunk_cuts() {
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n: keepalive\n\nevent: response.output_text.delta\ndata: {\"delta\":\"hi\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n";
        for cut in 0..stream.len() {
            let mut s = SseScanner::new();
            let mut got = names(&mut s, &stream[..cut]);
            got.extend(names(&mut s, &stream[cut..]));
            let kinds: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                kinds,
                vec![
                    "response.created",
                    "response.output_text.delta",
                    "response.completed"
                ],
                "cut at {cut}"
            );
            assert_eq!(got[1].1, "{\"delta\":\"hi\"}");
            assert_eq!(s.pending(), 0);
        }
    }

    #[test]
    fn crlf_framing_data_only_events_and_multiline_data() {
        let mut s = SseScanner::new();
        let got = names(
            &mut s,
            b"data: {\"type\":\"response.failed\",\"response\":{\"type\":\"x\"}}\r\n\r\ndata: a\ndata: b\n\n",
        );
        assert_eq!(got[0].0, "response.failed");
        assert_eq!(got[1].0, "");
        assert_eq!(got[1].1, "a\nb");
    }

    /// One 8 MiB line fed in 4 KiB chunks is searched about once, not once per chunk (which
    /// was 8 MiB²/8 KiB ≈ 8 GiB of searching: the quadratic scan of issue 13).
    #[test]
    fn scanning_a_long_line_in_small_chunks_is_linear() {
        let mut s = SseScanner::new();
        let mut fed = 0u64;
        let head = b"event: response.created\ndata: {}\n\ndata: ";
        s.feed(head, |_| {});
        fed += head.len() as u64;
        let piece = vec![b'x'; 4096];
        for _ in 0..2048 {
            s.feed(&piece, |_| {});
            fed += piece.len() as u64;
        }
        let mut names = 0;
        s.feed(b"\r\n\r\n", |_| names += 1);
        fed += 4;
        assert_eq!(names, 1);
        assert_eq!(s.pending(), 0);
        assert!(
            s.examined() <= fed + 2 * 2050,
            "examined {} bytes for {fed} fed",
            s.examined()
        );
        assert!(s.examined() >= fed - 8, "the counter counts");
    }

    /// Many small events in one chunk: each is found by one pass too.
    #[test]
    fn scanning_many_events_in_one_chunk_is_linear() {
        let event = b"event: response.output_text.delta\ndata: {\"delta\":\"hi\"}\n\n";
        let chunk: Vec<u8> = event.repeat(20_000);
        let mut s = SseScanner::new();
        let mut count = 0;
        s.feed(&chunk, |_| count += 1);
        assert_eq!(count, 20_000);
        assert!(s.examined() <= chunk.len() as u64, "{}", s.examined());
    }
}
