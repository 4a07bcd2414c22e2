//! A Chat Completions client served by an Anthropic Messages upstream (OpenAI SDK clients on
//! Claude accounts).
//!
//! Request, Chat → Messages:
//!
//! | Chat | Messages |
//! |---|---|
//! | `model` | the target's upstream model |
//! | `system` / `developer` messages (string or text parts), wherever they stand | `system` text blocks, in order (Messages has one system prompt, so their position in the conversation is lost) |
//! | `user` string, `text` parts | `user` turn with `text` blocks (empty text is left out: Anthropic refuses empty blocks) |
//! | `user` `image_url` part: `data:<type>;base64,…` | `image` block, `base64` source |
//! | `user` `image_url` part: `http(s)://…` | `image` block, `url` source |
//! | `user` `file` part with `file_data` `data:application/pdf;base64,…` | `document` block, `base64` source |
//! | `assistant` text / `refusal` parts | `assistant` turn with `text` blocks |
//! | `assistant` `tool_calls[]` | `tool_use` blocks (`input` = the parsed `arguments`, `{}` when empty) |
//! | `tool` messages | `tool_result` blocks (`tool_use_id` = `tool_call_id`) in one `user` turn; consecutive ones, and a `user` message right after them, share that turn, tool results first |
//! | `tools[]` (function) | tools with `input_schema` = `parameters` (an empty object schema when absent) |
//! | `tool_choice` `auto` / `required` / `none` / named | `{"type":"auto"}` / `any` / `none` / `{"type":"tool","name"}` |
//! | `parallel_tool_calls: false` | `disable_parallel_tool_use: true` on the tool choice |
//! | `max_completion_tokens`, else `max_tokens` | `max_tokens`; Anthropic requires it, so absent it is [`DEFAULT_MAX_TOKENS`] (plus the thinking budget when thinking) |
//! | `reasoning_effort` `low` / `medium` / `high` | `thinking: {"type":"enabled","budget_tokens"}` with 1024 / 4096 / 16384 (capped below `max_tokens`); `none` / `minimal`: no thinking. Not with a forced tool choice, nor when the last assistant turn called tools (Anthropic then wants that turn's signed thinking block, which a Chat client cannot send back): the hint is dropped there |
//! | `stop` (string or list) | `stop_sequences` |
//! | `temperature` | same, clamped to Anthropic's 0–1 (Chat allows up to 2); dropped with thinking (Anthropic takes only its default then) |
//! | `top_p` | same; dropped with thinking |
//! | `user` | `metadata.user_id` |
//! | `stream` | same |
//!
//! Ids: tool call ids pass through unchanged, except that characters Anthropic refuses in a
//! `tool_use` id (anything but letters, digits, `_` and `-`) become `_`, the same way in the call
//! and in its result, so the pair still matches. Ids coming back from Anthropic (`toolu_…`) are
//! valid Chat ids as they are.
//!
//! Dropped (hints without content): `stream_options` (the usage chunk is decided here),
//! `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `top_logprobs` without
//! `logprobs`, `prediction`, `metadata`, `store`, `service_tier`, `prompt_cache_key`,
//! `safety_identifier`, `verbosity`, tool `strict`, message `name`s, an assistant message's
//! `reasoning_content` (Anthropic takes earlier thinking only with its signature, which a Chat
//! client does not have) and its `audio` reference.
//!
//! Refused (400 naming the field): `n` > 1, `logprobs`, `audio` / audio `modalities`,
//! `web_search_options`, `response_format` other than `text` (structured output needs an
//! Anthropic beta header a translation cannot set), tools other than functions, `input_audio`
//! parts, files other than inline PDFs, image URLs that are neither base64 data nor http(s),
//! tool call `arguments` that are not a JSON object, the deprecated `function` role and
//! `functions`/`function_call`.
//!
//! Answer, Messages → Chat: `text_delta` → `content`, `thinking_delta` → `reasoning_content`
//! (the field DeepSeek-style clients read), each `tool_use` block → a `tool_calls` entry with the
//! next `index`, its `input_json_delta`s as argument fragments; `signature_delta` and redacted
//! thinking are not shown. `stop_reason` → `finish_reason`: `end_turn`, `stop_sequence`,
//! `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use` →
//! `tool_calls`; `refusal` → `content_filter`. Usage: Anthropic's `input_tokens` excludes cache
//! reads and writes, Chat's `prompt_tokens` includes them, so `prompt_tokens` = input + cache
//! read + cache write, `prompt_tokens_details.cached_tokens` = cache read; the usage chunk is
//! written only when the client sent `stream_options.include_usage: true`. `event: error`
//! becomes the Chat error chunk (code = the Anthropic error type), which ends the stream without
//! `[DONE]`. Messages carries no timestamp and translators read no clock, so `created` is 0.

mod answer;
mod request;

use bytes::Bytes;

use super::chat_answer::include_usage;
use super::chat_request::{self, refuse};
use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};

/// `max_tokens` when the client gave none (Anthropic requires one): an answer length every
/// Claude model accepts.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

pub struct ChatViaMessages;

impl Translation for ChatViaMessages {
    fn request(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
        let (request, messages) = chat_request::parse(body)?;
        let upstream = request::build(&request, &messages, target)?;
        let upstream_stream = upstream["stream"].as_bool().unwrap_or(false);
        let body = serde_json::to_vec(&upstream).map_err(|e| refuse("", e.to_string()))?;
        Ok(Translated {
            body: Bytes::from(body),
            upstream_stream,
        })
    }

    fn stream(client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(answer::Stream::new(client_model, false))
    }

    fn stream_for(client_request: &[u8], client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(answer::Stream::new(
            client_model,
            include_usage(client_request),
        ))
    }

    fn json(upstream: &[u8], client_model: &str) -> Result<Bytes, String> {
        answer::completion(upstream, client_model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::golden;

    #[test]
    fn golden_cases() {
        let n = golden::run_all::<ChatViaMessages>("chat_via_messages");
        assert!(n >= 25, "only {n} golden cases");
    }

    #[test]
    fn the_upstream_streams_when_the_client_does() {
        let target = Target {
            upstream_model: "claude".to_owned(),
            codex_backend: false,
        };
        let json = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let streamed = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        assert!(
            !ChatViaMessages::request(json, &target)
                .unwrap()
                .upstream_stream
        );
        assert!(
            ChatViaMessages::request(streamed, &target)
                .unwrap()
                .upstream_stream
        );
    }

    #[test]
    fn an_error_object_is_not_an_answer() {
        let error =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(ChatViaMessages::json(error, "m").is_err());
        assert!(ChatViaMessages::json(b"[]", "m").is_err());
    }
}
