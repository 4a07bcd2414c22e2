//! What one answer of the mock does: the knobs a test or a model name turns.
//!
//! A [`Behavior`] describes a single answer (status, headers, timing, how a stream ends). Tests
//! queue them per credential with `MockUpstream::script`; without a queued step the behaviour
//! comes from options in the model name (see `model_options`). Keeping the description as plain
//! data lets the same answer code serve both sources.

use std::time::Duration;

/// Number of text delta events when [`Behavior::events`] is not set.
pub const DEFAULT_EVENTS: usize = 3;

/// Output text when [`Behavior::text_bytes`] is not set.
pub const DEFAULT_TEXT: &str = "Hello from the subrelay mock upstream.";

/// How the mock answers one request, on any API route.
///
/// The default is a successful answer: a stream of [`DEFAULT_EVENTS`] text deltas ending with the
/// API's terminal event (`response.completed`, `message_stop`, `data: [DONE]`), or the equivalent
/// JSON object. "Events" below are SSE events (Responses, Anthropic) or `data:` chunks (Chat
/// Completions, `data: [DONE]` included).
#[derive(Clone, Debug, Default)]
pub struct Behavior {
    /// Answer this status with an error body in the API's shape (OpenAI
    /// `{"error":{"message","type","code","param":null}}`, Anthropic
    /// `{"type":"error","error":{"type","message"}}`). A 2xx status gives the normal answer.
    pub status: Option<u16>,
    /// With a scripted error `status`: the OpenAI `error.code` to send instead of the status's
    /// usual one (`deactivated_workspace`, `token_expired`, ...). Ignored by Anthropic routes.
    pub error_code: Option<String>,
    /// Extra response headers (`retry-after`, `x-codex-primary-used-percent`, ...), on any answer.
    pub headers: Vec<(String, String)>,
    /// Wait before sending the status line and headers (applies to errors too).
    pub delay_headers: Duration,
    /// Number of text delta events (`response.output_text.delta`, `content_block_delta`, chat
    /// content chunks; default [`DEFAULT_EVENTS`]). The output text is split across them, so zero
    /// events means an empty text.
    pub events: Option<usize>,
    /// Pause between stream events. When zero the whole stream leaves in one write.
    pub event_interval: Duration,
    /// Fail before any output.
    /// - Responses stream: `response.created`, `response.in_progress`, then `response.failed`
    ///   (error code `server_error`) and end.
    /// - Anthropic stream: `message_start`, `ping`, then `event: error` (`overloaded_error`) and
    ///   end.
    /// - Chat Completions, stream or not: a 500 before any chunk (that API has no in-stream
    ///   failure event).
    /// - Other JSON answers: a 500 (`server_error`, Anthropic `api_error`).
    pub fail_before_output: bool,
    /// Chat Completions text stream: after this many chunks (the first carries the role), an
    /// error chunk instead of the rest, then `data: [DONE]` — what OpenAI-compatible servers
    /// send when a stream fails midway: `{"error":{"message","type":"server_error","param":
    /// null,"code":null}}` (OpenAI, OpenRouter, DeepSeek, newer vLLM), or with
    /// [`Behavior::legacy_error_chunk`] older vLLM's top-level `{"object":"error",…}`.
    pub error_chunk_after: Option<usize>,
    /// With [`Behavior::error_chunk_after`]: the error chunk in older vLLM's shape
    /// (`{"object":"error","message","type":"InternalServerError","param":null,"code":500}`).
    pub legacy_error_chunk: bool,
    /// Stream: the event at this index (0 for the first) goes out with its data cut in half, so
    /// it is not JSON (`data: {"type":"response.out`), as a corrupting proxy or a buggy server
    /// might send; the rest of the stream follows unchanged.
    pub malformed_event_at: Option<usize>,
    /// Stream: close the connection abruptly after this many events, with no terminal event (the
    /// count is clamped so the terminal event is never sent). JSON answers: half of the body, then
    /// the cut.
    pub cut_after: Option<usize>,
    /// Stream: after this many events send nothing more but keep the connection open until the
    /// client goes away (clamped like `cut_after`). JSON answers: half of the body, then silence.
    pub hang_after: Option<usize>,
    /// Never answer (the connection stays open until the client goes away).
    pub hang_before_headers: bool,
    /// Refuse the request before any answer: RST_STREAM with REFUSED_STREAM on HTTP/2 (what a
    /// server does with a stream it will not process, which the client may retry elsewhere); on
    /// HTTP/1.1 the connection closes without an answer.
    pub refuse_stream: bool,
    /// Total size in bytes of the output text; default [`DEFAULT_TEXT`].
    pub text_bytes: Option<usize>,
    /// Token usage reported in the answer; default [`Usage::default`].
    pub usage: Option<Usage>,
    /// Responses answers: a `usage` object with a wrong type (`"input_tokens":"lots"`), as a
    /// broken or hostile upstream might send.
    pub garbage_usage: bool,

    // --- hostile modes: an upstream that attacks the gateway (streams only unless said) ---
    /// One `data:` line of this many bytes (`x` repeated) with no newline until its end, sent in
    /// 64 KiB chunks after [`Behavior::hostile_at`] events; then the rest of the stream.
    pub huge_line: Option<usize>,
    /// Before any output: the stream's first event repeated until this many bytes went (whole
    /// events, so at least this many), then the rest of the stream.
    pub preamble_bytes: Option<usize>,
    /// Never end: every event but the terminal one, then the last of them again and again
    /// forever, [`Behavior::event_interval`] apart (at least 1 ms).
    pub endless: bool,
    /// Where [`Behavior::huge_line`] goes: after this many events (default 1, i.e. before any
    /// output; a number past the preamble puts it after output).
    pub hostile_at: Option<usize>,
    /// Error answers (a scripted `status`) quote the request's `Authorization` and `x-api-key`
    /// headers in their message, as some upstreams do.
    pub echo_credential: bool,
    /// Error answers (a scripted `status`) are an HTML page (`text/html`), not JSON.
    pub text_error: bool,
    /// Answer with this many function calls of the request's tools when it declares tools and
    /// does not end with a tool's result (see `tools`); otherwise the usual text.
    pub tool_calls: Option<usize>,
}

/// Token counts reported in an answer's usage.
///
/// | field | Responses | Anthropic Messages | Chat Completions |
/// | --- | --- | --- | --- |
/// | `input` | `input_tokens` | `input_tokens` | `prompt_tokens` |
/// | `cached` | `input_tokens_details.cached_tokens` | `cache_read_input_tokens` | `prompt_tokens_details.cached_tokens` |
/// | `cache_creation` | — | `cache_creation_input_tokens` | — |
/// | `output` | `output_tokens` | `output_tokens` | `completion_tokens` |
/// | `reasoning` | `output_tokens_details.reasoning_tokens` | — | `completion_tokens_details.reasoning_tokens` |
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Input (prompt) tokens.
    pub input: u64,
    /// Input tokens read from the prompt cache.
    pub cached: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// Output tokens spent on reasoning.
    pub reasoning: u64,
    /// Input tokens written to the prompt cache (Anthropic only).
    pub cache_creation: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Self {
            input: 11,
            cached: 3,
            output: 7,
            reasoning: 2,
            cache_creation: 0,
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
