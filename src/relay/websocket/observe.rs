//! What a turn's events say about the conversation: the output items the next turn's input
//! repeats, and the id of the response that completed it. Most events are not read at all; the
//! two that are have their usual shape read without serde where it is plain (the completed
//! response's leading id, an output item's leading id), since both repeat the turn's text.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::history::Item;

/// What a turn's events said.
#[derive(Default)]
pub struct Observed {
    pub output: Vec<Item>,
    /// The response id, once the turn completed.
    pub completed: Option<String>,
}

/// The id of a `response.completed`/`incomplete` event's response when it is the response's
/// first field, as the Responses API writes it (`{"type":…,"sequence_number":…,"response":
/// {"id":"resp_…",…`): read there, without walking the whole response (its output repeats the
/// turn's text), which [`observe`] would otherwise do for one field. `None` for any other shape
/// (an event of another type, an escaped id), which `observe` reads with serde.
fn leading_response_id(data: &[u8]) -> Option<&str> {
    if json_type_is_end(data) != Some(true) {
        return None;
    }
    let at = memchr::memmem::find(data, b"\"response\"")? + b"\"response\"".len();
    let rest = data[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start()
        .strip_prefix(b"\"id\"")?
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start()
        .strip_prefix(b"\"")?;
    let end = rest
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
    if rest[end] != b'"' {
        return None;
    }
    std::str::from_utf8(&rest[..end]).ok()
}

/// Whether the event's leading `"type"` is `response.completed` or `response.incomplete`.
fn json_type_is_end(data: &[u8]) -> Option<bool> {
    let rest = data
        .trim_ascii_start()
        .strip_prefix(b"{")?
        .trim_ascii_start()
        .strip_prefix(b"\"type\"")?
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    Some(
        rest.starts_with(b"\"response.completed\"") || rest.starts_with(b"\"response.incomplete\""),
    )
}

/// Notes what a turn's event says about the conversation.
pub fn observe(data: &[u8], observed: &mut Observed) {
    if let Some(id) = leading_response_id(data) {
        observed.completed = Some(id.to_owned());
        return;
    }
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "type", borrow)]
        kind: &'a str,
        #[serde(borrow)]
        item: Option<&'a RawValue>,
        response: Option<ResponseId>,
    }
    #[derive(Deserialize)]
    struct ResponseId {
        id: String,
    }
    let Ok(event) = serde_json::from_slice::<Event<'_>>(data) else {
        return;
    };
    match event.kind {
        "response.output_item.done" => {
            if let Some(item) = event.item {
                observed.output.push(without_id(item));
            }
        }
        "response.completed" | "response.incomplete" => {
            observed.completed = event.response.map(|r| r.id);
        }
        _ => {}
    }
}

/// An output item as the next request's input: without its `id` (with `store: false` the
/// upstream kept no item to refer to, and Codex itself never sends them back).
fn without_id(item: &RawValue) -> Item {
    if let Some(rest) = after_leading_id(item.get()) {
        // `{"id":"…",` cut out: the rest is the same object, one field shorter.
        let mut json = String::with_capacity(rest.len() + 1);
        json.push('{');
        json.push_str(rest);
        if let Ok(item) = RawValue::from_string(json) {
            return item;
        }
    }
    let Ok(mut fields) = serde_json::from_str::<IndexMap<String, Box<RawValue>>>(item.get()) else {
        return item.to_owned();
    };
    if fields.shift_remove("id").is_none() {
        return item.to_owned();
    }
    serde_json::value::to_raw_value(&fields).unwrap_or_else(|_| item.to_owned())
}

/// What follows a leading `"id":"…",` in an item written as the Responses API writes them
/// (`{"id":"msg_…","type":…`): the item's other fields and its closing brace. `None` for any
/// other shape (the id elsewhere, escaped, or the only field), left to serde.
fn after_leading_id(item: &str) -> Option<&str> {
    let rest = item
        .trim_ascii_start()
        .strip_prefix('{')?
        .trim_ascii_start()
        .strip_prefix("\"id\"")?
        .trim_ascii_start()
        .strip_prefix(':')?
        .trim_ascii_start()
        .strip_prefix('"')?;
    let end = rest.find(|c: char| c == '"' || c == '\\' || c < ' ')?;
    if !rest[end..].starts_with('"') {
        return None;
    }
    rest[end + 1..].trim_ascii_start().strip_prefix(',')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    /// The completed turn's id, read from the head of the event or else by serde: the same id.
    #[test]
    fn a_completed_turns_id_is_read_from_the_head_of_the_event_or_by_serde() {
        let completed = |data: &str| {
            let mut observed = Observed::default();
            observe(data.as_bytes(), &mut observed);
            (
                leading_response_id(data.as_bytes()).map(str::to_owned),
                observed.completed,
            )
        };
        let usual = r#"{"type":"response.completed","sequence_number":9,"response":{"id":"resp_1","output":[{"type":"message","content":[{"text":"\"response\":{\"id\":\"x\""}]}]}}"#;
        assert_eq!(
            completed(usual),
            (Some("resp_1".into()), Some("resp_1".into()))
        );
        let incomplete = r#"{ "type" : "response.incomplete", "response" : { "id" : "resp_2" } }"#;
        assert_eq!(
            completed(incomplete),
            (Some("resp_2".into()), Some("resp_2".into()))
        );
        // Other shapes are left to serde, which finds the same id.
        let id_later =
            r#"{"type":"response.completed","response":{"object":"response","id":"resp_3"}}"#;
        assert_eq!(completed(id_later), (None, Some("resp_3".into())));
        let escaped = r#"{"type":"response.completed","response":{"id":"resp_\u0034"}}"#;
        assert_eq!(completed(escaped), (None, Some("resp_4".into())));
        let other = r#"{"type":"response.output_text.done","response":{"id":"resp_5"}}"#;
        assert_eq!(leading_response_id(other.as_bytes()), None);
    }

    #[test]
    fn output_items_lose_their_id_and_keep_the_rest() {
        let raw = |json: &str| RawValue::from_string(json.to_owned()).unwrap();
        let item = without_id(&raw(
            r#"{"id":"fc_1","type":"function_call","call_id":"c1"}"#,
        ));
        assert_eq!(item.get(), r#"{"type":"function_call","call_id":"c1"}"#);
        // Read by serde: the id later, escaped, or alone; the same item without it.
        for (json, expected) in [
            (
                r#"{"type":"message","id":"m_1","x":1}"#,
                r#"{"type":"message","x":1}"#,
            ),
            (r#"{ "id" : "m\u0031", "x" : 1 }"#, r#"{"x":1}"#),
            (r#"{"id":"m_1"}"#, r#"{}"#),
            (r#"{"type":"message"}"#, r#"{"type":"message"}"#),
        ] {
            assert_eq!(without_id(&raw(json)).get(), expected, "{json}");
        }
        let spaced = without_id(&raw(r#"{ "id" : "m_1" , "type" : "message" }"#));
        let v: serde_json::Value = serde_json::from_str(spaced.get()).unwrap();
        assert_eq!(v, serde_json::json!({"type": "message"}));
    }
}
