//! Anthropic Messages client → OpenAI Responses upstream (issue 16, direction 1): Claude Code or
//! an Anthropic SDK served by a ChatGPT sign-in (Codex backend) or an OpenAI API account.
//!
//! # Request
//!
//! | Messages | Responses |
//! |---|---|
//! | `model` | `model`: the attempt's upstream model ([`Target::upstream_model`]) |
//! | `system` (string, or text blocks joined by a blank line) | `instructions` (the Codex backend gets the default instructions when empty) |
//! | user `text` / assistant `text` | `message` items, `input_text` / `output_text` parts; consecutive blocks share one item |
//! | `role: "system"` entries in `messages` | `developer` messages |
//! | `image` (base64 → data URL, `url` → URL) | `input_image` |
//! | `document` (base64 PDF / plain-text source) | `input_file` (`file_data` data URL) / `input_text` |
//! | assistant `tool_use` | `function_call` item; `id` → `call_id` unchanged, `input` → `arguments`: its JSON text as the client wrote it (key order and spacing kept, so a relayed call returns as the upstream wrote it) |
//! | user `tool_result` | `function_call_output` item, `tool_use_id` → `call_id`; text → a string (blocks joined by a newline), content with images → a list of `input_text`/`input_image`; `is_error: true` → the output starts with `Error: ` (Responses has no error flag) |
//! | assistant `thinking` whose `signature` this relay made | `reasoning` item: summary from `thinking`, `encrypted_content` from the signature |
//! | `tools[]` (`name`, `description`, `input_schema`) | function tools (`parameters` = `input_schema` as written, `{"type":"object"}` when absent or null; `strict: false`) |
//! | `tool_choice` `auto` / `any` / `tool` / `none` | `"auto"` / `"required"` / `{"type":"function","name"}` / `"none"` |
//! | `tool_choice.disable_parallel_tool_use` | `parallel_tool_calls: false` (else `true` when there are tools) |
//! | `thinking` `enabled` (`budget_tokens` < 4096 / < 16384 / more) | `reasoning: {effort: low / medium / high, summary: auto}` and `include: ["reasoning.encrypted_content"]` |
//! | `thinking` `adaptive` | `reasoning: {summary: auto}` (the upstream's default effort), same `include` |
//! | `output_config.effort` (`low`/`medium`/`high`/`max`) | `reasoning.effort` (`max` → `high`) |
//! | `max_tokens` | `max_output_tokens` (at least 16, the Responses minimum) |
//! | `temperature`, `top_p` | the same, unless 1 (the default) or with thinking or `output_config.effort` (OpenAI's reasoning models refuse any value but the default) |
//! | `stop_sequences` (at most 16, each at most 256 bytes) | not sent (Responses has none): applied by the translator to the answer's text, see below |
//! | `metadata.user_id` | not sent as is: it is the conversation's identity (stickiness), from which the relay derives the upstream `prompt_cache_key` per API key, as for a native client's key (OpenAI takes at most 64 characters; Claude Code's id is longer) |
//! | `stream` | `stream` (always `true` on the Codex backend) |
//! | — | `store: false` (a Messages conversation is stateless) |
//!
//! Codex backend ([`Target::codex_backend`]): `stream: true`, `store: false`, string
//! `instructions`, list `input`; `max_output_tokens`, `temperature` and `top_p` are dropped, as
//! that backend answers 400 "Unsupported parameter" to each.
//!
//! Dropped (hints without content): `cache_control` on any block, `citations`, `top_k`,
//! `service_tier`, `context_management`, other unknown top-level fields; `thinking` blocks with
//! an Anthropic signature and `redacted_thinking` (another provider's reasoning cannot be
//! replayed; the relay drops them for another Anthropic account alike).
//!
//! Refused (400 naming the field): `mcp_servers`, `container`, more or longer stop sequences
//! than the translator applies, Anthropic server tools (`tools[i].type` other than
//! `custom`), images and documents from other sources (file ids), blocks Responses has no form
//! for (`server_tool_use`, `search_result`, …), malformed fields.
//!
//! # Answer
//!
//! | Responses | Messages |
//! |---|---|
//! | `response.created` | `message_start` (`id` = `msg_` + the response id's tail, `model` = the client's, usage 0: the upstream reports usage only at the end) |
//! | `output_text` part, `response.output_text.delta` | `text` block, `text_delta` |
//! | `refusal` part, `response.refusal.delta` | `text` block, `text_delta`; `stop_reason: "refusal"` |
//! | `reasoning` item, `response.reasoning_summary_text.delta` | `thinking` block, `thinking_delta` (summary parts of one item set apart by a blank line) |
//! | the reasoning item's `encrypted_content` (`output_item.done`) | `signature_delta`: the signature is `oai-reasoning:` + the encrypted content, returned upstream on the next turn |
//! | `function_call` item, `response.function_call_arguments.delta` | `tool_use` block (`id` = `call_id`), `input_json_delta` |
//! | `response.completed` | `message_delta` (`stop_reason` `tool_use` when a tool was called, `refusal` after a refusal, else `end_turn`), `message_stop` |
//! | `response.incomplete` (`max_output_tokens` / `content_filter`) | `stop_reason` `max_tokens` / `refusal` |
//! | usage: `input_tokens` (cached included), `cached_tokens`, `output_tokens` | `input_tokens` = input − cached, `cache_read_input_tokens` = cached, `cache_creation_input_tokens` = 0, `output_tokens` (reasoning included) |
//! | text reaching a stop sequence | the text before it (text that may begin one is held back until the next delta tells), then nothing more of the upstream's output; `stop_reason: "stop_sequence"`, `stop_sequence` = the one met. The upstream generates on until its own end, and its usage (what the relay records) counts that |
//! | `response.failed`, `error` | `event: error` (`rate_limit_error`, `overloaded_error`, `invalid_request_error`, `timeout_error` or `api_error` by the upstream code) |
//! | a non-stream `response` object | a `message` object, the same mapping |
//!
//! Encrypted reasoning is carried opaquely so the next turn round-trips (OpenAI asks for the
//! reasoning items of a turn with tool calls back in the next request, and `store: false`
//! keeps nothing upstream): it rides in the thinking block's `signature`, which Anthropic
//! clients return untouched. The prefix tells this relay's signatures from Anthropic's; should
//! the conversation move to an Anthropic account, the relay's foreign-signature retry drops
//! them. Without `thinking` in the request, nothing of the reasoning is asked for or shown
//! (a client that did not ask for thinking blocks may read `content[0]` as the text), so the
//! upstream reasons afresh each turn.
//!
//! Ids pass through unchanged both ways (`call_…` ids become `tool_use` ids and come back as
//! `call_id`s; `toolu_…` ids from an earlier Anthropic turn go upstream as `call_id`s). OpenAI
//! takes any string as a `call_id`; its own (`call_` and letters and digits) also fit the
//! pattern Anthropic checks tool ids against (`[a-zA-Z0-9_-]+`), should the conversation move
//! to an Anthropic account.

