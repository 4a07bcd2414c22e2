//! How a request ended, as a value: the phase that answers the client makes it once, and the
//! record phase (access line, usage record) reads it.

use http::StatusCode;
use tokio::time::Instant;

use crate::http::refusal::Refusal;
use crate::protocol::TokenUsage;

/// What the client got, as the record and the access log read it: made once, by whichever
/// phase answered (a respond path, the failure stream, or the final refusal).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// The answer's status (200 once a keepalive or a stream committed it).
    pub status: StatusCode,
    pub success: bool,
    pub tokens: TokenUsage,
    /// When the first output went to the client (time to first token).
    pub first_output_at: Option<Instant>,
}

impl Outcome {
    /// An upstream's answer, passed on with 200 (`success` is false when the stream's own
    /// terminal event says it failed).
    pub fn answered(tokens: TokenUsage, success: bool, first_output_at: Option<Instant>) -> Self {
        Self {
            status: StatusCode::OK,
            success,
            tokens,
            first_output_at,
        }
    }

    /// No answer from an upstream: the client was told `status` (a refusal, or 200 when a
    /// keepalive had committed it); `tokens` is what a failed stream reported, if anything.
    pub fn refused(status: StatusCode, tokens: TokenUsage) -> Self {
        Self {
            status,
            success: false,
            tokens,
            first_output_at: None,
        }
    }
}

/// How phases 4–6 ended.
pub(super) enum Ended {
    /// The client has its answer.
    Answered(Outcome),
    /// The client is still to be told this refusal; `usage` is what a failed stream reported.
    Refused { refusal: Refusal, usage: TokenUsage },
}
