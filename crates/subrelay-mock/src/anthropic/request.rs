//! Reading an Anthropic Messages request: the header rules, the few body keys the answer needs,
//! and thinking signatures.
//!
//! Rules, in the order they are checked (each refusal in Anthropic's error shape):
//! 1. auth: `x-api-key`, or `Authorization: Bearer` with `oauth-2025-04-20` among the
//!    comma-separated `anthropic-beta` tokens (any number of `anthropic-beta` headers), else 401
//!    `authentication_error`;
//! 2. an `anthropic-version` header, else 400 `invalid_request_error` naming it;
//! 3. a JSON body with a non-empty string `model` and a `messages` array;
//! 4. every `thinking` block in `messages[].content[]` carries the signature this mock issues to
//!    the request's credential (`sig:<credential>`), else 400: a thinking block is tied to the
//!    account that produced it, as on the real API.

use std::borrow::Cow;

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::errors::Rejection;
use crate::request;

/// The `anthropic-beta` token that sign-in (Bearer) credentials need.
pub(crate) const OAUTH_BETA: &str = "oauth-2025-04-20";

/// What an accepted request asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    /// The `model` as sent, options included.
    pub model: String,
    /// Whether the answer is a stream (never for `count_tokens`).
    pub stream: bool,
    /// Whether `thinking.type` is `enabled`: the answer starts with a signed thinking block.
    pub thinking: bool,
    /// Whether this is `/v1/messages/count_tokens`.
    pub count_tokens: bool,
}

/// The signature this mock writes into thinking blocks answered to `credential`.
pub(crate) fn signature_for(credential: &str) -> String {
    format!("sig:{credential}")
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow)]
    thinking: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Block<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    signature: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Thinking<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Option<Cow<'a, str>>,
}

/// Checks a Messages (or `count_tokens`) request and extracts what the answer needs.
pub(crate) fn read(count_tokens: bool, headers: &HeaderMap, body: &[u8]) -> Result<Ask, Rejection> {
    authorize(headers)?;
    if headers
        .get("anthropic-version")
        .is_none_or(|value| value.is_empty())
    {
        return Err(invalid("anthropic-version: header is required".to_owned()));
    }
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|err| {
        invalid(format!(
            "There was an error parsing the body of your request: {err}"
        ))
    })?;
    let model = match fields
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(model)) if !model.is_empty() => model,
        _ => return Err(invalid("model: Field required".to_owned())),
    };
    let Some(messages) = fields.messages else {
        return Err(invalid("messages: Field required".to_owned()));
    };
    let expected = signature_for(request::credential(headers).unwrap_or_default());
    check_signatures(messages, &expected)?;
    let thinking = match fields.thinking {
        None => false,
        Some(raw) => serde_json::from_str::<Thinking<'_>>(raw.get())
            .map_err(|_| invalid("thinking: Input should be an object".to_owned()))?
            .kind
            .is_some_and(|kind| kind == "enabled"),
    };
    Ok(Ask {
        model,
        stream: !count_tokens && fields.stream.is_some_and(|raw| raw.get() == "true"),
        thinking,
        count_tokens,
    })
}

/// Rule 1: API key, or Bearer token with the OAuth beta.
fn authorize(headers: &HeaderMap) -> Result<(), Rejection> {
    let refused = |message: &str| Rejection {
        status: StatusCode::UNAUTHORIZED,
        kind: "authentication_error",
        message: message.to_owned(),
        code: None,
        param: None,
    };
    if request::bearer(headers).is_some() {
        let beta = headers
            .get_all("anthropic-beta")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim() == OAUTH_BETA);
        return if beta {
            Ok(())
        } else {
            Err(refused("OAuth authentication is currently not supported."))
        };
    }
    match request::api_key(headers) {
        Some(_) => Ok(()),
        None => Err(refused("x-api-key header is required")),
    }
}

/// Rule 4: every thinking block must carry `expected` as its signature.
fn check_signatures(messages: &RawValue, expected: &str) -> Result<(), Rejection> {
    let messages: Vec<Message<'_>> = serde_json::from_str(messages.get())
        .map_err(|_| invalid("messages: Input should be a valid list".to_owned()))?;
    for (i, message) in messages.iter().enumerate() {
        // A string content has no blocks, hence no thinking.
        let Some(content) = message.content.filter(|raw| raw.get().starts_with('[')) else {
            continue;
        };
        let blocks: Vec<Block<'_>> = serde_json::from_str(content.get()).map_err(|_| {
            invalid(format!(
                "messages.{i}.content: Input should be a valid list of content blocks"
            ))
        })?;
        for (j, block) in blocks.iter().enumerate() {
            if block.kind.as_deref() == Some("thinking")
                && block.signature.as_deref() != Some(expected)
            {
                return Err(invalid(format!(
                    "messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
                )));
            }
        }
    }
    Ok(())
}

fn invalid(message: String) -> Rejection {
    Rejection::invalid(message, None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    const BODY: &[u8] = br#"{"model":"claude","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn bearer_needs_the_oauth_beta_among_any_beta_header() {
        let plain = headers(&[("authorization", "Bearer t"), ("anthropic-version", "v")]);
        let err = read(false, &plain, BODY).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        let beta = headers(&[
            ("authorization", "Bearer t"),
            ("anthropic-version", "v"),
            ("anthropic-beta", "a-1"),
            ("anthropic-beta", "b-2 , oauth-2025-04-20"),
        ]);
        assert!(read(false, &beta, BODY).is_ok());
        let none = headers(&[("anthropic-version", "v")]);
        assert_eq!(
            read(false, &none, BODY).unwrap_err().message,
            "x-api-key header is required"
        );
    }

    #[test]
    fn signatures_are_checked_per_block() {
        let key = headers(&[("x-api-key", "k"), ("anthropic-version", "v")]);
        let good = br#"{"model":"m","messages":[{"role":"user","content":"q"},{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"sig:k"},{"type":"text","text":"a"}]}]}"#;
        assert!(read(false, &key, good).is_ok());
        let bad = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"q"}]},{"role":"assistant","content":[{"type":"text","text":"a"},{"type":"thinking","thinking":"t","signature":"sig:other"}]}]}"#;
        assert_eq!(
            read(false, &key, bad).unwrap_err().message,
            "messages.1.content.1: Invalid `signature` in `thinking` block"
        );
    }

    #[test]
    fn count_tokens_never_streams_and_thinking_is_read() {
        let key = headers(&[("x-api-key", "k"), ("anthropic-version", "v")]);
        let body = br#"{"model":"m","stream":true,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[]}"#;
        let ask = read(true, &key, body).unwrap();
        assert!(!ask.stream && ask.thinking && ask.count_tokens);
        assert!(read(false, &key, body).unwrap().stream);
    }
}
