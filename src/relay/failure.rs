//! Why an attempt failed, what that means for the account, and what the client finally sees.
//!
//! An [`AttemptFailure`] carries its own decisions — is another account worth trying, what
//! state does the account move to — so the failover loop asks the failure and never parses
//! messages. [`ClientError::from_failure`] is the one exhaustive mapping to a client status.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::pool::cooldown::{anthropic_reset, rate_limit_reset, retry_after};
use crate::pool::{AccountEffect, Platform};
use crate::protocol::errors::{anthropic_error_body, ErrorShape};
use crate::protocol::Terminal;
use crate::upstream::SendError;

/// Low-cardinality kind, for logs, metrics and the status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The upstream answered a non-2xx status.
    Status,
    /// No connection (refused, DNS, TLS).
    Connect,
    /// No response headers within `gateway.response_header_timeout`.
    HeaderTimeout,
    /// The connection broke while reading the answer.
    Transport,
    /// The stream went silent longer than `gateway.stream_data_interval_timeout`.
    Stalled,
    /// `response.failed` / `error` before any output.
    StreamFailed,
    /// An answer subrelay cannot use: too large, or a stream without a terminal event.
    BadAnswer,
    /// The client went away and the read for its usage hit a bound
    /// (`gateway.orphan_read_timeout`, `gateway.orphan_read_max_bytes`) or shutdown began.
    Abandoned,
    /// The gateway itself ran out of a local resource (file descriptors, memory for sockets,
    /// local ports) while connecting: not the account's fault.
    LocalResources,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Status => "upstream_status",
            FailureKind::Connect => "connect_error",
            FailureKind::HeaderTimeout => "header_timeout",
            FailureKind::Transport => "transport_error",
            FailureKind::Stalled => "stream_stalled",
            FailureKind::StreamFailed => "response_failed",
            FailureKind::BadAnswer => "bad_upstream_answer",
            FailureKind::Abandoned => "orphan_read_limit",
            FailureKind::LocalResources => "gateway_out_of_resources",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub kind: FailureKind,
    pub status: Option<StatusCode>,
    pub effect: AccountEffect,
    /// Whether another account could do better.
    pub retryable: bool,
    /// For logs; names no secret.
    pub message: String,
    pub retry_after: Option<Duration>,
    /// A client-caused upstream error (a 400, say), given to the client as it came.
    pub passthrough: Option<(StatusCode, Bytes)>,
    /// The upstream's own stream up to its `response.failed`, for a streaming client if every
    /// account fails this way.
    pub failed_stream: Option<Bytes>,
    /// The upstream error code of a failed stream (`rate_limit_exceeded`, ...).
    pub code: Option<String>,
}

impl AttemptFailure {
    fn new(kind: FailureKind, effect: AccountEffect, message: String) -> Self {
        Self {
            kind,
            status: None,
            effect,
            retryable: true,
            message,
            retry_after: None,
            passthrough: None,
            failed_stream: None,
            code: None,
        }
    }

    /// A non-2xx answer. 401/402/403/429/529/5xx are the account's problem (fail over); any
    /// other status is the request's and goes back to the client unchanged.
    pub fn from_status(
        status: StatusCode,
        headers: &HeaderMap,
        body: Bytes,
        platform: Platform,
    ) -> Self {
        let now = SystemTime::now();
        let effect = match (status.as_u16(), permanent_failure(&body)) {
            (401..=403, Some(reason)) => AccountEffect::Disable(reason),
            (s, _) => match s {
                401 | 403 => AccountEffect::AuthFailed,
                402 => AccountEffect::PaymentRequired,
                429 if platform == Platform::Anthropic => match anthropic_reset(headers, now) {
                    Some(reset) => AccountEffect::RateLimited(Some(reset)),
                    // Without a reset header it is not the account's limit (a burst, say).
                    None => AccountEffect::Transient,
                },
                429 => AccountEffect::RateLimited(rate_limit_reset(headers, now)),
                529 => AccountEffect::Overloaded,
                s if s >= 500 => AccountEffect::Transient,
                _ => AccountEffect::None,
            },
        };
        let retryable = effect != AccountEffect::None;
        let mut failure = Self::new(
            FailureKind::Status,
            effect,
            format!("upstream answered {status}{}", summary(&body)),
        );
        failure.status = Some(status);
        failure.retryable = retryable;
        failure.retry_after = match effect {
            AccountEffect::RateLimited(reset) => reset.or_else(|| retry_after(headers, now)),
            _ => retry_after(headers, now),
        };
        if !retryable {
            failure.passthrough = Some((status, body));
        }
        failure
    }

