//! Messages' `stop_sequences`, applied by the translator: the Responses API has no stop
//! sequences, so the upstream generates past them and the client is shown the text up to the
//! first one (which, as on Anthropic's API, is not shown), with `stop_reason: "stop_sequence"`.
//!
//! In a stream, text that could be the start of a stop sequence is held back until the next
//! delta says whether it is; the upstream's later output is not shown. The upstream counts the
//! tokens it generated past the stop: usage reports those, as the relay records them.

use serde::Deserialize;

/// At most this many stop sequences, each at most [`MAX_LEN`] bytes: the held-back text and
/// the search per delta stay small whatever the request.
pub const MAX_COUNT: usize = 16;
pub const MAX_LEN: usize = 256;

#[derive(Default)]
pub struct StopSequences {
    sequences: Vec<String>,
    /// Text received and not yet shown: a tail that may begin a stop sequence.
    held: String,
}

impl StopSequences {
    /// The stop sequences of a client body [`super::request`] accepted (none when it has none
    /// or cannot be read).
    pub fn of_request(client_body: &[u8]) -> Self {
        // Nearly no request has stop sequences: a body whose text names no such key, and has
        // no `\u` escape that could spell one, is not read (a search, not a parse).
        let finder = |needle: &[u8]| memchr::memmem::find(client_body, needle).is_some();
        if !finder(b"stop_sequences") && !finder(b"\\u") {
            return Self::default();
        }
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            stop_sequences: Option<Vec<String>>,
        }
        let sequences = serde_json::from_slice::<Probe>(client_body)
            .ok()
            .and_then(|p| p.stop_sequences)
            .unwrap_or_default()
            .into_iter()
            .filter(|s| !s.is_empty())
            .take(MAX_COUNT)
            .collect();
        Self {
            sequences,
            held: String::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// The earliest stop sequence in `text`: where it starts, and which one.
    pub fn find(&self, text: &str) -> Option<(usize, String)> {
        self.sequences
            .iter()
            .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, s)| (*at, std::cmp::Reverse(s.len())))
            .map(|(at, s)| (at, s.clone()))
    }

    /// Takes a text delta: returns the text that can be shown now, and the stop sequence if
    /// one is complete (the text after it is discarded).
    pub fn feed(&mut self, delta: &str) -> (String, Option<String>) {
        self.held.push_str(delta);
        if let Some((at, sequence)) = self.find(&self.held) {
            let shown = self.held[..at].to_owned();
            self.held.clear();
            return (shown, Some(sequence));
        }
        let keep = self.open_prefix_len();
        let cut = self.held.len() - keep;
        let shown = self.held[..cut].to_owned();
        self.held.drain(..cut);
        (shown, None)
    }

    /// The held-back text, when its block ends without a stop sequence.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The longest tail of the held text that is the start of some stop sequence.
    fn open_prefix_len(&self) -> usize {
        let longest = self.sequences.iter().map(String::len).max().unwrap_or(0);
        let mut len = longest.saturating_sub(1).min(self.held.len());
        while len > 0 {
            let start = self.held.len() - len;
            if self.held.is_char_boundary(start) {
                let tail = &self.held[start..];
                if self.sequences.iter().any(|s| s.starts_with(tail)) {
                    return len;
                }
            }
            len -= 1;
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stops(list: &[&str]) -> StopSequences {
        StopSequences::of_request(
            serde_json::json!({ "stop_sequences": list })
                .to_string()
                .as_bytes(),
        )
    }

    #[test]
    fn a_stop_sequence_split_across_deltas_is_held_back_then_cut() {
        let mut s = stops(&["END"]);
        assert_eq!(s.feed("abc E"), ("abc ".to_owned(), None));
        assert_eq!(s.feed("N"), (String::new(), None));
        assert_eq!(s.feed("Dmore"), (String::new(), Some("END".to_owned())));
    }

    #[test]
    fn a_false_start_is_shown_once_it_cannot_be_a_stop() {
        let mut s = stops(&["END"]);
        assert_eq!(s.feed("xE"), ("x".to_owned(), None));
        assert_eq!(s.feed("Nx"), ("ENx".to_owned(), None));
        assert_eq!(s.feed("E"), (String::new(), None));
        assert_eq!(s.flush(), "E");
    }

    #[test]
    fn the_earliest_of_several_wins_and_multibyte_text_is_cut_on_char_boundaries() {
        let mut s = stops(&["ß!", "b"]);
        assert_eq!(s.feed("aßcab"), ("aßca".to_owned(), Some("b".to_owned())));
        let mut s = stops(&["éé"]);
        assert_eq!(s.feed("aé"), ("a".to_owned(), None));
        assert_eq!(s.feed("x"), ("éx".to_owned(), None));
    }

    #[test]
    fn none_and_empty_sequences_are_no_stops() {
        assert!(StopSequences::of_request(b"{}").is_empty());
        assert!(stops(&[""]).is_empty());
        let mut s = StopSequences::of_request(b"{}");
        assert_eq!(s.feed("anything"), ("anything".to_owned(), None));
    }

    /// The search that spares most requests a parse finds the key however it is written.
    #[test]
    fn stop_sequences_are_read_however_the_key_is_written() {
        let read = |body: &str| StopSequences::of_request(body.as_bytes()).sequences;
        assert_eq!(read(r#"{"stop_sequences":["X"]}"#), ["X"]);
        assert_eq!(read(r#"{"stop\u005fsequences":["Y"]}"#), ["Y"]);
        assert_eq!(read(r#"{"\u0073top_sequences":["Z"]}"#), ["Z"]);
        assert!(read(r#"{"messages":[{"role":"user","content":"stop"}]}"#).is_empty());
    }
}
