//! A fast read of the Responses API's delta events, the bulk of every translated stream.
//!
//! A `response.output_text.delta` (or refusal, reasoning summary, function-call arguments) event
//! is a flat JSON object: `{"type":"…","sequence_number":5,"item_id":"msg_…","output_index":0,
//! "content_index":0,"delta":"Hel","logprobs":[],"obfuscation":"…"}`. Reading it through serde
//! cost about 5,000 instructions per event (each key decoded and matched, each value skipped),
//! more than everything else a translated event costs; this reader walks the same bytes once.
//!
//! It accepts only a strict subset of JSON — one flat object whose values are strings without
//! escapes, unsigned integers, `[]`, `{}`, `null`, `true` or `false`, each key at most once —
//! and answers `None` for anything else (an escaped delta, a nested value, a float), which the
//! caller then reads with serde as before. So it never reads an event differently from serde; it
//! only skips serde for the common shape.

/// The fields of a delta event a translator uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuickDelta<'a> {
    pub output_index: u64,
    pub content_index: u64,
    pub summary_index: u64,
    pub delta: &'a str,
}

/// The delta event in `data`, if it has the common flat shape and a `delta` string; `None`
/// means "read it with serde".
pub(crate) fn quick_delta(data: &[u8]) -> Option<QuickDelta<'_>> {
    let mut read = Reader { bytes: data, at: 0 };
    read.skip_ws();
    read.eat(b'{')?;
    let mut found = QuickDelta {
        output_index: 0,
        content_index: 0,
        summary_index: 0,
        delta: "",
    };
    // Which of the four keys were seen: a repeated one is left to serde (which refuses it).
    let mut seen = [false; 4];
    read.skip_ws();
    if read.peek()? == b'}' {
        return None;
    }
    loop {
        read.skip_ws();
        let slot = match read.known_key() {
            Some(slot) => slot,
            None => {
                let key = read.key()?;
                read.skip_ws();
                read.eat(b':')?;
                slot_of(key)
            }
        };
        read.skip_ws();
        match slot {
            Some(3) => {
                // Checked as UTF-8 like every string serde decodes (keys too, below); the
                // values it skips it does not check either.
                found.delta = read.string()?;
            }
            Some(i) => {
                let n = read.number()?;
                match i {
                    0 => found.output_index = n,
                    1 => found.content_index = n,
                    _ => found.summary_index = n,
                }
            }
            None => read.skip_value()?,
        }
        if let Some(i) = slot {
            if std::mem::replace(&mut seen[i], true) {
                return None;
            }
        }
        read.skip_ws();
        match read.next()? {
            b',' => continue,
            b'}' => break,
            _ => return None,
        }
    }
    read.skip_ws();
    (read.at == data.len() && seen[3]).then_some(found)
}

/// The keys of a delta event as the Responses API writes them, with their quotes and colon, and
/// the slot of `found` each fills. Matched as fixed-length literals, they cost a few compares
/// each instead of a search for the key's end and a comparison with each name; any other key
/// (or one written with a space before its colon) takes the general way, which reads its slot
/// from the same table ([`slot_of`]).
const KNOWN_KEYS: [(&[u8], Option<usize>); 9] = [
    (b"\"type\":", None),
    (b"\"sequence_number\":", None),
    (b"\"item_id\":", None),
    (b"\"output_index\":", Some(0)),
    (b"\"content_index\":", Some(1)),
    (b"\"summary_index\":", Some(2)),
    (b"\"delta\":", Some(3)),
    (b"\"logprobs\":", None),
    (b"\"obfuscation\":", None),
];

/// The slot of `found` a key's bytes (without quotes) fill, if any.
fn slot_of(key: &[u8]) -> Option<usize> {
    KNOWN_KEYS
        .iter()
        .find(|(literal, _)| literal.get(1..literal.len() - 2) == Some(key))
        .and_then(|(_, slot)| *slot)
}

