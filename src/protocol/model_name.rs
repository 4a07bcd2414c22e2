//! The model name an answer reports, replaced by the one the client asked for: a group's
//! `model_map` sent the request upstream under another name, and the answer says the client's
//! (issue 16). Only the events that carry a model are touched, and in them only the name: the
//! JSON is walked up to the field (other values skipped by their brackets and quotes, nothing
//! built) and the rest is copied as it came.
//!
//! | API | JSON answer | stream events that carry the model |
//! |---|---|---|
//! | Responses | `model` | `response.model` of `response.created`, `.queued`, `.in_progress`, `.completed`, `.incomplete`, `.failed` |
//! | Messages | `model` | `message.model` of `message_start` |
//! | Chat Completions | `model` | `model` of every chunk |
//!
//! An event whose data is not what its protocol promises (no such field, not a string, data
//! over several `data:` lines, which no provider writes) goes out as it came.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::responses;
use super::sse::SseEvent;
use super::Protocol;

/// Replaces the model name in one protocol's answers.
#[derive(Debug, Clone)]
pub struct ModelRewrite {
    protocol: Protocol,
    /// The client's model name as a JSON string, quotes included.
    quoted: Bytes,
}

const RESPONSE_MODEL: &[&[u8]] = &[b"response", b"model"];
const MESSAGE_MODEL: &[&[u8]] = &[b"message", b"model"];
const MODEL: &[&[u8]] = &[b"model"];

impl ModelRewrite {
    pub fn new(protocol: Protocol, client_model: &str) -> Self {
        let quoted = serde_json::Value::from(client_model).to_string();
        Self {
            protocol,
            quoted: Bytes::from(quoted),
        }
    }

    /// Where the model sits in the data of event `name`; `None`: the event carries none.
    fn path(&self, name: &[u8]) -> Option<&'static [&'static [u8]]> {
        match self.protocol {
            Protocol::Responses => matches!(
                responses::Event::of(name),
                responses::Event::Preamble
                    | responses::Event::Completed
                    | responses::Event::Incomplete
                    | responses::Event::Failed
            )
            .then_some(RESPONSE_MODEL),
            Protocol::Messages => (name == b"message_start").then_some(MESSAGE_MODEL),
            Protocol::Chat => Some(MODEL),
        }
    }

    /// Whether a chunk of a stream may hold an event that carries the model (every Chat chunk
    /// does; other chunks only if they mention a `"model"` key): a chunk that cannot passes
    /// through untouched.
    pub fn may_carry(&self, chunk: &[u8]) -> bool {
        self.protocol == Protocol::Chat || memchr::memmem::find(chunk, b"\"model\"").is_some()
    }

    /// Appends `event` to `out`, its model name replaced when it carries one, and the blank
    /// line that ends it.
    pub fn write_event(&self, event: &SseEvent<'_>, out: &mut BytesMut) {
        let raw = event.raw();
        let name = self.path(event.name()).and_then(|path| {
            let (at, data) = event.single_data()?;
            let range = string_at(data, path)?;
            Some(at + range.start..at + range.end)
        });
        match name {
            Some(range) => {
                out.reserve(raw.len() + self.quoted.len() + 2);
                out.put_slice(&raw[..range.start]);
                out.put_slice(&self.quoted);
                out.put_slice(&raw[range.end..]);
            }
            None => out.put_slice(raw),
        }
        out.put_slice(b"\n\n");
    }

    /// A JSON answer with its top-level `model` replaced (as it came when it has none).
    pub fn json(&self, body: Bytes) -> Bytes {
        let Some(range) = string_at(&body, MODEL) else {
            return body;
        };
        let mut out = BytesMut::with_capacity(body.len() + self.quoted.len());
        out.put_slice(&body[..range.start]);
        out.put_slice(&self.quoted);
        out.put_slice(&body[range.end..]);
        out.freeze()
    }
}

/// The byte range (quotes included) of the string at `path`, keys of nested objects from the
/// top, in the JSON object `json`. Walks the text only up to the field, skipping the values
/// before it by their brackets and quotes without building anything. `None` when the path is
/// absent, its value is not a string, or the text is not well-formed up to it.
pub fn string_at(json: &[u8], path: &[&[u8]]) -> Option<Range<usize>> {
    let mut at = skip_space(json, 0);
    for (depth, wanted) in path.iter().enumerate() {
        if json.get(at) != Some(&b'{') {
            return None;
        }
        at += 1;
        loop {
            at = skip_space(json, at);
            if json.get(at) != Some(&b'"') {
                // `}`: the object ends without the key (or the text is broken).
                return None;
            }
            let key_end = string_end(json, at)?;
            let key = &json[at + 1..key_end - 1];
            at = skip_space(json, key_end);
            if json.get(at) != Some(&b':') {
                return None;
            }
            at = skip_space(json, at + 1);
            if key == *wanted {
                if depth + 1 == path.len() {
                    if json.get(at) != Some(&b'"') {
                        return None;
                    }
                    return Some(at..string_end(json, at)?);
                }
                // The value is the object the next key is looked for in.
                break;
            }
            at = skip_space(json, skip_value(json, at)?);
            if json.get(at) != Some(&b',') {
                return None;
            }
            at += 1;
        }
    }
    None
}

