//! What one Responses WebSocket remembers of its conversation, so a turn that sends only its new
//! input items with `previous_response_id` can be rebuilt into the full request an upstream
//! reached over HTTP needs (PROTOCOLS.md, "Responses over WebSocket").
//!
//! The conversation is one list of items (inputs and outputs, in order) and, per response this
//! socket answered, how long the list was when that response ended. A turn names a response:
//! its request is the list up to that point plus the new items; once it completes, the list is
//! cut back there and grows by the new items and the turn's output. Codex only ever continues the
//! latest response, so nothing is copied; continuing an earlier one forgets the later ones.

use serde_json::value::RawValue;

/// One conversation item (a message, a function call, its output, a reasoning item), as JSON.
pub type Item = Box<RawValue>;

/// The earlier turns of one socket.
#[derive(Default)]
pub struct History {
    items: Vec<Item>,
    /// Bytes of JSON in `items`.
    bytes: usize,
    /// Each response this socket answered, with the length of `items` after its output.
    responses: Vec<(String, usize)>,
}

/// A turn named a `previous_response_id` this socket does not know.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownResponse;

/// Where a turn continues from: how many remembered items precede its new ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Continues(usize);

impl History {
    /// The point a turn continues from: none (a new conversation) or a response of this socket.
    pub fn continues(&self, previous: Option<&str>) -> Result<Continues, UnknownResponse> {
        let Some(previous) = previous else {
            return Ok(Continues(0));
        };
        self.responses
            .iter()
            .rev()
            .find(|(id, _)| id == previous)
            .map(|(_, len)| Continues(*len))
            .ok_or(UnknownResponse)
    }

    /// The items that come before the new ones of a turn continuing at `at`.
    pub fn before(&self, at: Continues) -> &[Item] {
        &self.items[..at.0.min(self.items.len())]
    }

    /// A turn continuing at `at` completed as `response_id`: its new input and its output
    /// become the conversation. Answers the history's size in bytes.
    pub fn completed(
        &mut self,
        at: Continues,
        response_id: String,
        input: Vec<Item>,
        output: Vec<Item>,
    ) -> usize {
        let keep = at.0.min(self.items.len());
        for dropped in self.items.drain(keep..) {
            self.bytes -= dropped.get().len();
        }
        self.responses.retain(|(_, len)| *len <= keep);
        for item in input.into_iter().chain(output) {
            self.bytes += item.get().len();
            self.items.push(item);
        }
        self.responses.push((response_id, self.items.len()));
        self.bytes
    }

    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn item(text: &str) -> Item {
        RawValue::from_string(format!("{{\"t\":\"{text}\"}}")).unwrap()
    }

    fn texts(items: &[Item]) -> Vec<String> {
        items.iter().map(|i| i.get().to_owned()).collect()
    }

    #[test]
    fn a_turn_continuing_the_latest_response_gets_every_earlier_input_and_output() {
        let mut h = History::default();
        let start = h.continues(None).unwrap();
        h.completed(start, "r1".into(), vec![item("dev")], vec![]);
        let at = h.continues(Some("r1")).unwrap();
        h.completed(at, "r2".into(), vec![item("user")], vec![item("call")]);
        let at = h.continues(Some("r2")).unwrap();
        assert_eq!(
            texts(h.before(at)),
            texts(&[item("dev"), item("user"), item("call")]),
            "the function call the tool result answers is there"
        );
    }

    #[test]
    fn an_unknown_previous_response_is_refused() {
        let mut h = History::default();
        h.completed(Continues(0), "r1".into(), vec![item("a")], vec![]);
        assert_eq!(h.continues(Some("r9")), Err(UnknownResponse));
        assert!(h.continues(Some("r1")).is_ok(), "positive control");
    }

    #[test]
    fn continuing_an_earlier_response_forgets_the_later_ones() {
        let mut h = History::default();
        h.completed(Continues(0), "r1".into(), vec![item("a")], vec![item("b")]);
        let at = h.continues(Some("r1")).unwrap();
        h.completed(at, "r2".into(), vec![item("c")], vec![item("d")]);
        let at = h.continues(Some("r1")).unwrap();
        h.completed(at, "r3".into(), vec![item("e")], vec![]);
        assert_eq!(h.continues(Some("r2")), Err(UnknownResponse));
        let at = h.continues(Some("r3")).unwrap();
        assert_eq!(
            texts(h.before(at)),
            texts(&[item("a"), item("b"), item("e")])
        );
        let expected: usize = ["a", "b", "e"].iter().map(|t| item(t).get().len()).sum();
        assert_eq!(h.bytes(), expected, "bytes follow what is kept");
    }

    #[test]
    fn a_turn_without_previous_response_starts_over() {
        let mut h = History::default();
        h.completed(Continues(0), "r1".into(), vec![item("a")], vec![item("b")]);
        let at = h.continues(None).unwrap();
        assert!(h.before(at).is_empty());
        h.completed(at, "r2".into(), vec![item("x")], vec![]);
        assert_eq!(h.continues(Some("r1")), Err(UnknownResponse));
        assert_eq!(h.bytes(), item("x").get().len());
    }
}
