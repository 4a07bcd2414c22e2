//! Reading a request: which route it hits, whose credential it carries, and whether a Responses
//! body obeys the rules of the upstream it imitates (the other APIs check their own bodies in
//! `anthropic` and `chat`).
//!
//! The Codex backend is strict (it only streams, wants `store:false` and non-empty
//! `instructions`; compaction takes neither `stream` nor `store`), and the mock is just as strict
//! so that the gateway's tests prove the gateway normalises bodies. Only the few keys checked
//! here are read; the rest of the body (often large `input` arrays) is skipped without being
//! built into values, which keeps the per-request cost low for benchmarks.

use http::{HeaderMap, Method};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::errors::{Dialect, Rejection};

/// The API routes the mock imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The Responses API, Codex backend or OpenAI API.
    Responses(ResponsesRoute),
    /// `POST /v1/messages` (Anthropic): streams when asked, else JSON.
    Messages,
    /// `POST /v1/messages/count_tokens` (Anthropic): JSON.
    CountTokens,
    /// `POST /v1/chat/completions` (OpenAI): streams when asked, else JSON.
    ChatCompletions,
}

/// The Responses API routes, whose body rules this module checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ResponsesRoute {
    /// `POST /backend-api/codex/responses`: streams only.
    CodexResponses,
    /// `POST /backend-api/codex/responses/compact`: JSON, no `stream`/`store`.
    CodexCompact,
    /// `POST /v1/responses`: streams when asked, else JSON.
    ApiResponses,
    /// `POST /v1/responses/compact`: like the Codex compact route.
    ApiCompact,
}

impl Route {
    /// The error shape of this route's API.
    pub(crate) fn dialect(self) -> Dialect {
        match self {
            Self::Messages | Self::CountTokens => Dialect::Anthropic,
            Self::Responses(_) | Self::ChatCompletions => Dialect::OpenAi,
        }
    }
}

/// Whose token endpoint a refresh request imitates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Issuer {
    /// `POST /oauth/token` (`auth.openai.com`): JSON or form body.
    OpenAi,
    /// `POST /v1/oauth/token` (`console.anthropic.com`): JSON body.
    Anthropic,
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Api(Route),
    /// A token endpoint: recorded, counted apart from API calls.
    Token(Issuer),
    /// `GET /oauth/authorize`: the sign-in page, which redirects with a code at once.
    Authorize,
    /// `GET /v1/models`, `GET /backend-api/codex/models`: the model list, a free call (health
    /// probes use it). Counted; a scripted error status is answered as scripted.
    Models,
    /// `GET /__mock/calls`.
    Counts,
    /// `POST /__mock/reset`.
    Reset,
    /// Anything else: recorded, then answered 404.
    Unknown,
}

impl Target {
    pub(crate) fn of(method: &Method, path: &str) -> Self {
        match (method, path) {
            (&Method::POST, "/backend-api/codex/responses") => {
                Self::responses(ResponsesRoute::CodexResponses)
            }
            (&Method::POST, "/backend-api/codex/responses/compact") => {
                Self::responses(ResponsesRoute::CodexCompact)
            }
            (&Method::POST, "/v1/responses") => Self::responses(ResponsesRoute::ApiResponses),
            (&Method::POST, "/v1/responses/compact") => Self::responses(ResponsesRoute::ApiCompact),
            (&Method::POST, "/v1/messages") => Self::Api(Route::Messages),
            (&Method::POST, "/v1/messages/count_tokens") => Self::Api(Route::CountTokens),
            (&Method::POST, "/v1/chat/completions") => Self::Api(Route::ChatCompletions),
            (&Method::POST, "/oauth/token") => Self::Token(Issuer::OpenAi),
            (&Method::POST, "/v1/oauth/token") => Self::Token(Issuer::Anthropic),
            (&Method::GET, "/oauth/authorize") => Self::Authorize,
            (&Method::GET, "/v1/models" | "/backend-api/codex/models") => Self::Models,
            (&Method::GET, "/__mock/calls") => Self::Counts,
            (&Method::POST, "/__mock/reset") => Self::Reset,
            _ => Self::Unknown,
        }
    }

    fn responses(route: ResponsesRoute) -> Self {
        Self::Api(Route::Responses(route))
    }

    /// The error shape for answers on this target (OpenAI's outside the Anthropic routes).
    pub(crate) fn dialect(self) -> Dialect {
        match self {
            Self::Api(route) => route.dialect(),
            Self::Token(_)
            | Self::Authorize
            | Self::Models
            | Self::Counts
            | Self::Reset
            | Self::Unknown => Dialect::OpenAi,
        }
    }
}

/// The token of `Authorization: Bearer <token>`, else the `x-api-key` header.
pub(crate) fn credential(headers: &HeaderMap) -> Option<&str> {
    bearer(headers).or_else(|| api_key(headers))
}

/// The token of `Authorization: Bearer <token>`, when present and non-empty.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|token| !token.is_empty())
}

/// The `x-api-key` header, when present and non-empty.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
}

/// The body keys the mock looks at. Keys are `Some` when present, even when `null`.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    model: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    store: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    instructions: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(deserializer).map(Some)
}

/// What an accepted body asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    /// The `model` as sent, options included.
    pub model: String,
    /// Whether the answer is a stream.
    pub stream: bool,
    /// The `store` value to echo in response objects.
    pub store: bool,
}

