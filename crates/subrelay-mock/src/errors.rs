//! Error answers, spelled the way each imitated API spells them.
//!
//! A refusal is described once as a [`Rejection`] (status, error type, message) and rendered in
//! the shape of the API the request was sent to, so gateway tests see the same error bodies the
//! real upstreams write:
//! - OpenAI (Responses, Chat Completions, unknown paths): `{"error":{"message","type","code","param"}}`;
//! - Anthropic (Messages): `{"type":"error","error":{"type","message"}}`.

use http::StatusCode;
use serde::Serialize;

use crate::reply::{to_json, Reply};

/// Which API's error shape an answer uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
}

/// A request the imitated upstream refuses, before any behaviour is chosen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: StatusCode,
    /// The error `type` (`invalid_request_error`, `authentication_error`, ...).
    pub kind: &'static str,
    pub message: String,
    /// OpenAI's `error.code`; Anthropic has none.
    pub code: Option<&'static str>,
    /// OpenAI's `error.param`; Anthropic names the field in the message instead.
    pub param: Option<&'static str>,
}

impl Rejection {
    /// A 400 `invalid_request_error`.
    pub(crate) fn invalid(
        message: String,
        code: Option<&'static str>,
        param: Option<&'static str>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message,
            code,
            param,
        }
    }

    /// A 500 for a script the mock cannot carry out (bad status, bad header).
    pub(crate) fn unscriptable(message: String) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message,
            code: Some("server_error"),
            param: None,
        }
    }
}

impl Dialect {
    /// The answer to a refused request.
    pub(crate) fn reject(self, rejection: &Rejection) -> Result<Reply, serde_json::Error> {
        let bytes = match self {
            Self::OpenAi => to_json(
                &OpenAiError {
                    error: OpenAiDetail {
                        message: &rejection.message,
                        kind: rejection.kind,
                        code: rejection.code,
                        param: rejection.param,
                    },
                },
                192 + rejection.message.len(),
            )?,
            Self::Anthropic => to_json(
                &AnthropicError::new(anthropic_kind(rejection.kind), &rejection.message),
                96 + rejection.message.len(),
            )?,
        };
        Ok(Reply::json(rejection.status, bytes))
    }

    /// The error answer for a scripted status, typed the way the real API types it.
    /// `code_override` replaces OpenAI's `error.code` (Anthropic has none); `echo` is appended to
    /// the message (a hostile upstream quoting the request's credential).
    pub(crate) fn scripted(
        self,
        status: StatusCode,
        code_override: Option<&str>,
        echo: Option<&str>,
    ) -> Result<Reply, serde_json::Error> {
        let code = status.as_u16();
        let (kind, error_code, text) = match self {
            Self::OpenAi => openai_status(code),
            Self::Anthropic => {
                let (kind, text) = anthropic_status(code);
                (kind, None, text)
            }
        };
        let message = match echo {
            None => format!("{text} (subrelay-mock: scripted status {code})"),
            Some(echo) => {
                format!("{text} You sent: {echo} (subrelay-mock: scripted status {code})")
            }
        };
        if let (Self::OpenAi, Some(error_code)) = (self, code_override) {
            let bytes = to_json(
                &OpenAiError {
                    error: OpenAiDetail {
                        message: &message,
                        kind,
                        code: Some(error_code),
                        param: None,
                    },
                },
                192 + message.len(),
            )?;
            return Ok(Reply::json(status, bytes));
        }
        self.reject(&Rejection {
            status,
            kind,
            message,
            code: error_code,
            param: None,
        })
    }

    /// The non-stream counterpart of `fail_before_output`: a 500 before any output.
    pub(crate) fn failure(self) -> Result<Reply, serde_json::Error> {
        self.reject(&Rejection {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: match self {
                Self::OpenAi => "server_error",
                Self::Anthropic => "api_error",
            },
            message: "subrelay-mock: scripted failure before any output".to_owned(),
            code: Some("server_error"),
            param: None,
        })
    }
}

/// OpenAI's error type, code and message for a status.
fn openai_status(code: u16) -> (&'static str, Option<&'static str>, &'static str) {
    match code {
        401 => (
            "invalid_request_error",
            Some("invalid_api_key"),
            "Incorrect API key provided.",
        ),
        403 => (
            "permission_error",
            None,
            "You are not allowed to sample from this model.",
        ),
        404 => (
            "invalid_request_error",
            Some("model_not_found"),
            "The model does not exist.",
        ),
        429 => (
            "requests",
            Some("rate_limit_exceeded"),
            "Rate limit reached for requests.",
        ),
        500..=599 => (
            "server_error",
            Some("server_error"),
            "The server had an error while processing your request.",
        ),
        _ => ("invalid_request_error", None, "The request was rejected."),
    }
}

/// Anthropic's error type and message for a status.
fn anthropic_status(code: u16) -> (&'static str, &'static str) {
    match code {
        400 => ("invalid_request_error", "Invalid request."),
        401 => ("authentication_error", "invalid x-api-key"),
        403 => (
            "permission_error",
            "Your API key does not have permission to use the specified resource.",
        ),
        404 => ("not_found_error", "Not found"),
        413 => ("request_too_large", "Request exceeds the maximum size."),
        429 => (
            "rate_limit_error",
            "Number of requests has exceeded your rate limit.",
        ),
        529 => ("overloaded_error", "Overloaded"),
        500..=599 => ("api_error", "Internal server error"),
        _ => ("invalid_request_error", "The request was rejected."),
    }
}

/// Anthropic has no `server_error` type: its 5xx answers say `api_error`.
fn anthropic_kind(kind: &'static str) -> &'static str {
    match kind {
        "server_error" => "api_error",
        other => other,
    }
}

/// `{"error":{"message","type","code","param"}}`.
#[derive(Serialize)]
struct OpenAiError<'a> {
    error: OpenAiDetail<'a>,
}

#[derive(Serialize)]
struct OpenAiDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: Option<&'a str>,
    param: Option<&'a str>,
}

/// `{"type":"error","error":{"type","message"}}`: Anthropic's error body, also the data of an
/// `event: error` in its streams.
#[derive(Serialize)]
pub(crate) struct AnthropicError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: AnthropicDetail<'a>,
}

#[derive(Serialize)]
struct AnthropicDetail<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    message: &'a str,
}

impl<'a> AnthropicError<'a> {
    pub(crate) fn new(kind: &'a str, message: &'a str) -> Self {
        Self {
            kind: "error",
            error: AnthropicDetail { kind, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_types_follow_the_status() {
        assert_eq!(anthropic_status(529).0, "overloaded_error");
        assert_eq!(anthropic_status(503).0, "api_error");
        assert_eq!(anthropic_status(429).0, "rate_limit_error");
        assert_eq!(anthropic_kind("server_error"), "api_error");
    }
}