mod answer;
mod request;
mod stop;
mod stream;

use bytes::Bytes;
use serde_json::{json, Value};

use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};
use crate::protocol::TokenUsage;
use stop::StopSequences;

pub struct MessagesViaResponses;

impl Translation for MessagesViaResponses {
    fn request(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
        request::translate(body, target)
    }

    fn stream(client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::Translator::new(client_model))
    }

    fn json(upstream: &[u8], client_model: &str) -> Result<Bytes, String> {
        answer::translate(upstream, client_model, StopSequences::default())
    }

    fn stream_for(client_body: &[u8], client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::Translator::with_stops(
            client_model,
            StopSequences::of_request(client_body),
        ))
    }

    fn json_for(upstream: &[u8], client_body: &[u8], client_model: &str) -> Result<Bytes, String> {
        answer::translate(
            upstream,
            client_model,
            StopSequences::of_request(client_body),
        )
    }
}

/// Marks a thinking signature as an OpenAI reasoning item's encrypted content.
pub const REASONING_SIGNATURE_PREFIX: &str = "oai-reasoning:";

fn reasoning_signature(encrypted: &str) -> String {
    format!("{REASONING_SIGNATURE_PREFIX}{encrypted}")
}

/// The message id the client sees: derived from the response id, so it is stable per answer.
fn message_id(response_id: Option<&str>) -> String {
    let tail = response_id.map_or("subrelay", |id| id.strip_prefix("resp_").unwrap_or(id));
    format!("msg_{tail}")
}

/// How the upstream's answer ended.
#[derive(Debug, Clone, Copy)]
enum Ending<'a> {
    Completed,
    /// `response.incomplete` with its `incomplete_details.reason`.
    Incomplete(Option<&'a str>),
}

fn stop_reason(ending: Ending<'_>, tool_use: bool, refusal: bool) -> &'static str {
    match ending {
        Ending::Incomplete(Some("content_filter")) => "refusal",
        Ending::Incomplete(_) => "max_tokens",
        Ending::Completed if refusal => "refusal",
        Ending::Completed if tool_use => "tool_use",
        Ending::Completed => "end_turn",
    }
}

/// Messages usage from the upstream's: Anthropic's `input_tokens` leaves cache reads out.
fn usage_json(usage: &TokenUsage) -> Value {
    json!(MessagesUsage::from(usage))
}

/// A Messages `usage` object from the upstream's token counts: the one shape the JSON answer
/// ([`usage_json`]) and the stream's `message_delta` (written without a `Value`) both print.
#[derive(serde::Serialize)]
struct MessagesUsage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

impl From<&TokenUsage> for MessagesUsage {
    fn from(usage: &TokenUsage) -> Self {
        Self {
            input_tokens: usage.input.saturating_sub(usage.cached_input),
            cache_creation_input_tokens: 0,
            cache_read_input_tokens: usage.cached_input,
            output_tokens: usage.output,
        }
    }
}

/// The Anthropic error type for an upstream (or relay) error code.
fn error_type(code: Option<&str>) -> &'static str {
    match code.unwrap_or_default() {
        "rate_limit_exceeded"
        | "rate_limit_error"
        | "usage_limit_reached"
        | "insufficient_quota" => "rate_limit_error",
        "server_is_overloaded" | "overloaded_error" | "slow_down" => "overloaded_error",
        "context_length_exceeded"
        | "invalid_prompt"
        | "invalid_request_error"
        | "invalid_encrypted_content" => "invalid_request_error",
        "stream_stalled" | "header_timeout" | "first_token_timeout" => "timeout_error",
        _ => "api_error",
    }
}

#[cfg(test)]
mod tests;