/// Checks the body against the rules of `route` and extracts what the answer needs.
pub(crate) fn read_body(route: ResponsesRoute, body: &[u8]) -> Result<Ask, Rejection> {
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|err| {
        Rejection::invalid(
            format!("We could not parse the JSON body of your request: {err}"),
            Some("invalid_json"),
            None,
        )
    })?;
    let model = match fields
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(model)) if !model.is_empty() => model,
        _ => return Err(missing("model", "a non-empty string")),
    };
    let stream_true = fields.stream.is_some_and(|raw| raw.get() == "true");
    let store_false = fields.store.is_some_and(|raw| raw.get() == "false");
    match route {
        ResponsesRoute::CodexResponses => {
            if !stream_true {
                return Err(Rejection::invalid(
                    "Stream must be set to true".to_owned(),
                    Some("invalid_value"),
                    Some("stream"),
                ));
            }
            if !store_false {
                return Err(Rejection::invalid(
                    "Store must be set to false".to_owned(),
                    Some("invalid_value"),
                    Some("store"),
                ));
            }
            let instructions_ok = fields.instructions.is_some_and(|raw| {
                let text = raw.get();
                text.starts_with('"') && text != "\"\""
            });
            if !instructions_ok {
                return Err(missing("instructions", "a non-empty string"));
            }
            Ok(Ask {
                model,
                stream: true,
                store: false,
            })
        }
        ResponsesRoute::CodexCompact | ResponsesRoute::ApiCompact => {
            for (key, value) in [("stream", fields.stream), ("store", fields.store)] {
                if value.is_some() {
                    return Err(Rejection::invalid(
                        format!("Unsupported parameter: '{key}' is not supported with compaction."),
                        Some("unsupported_parameter"),
                        Some(key),
                    ));
                }
            }
            Ok(Ask {
                model,
                stream: false,
                store: false,
            })
        }
        ResponsesRoute::ApiResponses => Ok(Ask {
            model,
            stream: stream_true,
            store: !store_false,
        }),
    }
}

/// An OpenAI-style refusal of a missing or malformed required parameter.
pub(crate) fn missing(param: &'static str, what: &str) -> Rejection {
    Rejection::invalid(
        format!("Missing required parameter: '{param}' must be {what}."),
        Some("missing_required_parameter"),
        Some(param),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn credential_prefers_bearer_then_api_key() {
        assert_eq!(
            credential(&headers(&[
                ("authorization", "Bearer tok"),
                ("x-api-key", "k")
            ])),
            Some("tok")
        );
        assert_eq!(
            credential(&headers(&[
                ("authorization", "Basic abc"),
                ("x-api-key", "k")
            ])),
            Some("k")
        );
        assert_eq!(credential(&headers(&[])), None);
    }

    #[test]
    fn codex_responses_needs_stream_store_and_instructions() {
        let ok =
            br#"{"model":"m","stream":true,"store":false,"instructions":"be nice","input":[1,2]}"#;
        assert_eq!(
            read_body(ResponsesRoute::CodexResponses, ok),
            Ok(Ask {
                model: "m".to_owned(),
                stream: true,
                store: false
            })
        );
        let no_stream = br#"{"model":"m","store":false,"instructions":"x"}"#;
        let err = read_body(ResponsesRoute::CodexResponses, no_stream).unwrap_err();
        assert_eq!(err.param, Some("stream"));
        let store_null = br#"{"model":"m","stream":true,"store":null,"instructions":"x"}"#;
        let err = read_body(ResponsesRoute::CodexResponses, store_null).unwrap_err();
        assert_eq!(err.param, Some("store"));
        let empty = br#"{"model":"m","stream":true,"store":false,"instructions":""}"#;
        let err = read_body(ResponsesRoute::CodexResponses, empty).unwrap_err();
        assert_eq!(err.param, Some("instructions"));
    }

    #[test]
    fn compact_refuses_stream_and_store_keys_even_null() {
        let err = read_body(
            ResponsesRoute::CodexCompact,
            br#"{"model":"m","store":null}"#,
        )
        .unwrap_err();
        assert_eq!(err.param, Some("store"));
        let err = read_body(
            ResponsesRoute::ApiCompact,
            br#"{"model":"m","stream":false}"#,
        )
        .unwrap_err();
        assert_eq!(err.param, Some("stream"));
        assert!(read_body(ResponsesRoute::ApiCompact, br#"{"model":"m","input":[]}"#).is_ok());
    }

    #[test]
    fn api_responses_streams_only_when_asked() {
        let ask = read_body(ResponsesRoute::ApiResponses, br#"{"model":"m"}"#).unwrap();
        assert!(!ask.stream && ask.store);
        let ask = read_body(
            ResponsesRoute::ApiResponses,
            br#"{"model":"m","stream":true}"#,
        )
        .unwrap();
        assert!(ask.stream);
        let err = read_body(ResponsesRoute::ApiResponses, b"not json").unwrap_err();
        assert_eq!(err.code, Some("invalid_json"));
        let err = read_body(ResponsesRoute::ApiResponses, br#"{"input":"x"}"#).unwrap_err();
        assert_eq!(err.param, Some("model"));
    }
}