    pub fn connect(err: &SendError) -> Self {
        Self::new(
            FailureKind::Connect,
            AccountEffect::Transient,
            format!("cannot connect upstream: {}", err.message),
        )
    }

    /// Connecting failed for want of a local resource (EMFILE and the like): the account keeps
    /// its state, and no other account is tried (it would fail the same way).
    pub fn local_resources(err: &SendError) -> Self {
        let mut failure = Self::new(
            FailureKind::LocalResources,
            AccountEffect::None,
            format!("the gateway is out of local resources: {}", err.message),
        );
        failure.retryable = false;
        failure
    }

    /// An upstream status that is neither an answer nor an error (1xx, 3xx): the attempt failed
    /// like a broken connection, and the next account is tried.
    pub fn not_an_answer(status: StatusCode) -> Self {
        let mut failure = Self::new(
            FailureKind::Transport,
            AccountEffect::Transient,
            format!("upstream answered {status}, which is neither 2xx, 4xx nor 5xx"),
        );
        failure.status = Some(status);
        failure
    }

    /// The client is gone and reading on for its usage hit `why` (a bound, or shutdown).
    pub fn abandoned(why: &str) -> Self {
        let mut failure = Self::new(
            FailureKind::Abandoned,
            AccountEffect::None,
            format!("the client went away and the upstream was read for usage until {why}"),
        );
        failure.retryable = false;
        failure
    }

    pub fn transport(err: &SendError) -> Self {
        Self::new(
            FailureKind::Transport,
            AccountEffect::Transient,
            format!("upstream connection failed: {}", err.message),
        )
    }

    pub fn header_timeout(after: Duration) -> Self {
        Self::new(
            FailureKind::HeaderTimeout,
            AccountEffect::Transient,
            format!("no response headers within {} s", after.as_secs()),
        )
    }

    pub fn stalled(after: Duration) -> Self {
        Self::new(
            FailureKind::Stalled,
            AccountEffect::Stalled,
            format!("upstream stream sent nothing for {} s", after.as_secs()),
        )
    }

    pub fn bad_answer(message: impl Into<String>) -> Self {
        Self::new(
            FailureKind::BadAnswer,
            AccountEffect::Transient,
            message.into(),
        )
    }

    /// The same failure, seen after the client got output: no other account may answer now.
    pub fn after_output(mut self) -> Self {
        self.retryable = false;
        self
    }

    /// `response.failed` or `error` before any output.
    pub fn stream_failed(terminal: Terminal, upstream_events: Bytes) -> Self {
        let code = terminal.error_code.clone();
        let retryable = crate::protocol::responses::failure_is_retryable(code.as_deref());
        let effect = match code.as_deref() {
            Some("rate_limit_exceeded" | "usage_limit_reached" | "rate_limit_error") => {
                AccountEffect::RateLimited(None)
            }
            _ if retryable => AccountEffect::Transient,
            _ => AccountEffect::None,
        };
        let mut failure = Self::new(
            FailureKind::StreamFailed,
            effect,
            format!(
                "upstream stream failed before output: {} ({})",
                terminal.error_message.as_deref().unwrap_or("no message"),
                code.as_deref().unwrap_or("no code")
            ),
        );
        failure.retryable = retryable;
        failure.failed_stream = Some(upstream_events);
        failure.code = code;
        failure
    }
}

