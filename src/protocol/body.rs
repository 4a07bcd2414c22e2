//! Reading and editing request bodies without rebuilding them.
//!
//! [`probe`] reads only the fields a protocol routes on (serde skips the rest unbuilt).
//! [`TopLevel`] parses a body one level deep: each top-level value stays the exact bytes the
//! client sent, so editing `model` or `store` re-emits everything else byte for byte.

use std::borrow::Cow;

use bytes::Bytes;
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::value::RawValue;

/// Deserialises a routing probe from a body that must be a JSON object.
pub fn probe<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return Err("the request body must be a JSON object".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| format!("the request body is not valid JSON: {e}"))
}

/// The request's model, which every protocol requires; `missing` is the protocol's wording.
pub fn required_model(model: Option<Cow<'_, str>>, missing: &str) -> Result<String, String> {
    match model {
        Some(m) if !m.trim().is_empty() => Ok(m.into_owned()),
        _ => Err(missing.to_owned()),
    }
}

/// A JSON object whose top-level values are kept as the raw bytes they were.
pub struct TopLevel<'a> {
    fields: IndexMap<Cow<'a, str>, Cow<'a, RawValue>>,
}

impl<'a> TopLevel<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, String> {
        let fields = serde_json::from_slice::<IndexMap<Cow<'a, str>, &'a RawValue>>(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?
            .into_iter()
            .map(|(k, v)| (k, Cow::Borrowed(v)))
            .collect();
        Ok(Self { fields })
    }

    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.fields.get(key).map(|v| v.as_ref())
    }

    /// Sets `key` to a JSON text (which must be valid JSON).
    pub fn set_json(&mut self, key: &'static str, json: String) -> Result<(), String> {
        let value = RawValue::from_string(json).map_err(|e| e.to_string())?;
        self.fields.insert(Cow::Borrowed(key), Cow::Owned(value));
        Ok(())
    }

    /// Sets `key` to a JSON string.
    pub fn set_str(&mut self, key: &'static str, text: &str) -> Result<(), String> {
        self.set_json(key, serde_json::to_string(text).map_err(|e| e.to_string())?)
    }

    pub fn remove(&mut self, key: &str) {
        self.fields.shift_remove(key);
    }

    pub fn to_bytes(&self) -> Result<Bytes, String> {
        serde_json::to_vec(&self.fields)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }
}

/// The `usage` object of a JSON answer, found by scanning instead of parsing the whole answer
/// (which can be megabytes of output the relay only forwards).
///
/// The last `"usage"` key wins: providers put the top-level `usage` after `output`/`content`, and
/// inside JSON strings a quote is escaped, so `"usage":` cannot match text. An answer that is not
/// a JSON object is an error; one without usage is `Ok(None)`.
pub fn top_level_usage<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Option<T>, String> {
    let body = body.trim_ascii();
    if !(body.starts_with(b"{") && body.ends_with(b"}")) {
        return Err("expected a JSON object".to_owned());
    }
    let Some(start) = last_value_of(body, b"\"usage\"") else {
        return Ok(None);
    };
    let mut de = serde_json::Deserializer::from_slice(&body[start..]);
    Ok(Option::<T>::deserialize(&mut de).ok().flatten())
}

/// Where the value of the last `key` (a quoted JSON key) starts.
fn last_value_of(body: &[u8], key: &[u8]) -> Option<usize> {
    let mut end = body.len();
    while let Some(at) = memchr::memmem::rfind(&body[..end], key) {
        let rest = &body[at + key.len()..];
        let value = rest.trim_ascii_start();
        if let Some(value) = value.strip_prefix(b":") {
            return Some(body.len() - value.len());
        }
        end = at;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct U {
        n: u64,
    }

    #[test]
    fn usage_is_found_without_parsing_the_rest() {
        let body = br#"{"output":[{"text":"say \"usage\": {\"n\":9}","tools":{"usage":{"n":5}}}],"usage" : {"n":3},"user":null}"#;
        assert_eq!(top_level_usage::<U>(body).unwrap(), Some(U { n: 3 }));
        assert_eq!(top_level_usage::<U>(br#"{"id":"x"}"#).unwrap(), None);
        assert_eq!(top_level_usage::<U>(br#"{"usage":null}"#).unwrap(), None);
        assert!(top_level_usage::<U>(b"not json").is_err());
    }
}