/// Where the first `"`, `\\` or control character of `bytes` is. Eight bytes at a time (the
/// zero-byte test of "Bit Twiddling Hacks", for each of the three): a delta event is mostly
/// strings of a few dozen bytes, which a byte-by-byte loop took about ten instructions per byte
/// over, and which are too short for `memchr`'s set-up to pay.
pub(crate) fn string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // A byte is flagged when it is zero (for the two XORs) or below 0x20. Borrows can flag
        // bytes above a real match too, never below one: the lowest flag is the first match.
        let found = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word))
            & HIGH;
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let tail = chunks.remainder();
    let at = tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    Some(bytes.len() - tail.len() + at)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters: where its contents are.
    fn string_span(&mut self) -> Option<std::ops::Range<usize>> {
        self.eat(b'"')?;
        let start = self.at;
        let len = string_end(&self.bytes[start..])?;
        if self.bytes[start + len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        Some(start..start + len)
    }

    fn string(&mut self) -> Option<&'a str> {
        let span = self.string_span()?;
        std::str::from_utf8(&self.bytes[span]).ok()
    }

    /// One of [`KNOWN_KEYS`] with its colon, consumed: its slot (`Some(None)` for a key that
    /// fills none). `None`: not one of them, nothing consumed.
    fn known_key(&mut self) -> Option<Option<usize>> {
        let rest = self.bytes.get(self.at..)?;
        // The key's first letter rules out all but one or two before any longer compare.
        let first = *rest.get(1)?;
        let (literal, slot) = KNOWN_KEYS
            .iter()
            .find(|(literal, _)| literal[1] == first && rest.starts_with(literal))?;
        self.at += literal.len();
        Some(*slot)
    }

    /// A key's bytes. Keys are ASCII in practice, checked as such (cheaply) before the full
    /// UTF-8 check serde would make.
    fn key(&mut self) -> Option<&'a [u8]> {
        let span = self.string_span()?;
        let key = &self.bytes[span];
        (key.is_ascii() || std::str::from_utf8(key).is_ok()).then_some(key)
    }

    /// An unsigned integer that fits u64, without sign, fraction or exponent.
    fn number(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        // JSON has no leading zeros; a fraction or exponent is left to serde.
        if digits == 0
            || (digits > 1 && self.bytes[start] == b'0')
            || matches!(self.peek(), Some(b'.' | b'e' | b'E'))
        {
            return None;
        }
        Some(n)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string_span().map(drop),
            b'0'..=b'9' => self.number().map(drop),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            open @ (b'[' | b'{') => {
                self.at += 1;
                self.skip_ws();
                self.eat(if open == b'[' { b']' } else { b'}' })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The quick reader agrees with serde wherever it answers.
    fn agrees(data: &str) -> Option<QuickDelta<'_>> {
        #[derive(serde::Deserialize)]
        struct Event {
            #[serde(default)]
            output_index: u64,
            #[serde(default)]
            content_index: u64,
            #[serde(default)]
            summary_index: u64,
            delta: String,
        }
        let quick = quick_delta(data.as_bytes());
        if let Some(q) = quick {
            let slow: Event = serde_json::from_str(data).unwrap();
            assert_eq!(
                (q.output_index, q.content_index, q.summary_index, q.delta),
                (
                    slow.output_index,
                    slow.content_index,
                    slow.summary_index,
                    slow.delta.as_str()
                ),
                "{data}"
            );
        }
        quick
    }

    /// The eight-at-a-time search finds what a byte-by-byte one finds, at every position and
    /// with every kind of byte before and after it.
    #[test]
    fn the_end_of_a_string_is_found_where_a_plain_loop_finds_it() {
        let plain = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let fillers = [
            b'a', b'~', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b'[', b']', b' ',
        ];
        let stops = [b'"', b'\\', 0x00, 0x1f, b'\n'];
        for len in 0..40 {
            for &fill in &fillers {
                let mut bytes = vec![fill; len];
                assert_eq!(string_end(&bytes), plain(&bytes), "{bytes:?}");
                for at in 0..len {
                    for &stop in &stops {
                        bytes[at] = stop;
                        // A second match later must not hide the first.
                        if at + 3 < len {
                            bytes[at + 3] = b'"';
                        }
                        assert_eq!(string_end(&bytes), plain(&bytes), "{bytes:?}");
                        bytes.fill(fill);
                    }
                }
            }
        }
    }

    #[test]
    fn the_common_delta_event_is_read_without_serde() {
        let data = r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":2,"content_index":1,"delta":"Hel lo","logprobs":[],"obfuscation":"aZ09"}"#;
        let q = agrees(data).unwrap();
        assert_eq!((q.output_index, q.content_index, q.delta), (2, 1, "Hel lo"));
        let spaced = "{ \"delta\" : \"x\" ,\n \"summary_index\": 3, \"a\": null, \"b\": true, \"c\": false, \"d\": {} }";
        let q = agrees(spaced).unwrap();
        assert_eq!((q.summary_index, q.delta), (3, "x"));
        assert_eq!(agrees(r#"{"delta":"é ✓"}"#).unwrap().delta, "é ✓");
    }

    #[test]
    fn anything_outside_the_common_shape_is_left_to_serde() {
        for data in [
            r#"{"delta":"a\"b"}"#,                                  // an escape
            r#"{"delta":"a\nb"}"#,                                  // an escaped newline
            "{\"delta\":\"a\u{1}b\"}",                              // a raw control character
            r#"{"delta":"a","logprobs":[{"p":1}]}"#,                // a nested value
            r#"{"delta":"a","output_index":1.0}"#,                  // a float
            r#"{"delta":"a","output_index":-1}"#,                   // a sign
            r#"{"delta":"a","output_index":01}"#,                   // a leading zero
            r#"{"delta":"a","output_index":99999999999999999999}"#, // past u64
            r#"{"delta":"a","delta":"b"}"#,                         // a repeated key
            r#"{"delta":"a"} x"#,                                   // trailing bytes
            r#"{"delta":"a""#,                                      // cut short
            r#"{"output_index":1}"#,                                // no delta
            r#"{"delta":1}"#,                                       // a delta that is not a string
            r#"{"k\"ey":1,"delta":"a"}"#,                           // an escaped key
            r#"{}"#,
            r#"[]"#,
            "",
        ] {
            assert_eq!(agrees(data), None, "{data}");
        }
        assert_eq!(quick_delta(b"{\"delta\":\"\xff\"}"), None, "not UTF-8");
        assert_eq!(
            quick_delta(b"{\"k\xff\":1,\"delta\":\"a\"}"),
            None,
            "a key not UTF-8"
        );
    }
}