fn skip_space(json: &[u8], mut at: usize) -> usize {
    while matches!(json.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Just past the closing quote of the string that opens at `at`.
fn string_end(json: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[i] == b'\\' {
            i += 2;
        } else {
            return Some(i + 1);
        }
    }
}

/// Just past the value that starts at `at`.
fn skip_value(json: &[u8], at: usize) -> Option<usize> {
    match *json.get(at)? {
        b'"' => string_end(json, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match *json.get(i)? {
                    b'"' => {
                        i = string_end(json, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let end = json[at..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(json.len(), |n| at + n);
            (end > at).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::protocol::sse::SseScanner;

    fn at<'a>(json: &'a str, path: &[&[u8]]) -> Option<&'a str> {
        string_at(json.as_bytes(), path).map(|r| &json[r])
    }

    #[test]
    fn finds_the_field_at_its_depth_only() {
        assert_eq!(
            at(r#"{"id":"c","created":1,"model":"up","choices":[]}"#, MODEL),
            Some(r#""up""#)
        );
        // A `model` key nested before the top-level one, or inside a string, is not it.
        let nested = r#"{ "meta" : {"model":"no"}, "text":"\"model\":\"no\"", "list":[{"model":"no"}], "n": -1.5e3, "ok": true, "model" : "up\"x" }"#;
        assert_eq!(at(nested, MODEL), Some(r#""up\"x""#));
        let response = r#"{"type":"response.created","response":{"instructions":"{\"model\":\"no\"}","tools":[{"parameters":{"properties":{"model":{"type":"string"}}}}],"model":"up","output":[]}}"#;
        assert_eq!(at(response, RESPONSE_MODEL), Some(r#""up""#));
        // Absent, not a string, or broken: nothing.
        assert_eq!(at(r#"{"choices":[],"usage":{}}"#, MODEL), None);
        assert_eq!(at(r#"{"model":null}"#, MODEL), None);
        assert_eq!(at(r#"{"response":{"model":"#, RESPONSE_MODEL), None);
        assert_eq!(at(r#"{"a":"unterminated"#, MODEL), None);
        assert_eq!(at("[1]", MODEL), None);
    }

    fn rewritten(protocol: Protocol, stream: &[u8]) -> String {
        let rewrite = ModelRewrite::new(protocol, "claude-sonnet-4-5");
        let mut out = BytesMut::new();
        SseScanner::new().feed(stream, |e| rewrite.write_event(&e, &mut out));
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn rewrites_only_the_events_that_carry_the_model() {
        let responses = b"event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"model\":\"gpt-5\"}}\n\nevent: response.output_text.delta\ndata: {\"delta\":\"model gpt-5\",\"model\":\"gpt-5\"}\n\nevent: response.completed\r\ndata: {\"response\":{\"model\":\"gpt-5\",\"usage\":{}}}\r\n\r\n";
        assert_eq!(
            rewritten(Protocol::Responses, responses),
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"model\":\"claude-sonnet-4-5\"}}\n\n\
             event: response.output_text.delta\ndata: {\"delta\":\"model gpt-5\",\"model\":\"gpt-5\"}\n\n\
             event: response.completed\r\ndata: {\"response\":{\"model\":\"claude-sonnet-4-5\",\"usage\":{}}}\r\n\n"
        );
        let messages = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-1\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n";
        assert_eq!(
            rewritten(Protocol::Messages, messages),
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\"}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        let chat = b"data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[]}\n\ndata: [DONE]\n\n";
        assert_eq!(
            rewritten(Protocol::Chat, chat),
            "data: {\"id\":\"c\",\"model\":\"claude-sonnet-4-5\",\"choices\":[]}\n\ndata: [DONE]\n\n"
        );
    }

    #[test]
    fn a_json_answer_gets_the_clients_name_escaped() {
        let rewrite = ModelRewrite::new(Protocol::Chat, "a\"b");
        let body = Bytes::from_static(b"\n{\"object\":\"chat.completion\",\"model\":\"up\"}");
        let out = rewrite.json(body);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["model"], "a\"b");
        let none = Bytes::from_static(b"{\"id\":1}");
        assert_eq!(rewrite.json(none.clone()), none);
    }
}
