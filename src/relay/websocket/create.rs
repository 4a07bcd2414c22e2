//! A `response.create` message taken apart, and the `POST` body of its turn put together.
//!
//! The message is read once, borrowing from its text: each top-level field is kept as the
//! span of JSON the client sent (nothing is parsed below the top level but `input`'s list),
//! and the turn's body is those spans written back with the whole conversation as `input`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::history::Item;
use crate::http::refusal::Refusal;

/// A `response.create` message, taken apart; borrows from the message's text.
pub struct Create<'a> {
    /// Every other top-level field, forwarded as sent (a name sent twice: the last one).
    pub fields: Vec<(Cow<'a, str>, &'a RawValue)>,
    /// The new input items of this turn.
    pub input: Vec<Cow<'a, RawValue>>,
    pub previous: Option<String>,
    /// `generate: false`: Codex's prewarm.
    pub prewarm: bool,
}

impl Create<'_> {
    /// A top-level field as sent.
    pub fn field(&self, name: &str) -> Option<&RawValue> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    /// The new input items, owned (for the socket's history).
    pub fn into_input(self) -> Vec<Item> {
        self.input.into_iter().map(Cow::into_owned).collect()
    }
}

pub fn parse(text: &str) -> Result<Create<'_>, Refusal> {
    let invalid = |message: String| Refusal::InvalidRequest(message);
    let Fields(mut fields) = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "a WebSocket message must be one JSON object (response.create): {e}"
        ))
    })?;
    let mut take = |name: &str| {
        let at = fields.iter().position(|(n, _)| n == name)?;
        Some(fields.remove(at).1)
    };
    let kind: Option<Cow<'_, str>> = take("type").and_then(|t| string(t).ok());
    if kind.as_deref() != Some("response.create") {
        return Err(invalid(format!(
            "unsupported WebSocket message type {}: send response.create",
            kind.map_or_else(|| "(none)".to_owned(), |k| format!("{k:?}"))
        )));
    }
    let previous = match take("previous_response_id") {
        None => None,
        Some(raw) if raw.get() == "null" => None,
        Some(raw) => Some(
            string(raw)
                .map_err(|_| invalid("previous_response_id must be a string".to_owned()))?
                .into_owned(),
        ),
    };
    let prewarm = take("generate").is_some_and(|g| g.get().trim() == "false");
    let input = match take("input") {
        None => Vec::new(),
        Some(raw) => input_items(raw)?,
    };
    // Every turn streams: its events are the socket's frames.
    take("stream");
    Ok(Create {
        fields,
        input,
        previous,
        prewarm,
    })
}

/// A JSON string, borrowed when it has no escapes.
fn string(raw: &RawValue) -> serde_json::Result<Cow<'_, str>> {
    let Key(s) = serde_json::from_str(raw.get())?;
    Ok(s)
}

/// `input` as items: a list as sent, a string as one user message.
fn input_items(raw: &RawValue) -> Result<Vec<Cow<'_, RawValue>>, Refusal> {
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        return Ok(items.into_iter().map(Cow::Borrowed).collect());
    }
    let text: String = serde_json::from_str(raw.get()).map_err(|_| {
        Refusal::InvalidRequest("input must be a list of items or a string".to_owned())
    })?;
    let message = serde_json::json!({
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text}],
    });
    Ok(vec![Cow::Owned(raw_json(&message.to_string()))])
}

pub fn raw_json(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_else(|_| Box::default())
}

/// The turn's request body: its fields as sent, `stream: true`, and the whole conversation
/// (`before`, then the new items) as `input`.
pub fn full_body(create: &Create<'_>, before: &[Item]) -> String {
    let items = || {
        before
            .iter()
            .map(|i| i.get())
            .chain(create.input.iter().map(|i| i.get()))
    };
    let fields: usize = create
        .fields
        .iter()
        .map(|(n, v)| n.len() + v.get().len() + 4)
        .sum();
    let mut body = String::with_capacity(fields + items().map(|i| i.len() + 1).sum::<usize>() + 32);
    body.push('{');
    for (name, value) in &create.fields {
        // Serialising a `&str` cannot fail.
        body.push_str(&serde_json::to_string(name).unwrap_or_default());
        body.push(':');
        body.push_str(value.get());
        body.push(',');
    }
    body.push_str("\"stream\":true,\"input\":[");
    for (i, item) in items().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(item);
    }
    body.push_str("]}");
    body
}

/// A message's top-level fields, in order, each the span of JSON sent.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
                while let Some((Key(name), value)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    match fields.iter_mut().find(|(n, _)| *n == name) {
                        Some(field) => field.1 = value,
                        None => fields.push((name, value)),
                    }
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A string borrowed from the input when it has no escapes, else unescaped into its own.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_continuation_becomes_one_body_with_the_whole_input_and_no_previous_response_id() {
        let create = parse(
            r#"{"type":"response.create","model":"gpt-5","previous_response_id":"resp_1","input":[{"type":"function_call_output","call_id":"c1","output":"ok"}],"store":false,"stream":false}"#,
        )
        .unwrap();
        assert_eq!(create.previous.as_deref(), Some("resp_1"));
        let before = vec![raw_json(r#"{"type":"function_call","call_id":"c1"}"#)];
        let body = full_body(&create, &before);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["stream"], true);
        assert_eq!(v["model"], "gpt-5");
        assert_eq!(v["store"], false);
        assert!(v.get("previous_response_id").is_none(), "{body}");
        assert!(v.get("type").is_none(), "{body}");
        assert_eq!(v["input"][0]["type"], "function_call");
        assert_eq!(v["input"][1]["type"], "function_call_output");
        assert_eq!(v.as_object().unwrap().len(), 4, "{body}");
    }

    #[test]
    fn escaped_and_repeated_field_names_come_out_as_one_valid_field_each() {
        let create = parse(
            r#"{"type":"response.create","mo\u0064el":"a","model":"b","x\"y":1,"input":"hi"}"#,
        )
        .unwrap();
        let body = full_body(&create, &[]);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["model"], "b", "{body}");
        assert_eq!(v["x\"y"], 1, "{body}");
        assert_eq!(v["input"][0]["content"][0]["text"], "hi", "{body}");
        assert_eq!(body.matches("\"model\"").count(), 1, "{body}");
    }

    #[test]
    fn other_messages_are_refused_in_protocol() {
        for text in [
            "[]",
            "nope",
            r#"{"type":"response.cancel"}"#,
            r#"{"type":"response.create","previous_response_id":5}"#,
            r#"{"type":"response.create","input":5}"#,
        ] {
            assert!(
                matches!(parse(text), Err(Refusal::InvalidRequest(_))),
                "{text}"
            );
        }
        assert!(parse(r#"{"type":"response.create","input":"hi"}"#).is_ok());
        let prewarm = parse(r#"{"type":"response.create","generate":false}"#).unwrap();
        assert!(prewarm.prewarm);
    }
}
