//! What every answer is made of, whatever API it imitates: a status, a content type and a body
//! whose bytes are already serialized, plus the output text shared by all APIs.
//!
//! Nothing here does I/O; timing (pauses, cuts, hangs) is carried out later by the body.

use std::borrow::Cow;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;
use serde::Serialize;

use crate::behavior::{Behavior, DEFAULT_TEXT};
use crate::body::{Ending, MockBody};

/// Filler repeated to reach a requested text size.
const FILLER: &str = "The quick brown fox jumps over the lazy dog. ";

/// Body of the last-resort answer when an answer cannot be serialized.
const UNWRITABLE: &str = r#"{"error":{"message":"subrelay-mock could not write its answer","type":"server_error","code":"server_error","param":null}}"#;

/// A status, a content type and a prepared body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: MockBody,
}

impl Reply {
    /// The answer used when serialization fails (it cannot, for these types, but the error path
    /// must still give the client something well-formed).
    pub(crate) fn unwritable() -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            content_type: "application/json",
            body: MockBody::full(Bytes::from_static(UNWRITABLE.as_bytes())),
        }
    }

    /// A complete JSON answer with this status.
    pub(crate) fn json(status: StatusCode, bytes: Bytes) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: MockBody::full(bytes),
        }
    }
}

/// A 200 JSON reply; `cut_after`/`hang_after` send half of it, then cut or hang.
pub(crate) fn json_reply(bytes: Bytes, behavior: &Behavior) -> Reply {
    let stop = match (behavior.cut_after, behavior.hang_after) {
        (Some(_), _) => Some(Ending::Cut),
        (None, Some(_)) => Some(Ending::Hang),
        (None, None) => None,
    };
    match stop {
        Some(ending) => {
            let half = bytes.slice(..bytes.len() / 2);
            Reply {
                status: StatusCode::OK,
                content_type: "application/json",
                body: MockBody::chunks(vec![half], Duration::ZERO, ending),
            }
        }
        None => Reply::json(StatusCode::OK, bytes),
    }
}

/// Serializes `value` into a buffer of roughly `capacity` bytes.
pub(crate) fn to_json(value: &impl Serialize, capacity: usize) -> Result<Bytes, serde_json::Error> {
    let mut buf = BytesMut::with_capacity(capacity);
    serde_json::to_writer((&mut buf).writer(), value)?;
    Ok(buf.freeze())
}

/// The output text: empty with zero events, else `text_bytes` of filler or the default sentence.
pub(crate) fn output_text(behavior: &Behavior) -> Cow<'static, str> {
    if behavior.delta_events() == 0 {
        return Cow::Borrowed("");
    }
    let Some(size) = behavior.text_bytes else {
        return Cow::Borrowed(DEFAULT_TEXT);
    };
    let mut text = String::with_capacity(size);
    while text.len() < size {
        let take = (size - text.len()).min(FILLER.len());
        text.push_str(&FILLER[..take]);
    }
    Cow::Owned(text)
}

/// Splits `text` into `parts` pieces of nearly equal size (some empty when the text is short).
pub(crate) fn split_even(text: &str, parts: usize) -> impl Iterator<Item = &str> {
    let boundary = move |i: usize| {
        let mut at = if parts == 0 {
            0
        } else {
            (text.len() as u128 * i as u128 / parts as u128) as usize
        };
        while !text.is_char_boundary(at) {
            at += 1;
        }
        at
    };
    (0..parts).map(move |i| &text[boundary(i)..boundary(i + 1)])
}

/// The body chunks of a reply, as written (unit tests of the answer builders).
#[cfg(test)]
pub(crate) async fn frames(reply: Reply) -> Vec<Bytes> {
    use http_body_util::BodyExt;
    let mut body = reply.body;
    let mut chunks = Vec::new();
    while let Some(frame) = body.frame().await {
        chunks.push(frame.unwrap().into_data().unwrap());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_the_text() {
        let pieces: Vec<_> = split_even("abcdefghij", 3).collect();
        assert_eq!(pieces.len(), 3);
        assert_eq!(pieces.concat(), "abcdefghij");
        let pieces: Vec<_> = split_even("ab", 5).collect();
        assert_eq!(pieces.len(), 5);
        assert_eq!(pieces.concat(), "ab");
        let pieces: Vec<_> = split_even("héllo wörld", 4).collect();
        assert_eq!(pieces.concat(), "héllo wörld");
    }

    #[test]
    fn text_size_is_exact() {
        let behavior = Behavior {
            text_bytes: Some(1000),
            ..Behavior::default()
        };
        assert_eq!(output_text(&behavior).len(), 1000);
        assert_eq!(output_text(&Behavior::default()), DEFAULT_TEXT);
    }
}
