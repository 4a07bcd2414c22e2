//! What one answer of the mock does: the knobs a test or a model name turns.
//!
//! A [`Behavior`] describes a single answer (status, headers, timing, how a stream ends). Tests
//! queue them per credential with `MockUpstream::script`; without a queued step the behaviour
//! comes from options in the model name (see `model_options`). Keeping the description as plain
//! data lets the same answer code serve both sources.

use std::time::Duration;

/// Number of `response.output_text.delta` events when [`Behavior::events`] is not set.
pub const DEFAULT_EVENTS: usize = 3;

/// Output text when [`Behavior::text_bytes`] is not set.
pub const DEFAULT_TEXT: &str = "Hello from the subrelay mock upstream.";

/// How the mock answers one request.
///
/// The default is a successful answer: a stream of [`DEFAULT_EVENTS`] text deltas ending with
/// `response.completed`, or the equivalent JSON object.
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Answer this status with an OpenAI-shaped error body
    /// `{"error":{"message","type","code","param":null}}`. A 2xx status gives the normal answer.
    pub status: Option<u16>,
    /// Extra response headers (`retry-after`, `x-codex-primary-used-percent`, ...), on any answer.
    pub headers: Vec<(String, String)>,
    /// Wait before sending the status line and headers (applies to errors too).
    pub delay_headers: Duration,
    /// Number of `response.output_text.delta` events (default [`DEFAULT_EVENTS`]). The output
    /// text is split across them, so zero events means an empty text.
    pub events: Option<usize>,
    /// Pause between stream events. When zero the whole stream leaves in one write.
    pub event_interval: Duration,
    /// Stream: `response.created`, `response.in_progress`, then `response.failed` (error code
    /// `server_error`) and end. JSON answers: a 500 `server_error` instead.
    pub fail_before_output: bool,
    /// Stream: close the connection abruptly after this many events, with no terminal event (the
    /// count is clamped so the terminal event is never sent). JSON answers: half of the body, then
    /// the cut.
    pub cut_after: Option<usize>,
    /// Stream: after this many events send nothing more but keep the connection open until the
    /// client goes away (clamped like `cut_after`). JSON answers: half of the body, then silence.
    pub hang_after: Option<usize>,
    /// Never answer (the connection stays open until the client goes away).
    pub hang_before_headers: bool,
    /// Total size in bytes of the output text; default [`DEFAULT_TEXT`].
    pub text_bytes: Option<usize>,
    /// Token usage reported in the answer; default [`Usage::default`].
    pub usage: Option<Usage>,
}

/// Token counts reported in `response.usage`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// `input_tokens`.
    pub input: u64,
    /// `input_tokens_details.cached_tokens`.
    pub cached: u64,
    /// `output_tokens`.
    pub output: u64,
    /// `output_tokens_details.reasoning_tokens`.
    pub reasoning: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            input: 11,
            cached: 3,
            output: 7,
            reasoning: 2,
        }
    }
}

impl Behavior {
    /// Number of text delta events this answer carries.
    pub(crate) fn delta_events(&self) -> usize {
        self.events.unwrap_or(DEFAULT_EVENTS)
    }

    /// Usage reported by this answer.
    pub(crate) fn usage_or_default(&self) -> Usage {
        self.usage.unwrap_or_default()
    }
}
