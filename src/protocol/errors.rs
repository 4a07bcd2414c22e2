//! Error bodies in the client's protocol shape.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// Which shape a route's errors take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// `{"error":{"message","type","code","param"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
}

/// `{"error":{"message","type","code","param"}}`, as the OpenAI API and Codex backend answer.
pub fn openai_error_body(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        code: Option<&'a str>,
        param: Option<&'a str>,
    }
    let body = Body {
        error: Inner {
            message,
            kind,
            code,
            param: None,
        },
    };
    // Serialising plain strings cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// The Anthropic error type for a status, as the Messages API uses them.
pub fn anthropic_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 | 405 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// `{"type":"error","error":{"type","message"}}`, as the Anthropic API answers.
pub fn anthropic_error_body(status: StatusCode, message: &str) -> Bytes {
    let body = serde_json::json!({
        "type": "error",
        "error": { "type": anthropic_error_type(status), "message": message },
    });
    Bytes::from(body.to_string())
}

/// Error codes that no cooldown heals: the account is disabled with the reason instead. The
/// code is OpenAI's `error.code`, or `detail.code` as the ChatGPT (Codex) backend writes it
/// (`{"detail":{"code":"deactivated_workspace"}}` with a 402).
pub fn permanent_failure(body: &[u8]) -> Option<&'static str> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = body
        .pointer("/error/code")
        .and_then(serde_json::Value::as_str)
        .or_else(|| body.pointer("/detail/code")?.as_str())?;
    match code {
        "invalid_api_key" => Some("the upstream refused the API key (invalid_api_key)"),
        "token_revoked" => Some("the upstream says the token was revoked (token_revoked)"),
        "account_deactivated" | "user_deactivated" => Some("the upstream account is deactivated"),
        "deactivated_workspace" | "organization_deactivated" => {
            Some("the upstream workspace or organisation is deactivated")
        }
        _ => None,
    }
}

/// Whether an upstream body is one JSON value (what may be passed to the client as JSON).
pub fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}
