//! A Chat Completions client served by an OpenAI Responses upstream (Chat tools on a ChatGPT
//! sign-in, or on an OpenAI API key through `/v1/responses`).
//!
//! Request, Chat → Responses:
//!
//! | Chat | Responses |
//! |---|---|
//! | `model` | the target's upstream model |
//! | `system` / `developer` message | `message` input item of that role, in place; on the Codex backend all of them go, joined by blank lines and in order, to `instructions` (a default when there are none) |
//! | `user` message: string, `text` parts | `message` with `input_text` parts |
//! | `user` `image_url` part (data or http URL, `detail`) | `input_image` (`image_url`, `detail`) |
//! | `user` `file` part (`file_data`/`file_id`, `filename`) | `input_file` |
//! | `assistant` message: string, `text` and `refusal` parts | `message` with `output_text` / `refusal` parts |
//! | `assistant` `tool_calls[]` (function) | `function_call` items (`call_id` = the Chat id, unchanged) |
//! | `tool` message | `function_call_output` (`call_id` = `tool_call_id`, text output) |
//! | `tools[]` (function) | function tools (`name`, `description`, `parameters`, `strict`) |
//! | `tool_choice` `auto`/`none`/`required`/named | same; named → `{"type":"function","name"}` |
//! | `parallel_tool_calls` | same |
//! | `response_format` `text`/`json_object`/`json_schema` | `text.format` (`json_schema` flattened: `name`, `schema`, `strict`, `description`) |
//! | `verbosity` | `text.verbosity` |
//! | `reasoning_effort` | `reasoning.effort` |
//! | `max_completion_tokens`, else `max_tokens` | `max_output_tokens` |
//! | `store` | same; absent → `false` (Chat stores nothing unless asked, Responses stores by default) |
//! | `temperature`, `top_p`, `user`, `metadata`, `service_tier`, `safety_identifier`, `prompt_cache_key` | same |
//! | `stream` | same (always `true` on the Codex backend) |
//!
//! Ids: Chat tool call ids and Responses `call_id`s are both free strings, so they pass through
//! unchanged both ways: the id a client receives is the upstream's `call_id`, and it comes back
//! as `tool_call_id`.
//!
//! Dropped (hints without content): `stream_options` (the usage chunk is decided here, see
//! below), `seed`, `frequency_penalty`, `presence_penalty`, `logit_bias`, `top_logprobs` without
//! `logprobs`, `prediction`, message `name`s, and an assistant message's `audio` reference. On the
//! Codex backend also `max_output_tokens` and `temperature` (the backend answers 400
//! "Unsupported parameter" to them, as several gateways in front of it report), and `top_p`,
//! `user`, `metadata`, `service_tier` and `safety_identifier`, which Codex CLI never sends there
//! (dropped so an unknown-parameter 400 cannot fail the request; not checked against the backend
//! one by one); `store` is `false` there.
//!
//! Refused (400 naming the field): `n` > 1, `logprobs`, `audio` / audio `modalities`,
//! `web_search_options`, `stop` (Responses has no stop sequences), tools other than functions,
//! `allowed_tools` / custom tool choices, `input_audio` parts, the deprecated `function` role and
//! `function_call`/`functions`, content of an unknown shape.
//!
//! Answer, Responses → Chat: text deltas → `content`, refusal deltas → `refusal`, reasoning
//! summary (and raw reasoning text) deltas → `reasoning_content` (the field DeepSeek-style
//! clients read; OpenAI's own Chat has none), each `function_call` item → a `tool_calls` entry
//! with the next `index`, its argument deltas after it. Finish reason: `tool_calls` when a call
//! was made, `length` for `incomplete_details.reason: max_output_tokens`, `content_filter` for
//! `content_filter`, else `stop`. Usage (`input_tokens` → `prompt_tokens`, cached and reasoning
//! details) is written as the last chunk only when the client sent
//! `stream_options.include_usage: true` (hence [`Translation::stream_for`]); the JSON answer
//! always carries it. `response.failed` and `error` become the Chat error chunk, which ends the
//! stream without `[DONE]`, as an OpenAI-compatible server ends a failed stream. Encrypted
//! reasoning is not requested: a Chat client has nowhere to carry it to the next turn.

mod answer;
mod request;

use bytes::Bytes;

use super::chat_answer::include_usage;
use super::chat_request::{self, refuse};
use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};

pub struct ChatViaResponses;

impl Translation for ChatViaResponses {
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
    use bytes::BytesMut;

    use super::*;
    use crate::translate::golden;

    #[test]
    fn golden_cases() {
        let n = golden::run_all::<ChatViaResponses>("chat_via_responses");
        assert!(n >= 25, "only {n} golden cases");
    }

    fn target(codex_backend: bool) -> Target {
        Target {
            upstream_model: "gpt-5.1".to_owned(),
            codex_backend,
        }
    }

    #[test]
    fn the_upstream_streams_when_the_client_does_and_always_on_the_codex_backend() {
        let json = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
        let streamed = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#;
        let plain = ChatViaResponses::request(json, &target(false)).unwrap();
        assert!(!plain.upstream_stream);
        assert!(
            ChatViaResponses::request(streamed, &target(false))
                .unwrap()
                .upstream_stream
        );
        assert!(
            ChatViaResponses::request(json, &target(true))
                .unwrap()
                .upstream_stream
        );
    }

    /// One stream with usage in its terminal event, run through `translator`.
    fn usage_chunks(mut translator: Box<dyn StreamTranslator>) -> usize {
        let stream = concat!(
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"hi\"}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"status\":\"completed\",",
            "\"output\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
        );
        let mut out = BytesMut::new();
        crate::protocol::sse::SseScanner::new()
            .feed(stream.as_bytes(), |e| translator.event(&e, &mut out));
        translator.finish(&mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
        text.matches("\"usage\"").count()
    }

    #[test]
    fn the_usage_chunk_is_written_only_when_the_client_asked() {
        assert_eq!(usage_chunks(ChatViaResponses::stream("m")), 0);
        let asked = br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(usage_chunks(ChatViaResponses::stream_for(asked, "m")), 1);
        let not_asked = br#"{"model":"m","stream":true,"stream_options":{"include_usage":false}}"#;
        assert_eq!(
            usage_chunks(ChatViaResponses::stream_for(not_asked, "m")),
            0
        );
    }

    #[test]
    fn a_failed_json_answer_is_an_upstream_error() {
        let failed = br#"{"id":"r","status":"failed","output":[],"error":{"code":"server_error","message":"boom"}}"#;
        let why = ChatViaResponses::json(failed, "m").unwrap_err();
        assert!(
            why.contains("server_error") && why.contains("boom"),
            "{why}"
        );
        assert!(ChatViaResponses::json(b"[]", "m").is_err());
    }
}
