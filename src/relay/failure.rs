//! Why an attempt failed, what that means for the account, and what the client finally sees.
//!
//! An [`AttemptFailure`] carries its own decisions — is another account worth trying, what
//! state does the account move to — so the failover loop asks the failure and never parses
//! messages. [`refusal`] is the one exhaustive mapping to what the client is told.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::Outcome;
use crate::domain::Platform;
use crate::http::refusal::{Refusal, UpstreamRefusal, UpstreamWhy};
use crate::pool::cooldown::{anthropic_reset, rate_limit_reset, retry_after};
use crate::pool::AccountEffect;
use crate::protocol::{Terminal, TokenUsage};
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
    /// A stream with no real output within `gateway.first_token_timeout` of the send.
    FirstTokenTimeout,
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
            FailureKind::FirstTokenTimeout => "first_token_timeout",
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
    /// The usage a stream reported before it failed (Anthropic's `message_start` carries the
    /// input tokens): recorded unless a later attempt reports its own.
    pub usage: Option<TokenUsage>,
    /// A failure after output: the client already has its answer (the stream ended with an
    /// in-protocol failure), and this is what it got.
    pub delivered: Option<Outcome>,
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
            usage: None,
            delivered: None,
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
        let effect = match (
            status.as_u16(),
            crate::protocol::errors::permanent_failure(&body),
        ) {
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

    /// Nothing real within `gateway.first_token_timeout` of the send: a strike on the account
    /// (a slow start is not yet a dead account), and the next account is tried.
    pub fn first_token_timeout(after: Duration) -> Self {
        Self::new(
            FailureKind::FirstTokenTimeout,
            AccountEffect::Transient,
            format!(
                "no output within {} s of the request (gateway.first_token_timeout)",
                after.as_secs()
            ),
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

    /// The same failure, seen after the client got output: no other account may answer now,
    /// and the client's answer was `delivered`.
    pub fn after_output(mut self, delivered: Outcome) -> Self {
        self.retryable = false;
        self.delivered = Some(delivered);
        self
    }

    /// With the usage the stream reported before it failed.
    pub fn with_usage(mut self, usage: TokenUsage) -> Self {
        self.usage = Some(usage);
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

/// The refusal a request whose every attempt failed gets: which of the client's reasons the
/// last failure is (the wording, statuses and shapes are `http::refusal`'s). Upstream auth
/// trouble is never a 401: the client's key was fine.
pub fn refusal(failure: &AttemptFailure, tried: usize, request_id: &str) -> Refusal {
    let upstream = failure.status.map_or(0, |s| s.as_u16());
    let mut why = match failure.kind {
        FailureKind::Status => match upstream {
            429 => UpstreamWhy::RateLimited {
                retry_after: failure.retry_after,
            },
            401 | 403 => UpstreamWhy::CredentialsRejected { status: upstream },
            402 => UpstreamWhy::Billing,
            529 => UpstreamWhy::Overloaded,
            _ => UpstreamWhy::Status { status: upstream },
        },
        FailureKind::Connect => UpstreamWhy::Unreachable,
        FailureKind::HeaderTimeout => UpstreamWhy::NoHeaders,
        FailureKind::Transport => UpstreamWhy::Broken,
        FailureKind::Stalled => UpstreamWhy::Stalled,
        FailureKind::FirstTokenTimeout => UpstreamWhy::NoFirstToken,
        FailureKind::StreamFailed if !failure.retryable => UpstreamWhy::RequestRefused {
            detail: failure.message.clone(),
        },
        FailureKind::StreamFailed => UpstreamWhy::ResponseFailed,
        FailureKind::BadAnswer => UpstreamWhy::Unusable {
            detail: failure.message.clone(),
        },
        FailureKind::Abandoned => UpstreamWhy::ClientGone,
        FailureKind::LocalResources => UpstreamWhy::OutOfResources,
    };
    let mut code = match (failure.kind, &failure.code) {
        (FailureKind::StreamFailed, Some(code)) => code.clone(),
        _ if upstream > 0 => format!("upstream_status_{upstream}"),
        _ => failure.kind.as_str().to_owned(),
    };
    let mut passthrough = None;
    if let Some((status, body)) = &failure.passthrough {
        if crate::protocol::errors::is_json(body) {
            passthrough = Some((*status, body.clone()));
        } else {
            why = UpstreamWhy::NotJson {
                status: *status,
                summary: summary(body),
            };
            code = format!("upstream_status_{}", status.as_u16());
        }
    }
    Refusal::Upstream(Box::new(UpstreamRefusal {
        why,
        tried,
        code,
        request_id: request_id.to_owned(),
        passthrough,
    }))
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

    fn refused(status: u16, body: &'static str) -> Refusal {
        let failure = AttemptFailure::from_status(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            Platform::OpenAi,
        );
        refusal(&failure, 1, "req_1")
    }

    #[test]
    fn a_request_error_in_json_goes_to_the_client_as_it_came() {
        let body = r#"{"error":{"message":"bad","type":"invalid_request_error"}}"#;
        let refusal = refused(400, body);
        assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            refusal.body(crate::protocol::errors::ErrorShape::Anthropic),
            body.as_bytes()
        );
        assert_eq!(refusal.code().as_deref(), Some("upstream_status_400"));
    }

    #[test]
    fn a_request_error_not_in_json_is_told_in_the_routes_shape() {
        let refusal = refused(404, "<html>Not Found</html>");
        assert_eq!(refusal.status(), StatusCode::NOT_FOUND);
        assert_eq!(refusal.kind(), "invalid_request_error");
        assert_eq!(refusal.code().as_deref(), Some("upstream_status_404"));
        assert_eq!(
            refusal.message(),
            "the upstream refused the request (status 404): <html>Not Found</html> (request req_1)"
        );
        // Control: an account's failure (a 500) is the gateway's 502, not the upstream's body.
        let refusal = refused(500, "{}");
        assert_eq!(refusal.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(refusal.code().as_deref(), Some("upstream_status_500"));
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