/// Error codes that no cooldown heals: the account is disabled with the reason instead. The
/// code is OpenAI's `error.code`, or `detail.code` as the ChatGPT (Codex) backend writes it
/// (`{"detail":{"code":"deactivated_workspace"}}` with a 402).
fn permanent_failure(body: &[u8]) -> Option<&'static str> {
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
fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// The first bytes of an error body, on one line, for the log.
fn summary(body: &Bytes) -> String {
    if body.is_empty() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    format!(
        ": {}",
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// What the client is told, in the OpenAI error shape.
#[derive(Debug, Clone)]
pub struct ClientError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub code: Option<String>,
    pub retry_after: Option<Duration>,
    /// A body to send instead of the rendered error (an upstream 4xx, given as it came).
    pub raw_body: Option<Bytes>,
    /// The route's error shape.
    pub shape: ErrorShape,
}

impl ClientError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            code: None,
            retry_after: None,
            raw_body: None,
            shape: ErrorShape::OpenAi,
        }
    }

    pub fn in_shape(mut self, shape: ErrorShape) -> Self {
        self.shape = shape;
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The one mapping from the last failure of an exhausted request to the client's answer.
    /// Upstream auth trouble is never a 401: the client's key was fine.
    pub fn from_failure(failure: &AttemptFailure, tried: usize, request_id: &str) -> Self {
        let tried_text = if tried == 1 {
            "the account tried".to_owned()
        } else {
            format!("all {tried} accounts tried")
        };
        let upstream = failure.status.map_or(0, |s| s.as_u16());
        let (status, kind, message) = match failure.kind {
            FailureKind::Status => match upstream {
                429 => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!("upstream rate limit reached on {tried_text}"),
                ),
                401 | 403 => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!("upstream rejected the credentials of {tried_text} (status {upstream}); the gateway's operator must renew them"),
                ),
                402 => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!("upstream refused {tried_text} for billing reasons (status 402)"),
                ),
                529 => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded_error",
                    format!("upstream overloaded on {tried_text} (status 529)"),
                ),
                _ => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!("upstream error on {tried_text} (status {upstream})"),
                ),
            },
            FailureKind::Connect => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("could not connect to the upstream of {tried_text}"),
            ),
            FailureKind::HeaderTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                format!("the upstream of {tried_text} did not answer in time"),
            ),
            FailureKind::Transport => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("the upstream connection broke on {tried_text}"),
            ),
            FailureKind::Stalled => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                format!("the upstream stream stalled on {tried_text}"),
            ),
            FailureKind::StreamFailed if !failure.retryable => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("upstream refused the request: {}", failure.message),
            ),
            FailureKind::StreamFailed => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("the upstream response failed on {tried_text}"),
            ),
            FailureKind::BadAnswer => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                format!("unusable upstream answer on {tried_text}: {}", failure.message),
            ),
            // Nobody reads this answer (the client left); it is recorded all the same.
            FailureKind::Abandoned => (
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "the client went away before the upstream answer ended".to_owned(),
            ),
            FailureKind::LocalResources => (
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "the gateway is out of local resources (open files or sockets) and cannot reach an upstream now; retry shortly".to_owned(),
            ),
        };
        let code = match (failure.kind, &failure.code) {
            (FailureKind::StreamFailed, Some(code)) => code.clone(),
            _ if upstream > 0 => format!("upstream_status_{upstream}"),
            _ => failure.kind.as_str().to_owned(),
        };
        let mut error = ClientError::new(status, kind, format!("{message} (request {request_id})"))
            .with_code(code)
            .with_retry_after(
                failure
                    .retry_after
                    .filter(|_| status == StatusCode::TOO_MANY_REQUESTS),
            );
        if let Some((status, body)) = &failure.passthrough {
            error.status = *status;
            if is_json(body) {
                error.raw_body = Some(body.clone());
            } else {
                // Not JSON (an HTML page from a proxy, say): told in the route's error shape
                // instead of being labelled application/json as it is.
                error.kind = "invalid_request_error";
                error.code = Some(format!("upstream_status_{}", status.as_u16()));
                error.message = format!(
                    "the upstream refused the request (status {}){} (request {request_id})",
                    status.as_u16(),
                    summary(body)
                );
            }
        }
        error
    }

    pub fn json_body(&self) -> Bytes {
        match (&self.raw_body, self.shape) {
            (Some(body), _) => body.clone(),
            (None, ErrorShape::OpenAi) => crate::protocol::errors::openai_error_body(
                &self.message,
                self.kind,
                self.code.as_deref(),
            ),
            (None, ErrorShape::Anthropic) => anthropic_error_body(self.status, &self.message),
        }
    }

    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after {
            // Round up: a client retrying early finds the pool still cooling.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, secs.max(1).into());
        }
        headers
    }
}

impl axum::response::IntoResponse for ClientError {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::response::Response::new(axum::body::Body::from(self.json_body()));
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers();
        response
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn effect(status: u16, body: &'static str) -> AccountEffect {
        AttemptFailure::from_status(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            Platform::OpenAi,
        )
        .effect
    }

    #[test]
    fn a_deactivated_workspace_disables_in_either_error_shape() {
        let disabled =
            AccountEffect::Disable("the upstream workspace or organisation is deactivated");
        assert_eq!(
            effect(402, r#"{"detail":{"code":"deactivated_workspace"}}"#),
            disabled
        );
        assert_eq!(
            effect(
                402,
                r#"{"error":{"message":"m","type":"t","code":"deactivated_workspace"}}"#
            ),
            disabled
        );
        // Controls: billing without that code cools; a plain-string detail is no code at all.
        assert_eq!(
            effect(402, r#"{"detail":{"code":"billing_hard_limit"}}"#),
            AccountEffect::PaymentRequired
        );
        assert_eq!(
            effect(401, r#"{"detail":"Unauthorized"}"#),
            AccountEffect::AuthFailed
        );
    }
}
