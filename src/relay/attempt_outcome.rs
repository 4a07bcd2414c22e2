//! The `outcome` label of `subrelay_upstream_attempts_total`: what an operator asks of a failed
//! attempt (was it rate-limited, refused its credential, overloaded, slow, unreachable?), a
//! bounded set drawn from the failure's kind and the upstream's status.

use http::StatusCode;

use super::failure::{AttemptFailure, FailureKind};

/// Every value [`outcome`] can give, besides `ok`.
#[cfg(test)]
pub(super) const FAILURE_OUTCOMES: &[&str] = &[
    "auth",
    "quota",
    "rate_limited",
    "overloaded",
    "server_error",
    "client_error",
    "status_other",
    "connect",
    "timeout",
    "transport",
    "stream_failed",
    "bad_answer",
    "client_gone",
    "local_resources",
];

pub(super) fn outcome(failure: &AttemptFailure) -> &'static str {
    match failure.kind {
        FailureKind::Status => by_status(failure.status),
        FailureKind::Connect => "connect",
        FailureKind::HeaderTimeout | FailureKind::Stalled | FailureKind::FirstTokenTimeout => {
            "timeout"
        }
        FailureKind::Transport => "transport",
        FailureKind::StreamFailed => "stream_failed",
        FailureKind::BadAnswer => "bad_answer",
        FailureKind::Abandoned => "client_gone",
        FailureKind::LocalResources => "local_resources",
    }
}

fn by_status(status: Option<StatusCode>) -> &'static str {
    let Some(status) = status else {
        return "status_other";
    };
    match status.as_u16() {
        401 | 403 => "auth",
        402 => "quota",
        429 => "rate_limited",
        // Anthropic's "overloaded"; a 503 says the same of a whole service.
        503 | 529 => "overloaded",
        500..=599 => "server_error",
        400..=499 => "client_error",
        _ => "status_other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_an_operator_asks() {
        let of = |code: u16| by_status(StatusCode::from_u16(code).ok());
        assert_eq!(of(401), "auth");
        assert_eq!(of(429), "rate_limited");
        assert_eq!(of(529), "overloaded");
        assert_eq!(of(500), "server_error");
        assert_eq!(of(404), "client_error");
        assert_eq!(of(302), "status_other");
        for code in [200, 302, 400, 401, 402, 403, 429, 500, 502, 503, 529, 599] {
            assert!(FAILURE_OUTCOMES.contains(&of(code)), "{code}");
        }
    }
}
