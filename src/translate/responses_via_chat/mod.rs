//! OpenAI Responses client → Chat Completions upstream: Codex CLI (or any Responses client) on
//! an account that speaks only Chat Completions (DeepSeek, vLLM, Ollama, OpenRouter).
//!
//! # Request
//!
//! | Responses | Chat Completions |
//! |---|---|
//! | `model` | the attempt's upstream model |
//! | `instructions` (string) | first message, `role: system` |
//! | `input` as a string | one `user` message |
//! | `message` item, role `user` / `system` | a message of that role |
//! | `message` item, role `developer` | `role: system` (most Chat servers know no `developer`) |
//! | `message` item, role `assistant` | an `assistant` message; its text parts joined |
//! | parts `input_text`, `output_text`, `refusal` | text; text-only content becomes one string (parts joined by `\n`), since DeepSeek takes nothing else |
//! | part `input_image` with `image_url` (https or `data:`), `detail` | `image_url` part, in user messages |
//! | `function_call` items (`call_id`, `name`, `arguments`) | `tool_calls` of one assistant message per turn (consecutive calls, and the assistant text just before them, share it); `id` = `call_id` unchanged; a call with a `namespace` gets its tool's flat name (below) |
//! | `custom_tool_call` (`input`) | a tool call whose `arguments` are `{"input": …}` (see tools) |
//! | `local_shell_call` (`action.command`, `working_directory`, `timeout_ms`) | a call of function `local_shell` with `{command, workdir, timeout_ms}` |
//! | `function_call_output` / `custom_tool_call_output` | `role: tool` message, `tool_call_id` = `call_id`; list outputs: text parts joined by `\n`; images in them go to one `user` message after the run of tool messages (Chat tool messages carry text only) |
//! | `reasoning` items (text of `summary` and `content`) | `reasoning_content` of the next assistant message (DeepSeek requires it back on turns with tool calls, and vLLM, Ollama and OpenRouter take or ignore it; OpenAI's own Chat API refuses unknown message fields, but an OpenAI account speaks Responses natively) |
//! | tools: `function` | `{"type":"function","function":{name, description, parameters, strict}}` |
//! | tools: `custom` (freeform, e.g. Codex's `apply_patch`) | a function with one string argument `input`; the description says so and carries the grammar |
//! | tools: `local_shell` | a function `local_shell` (`command` list, `workdir`, `timeout_ms`) |
//! | tools: `namespace` (Codex's MCP and collaboration tools) with function tools | one function per tool, flat-named `<namespace><name>` when the namespace ends in `_` (Codex's MCP namespaces `mcp__server__`, giving Codex's old flat names), else `<namespace>__<name>`; other tools in a namespace are refused |
//! | `tool_choice` `auto` / `none` / `required` | the same |
//! | `tool_choice` `{type: function or custom, name}` | `{"type":"function","function":{"name"}}` |
//! | `parallel_tool_calls` | the same, only when there are tools (OpenAI refuses it otherwise) |
//! | `max_output_tokens` | `max_tokens` (the name every Chat server takes) |
//! | `temperature`, `top_p` | the same |
//! | `text.format` `json_object` / `json_schema` (`name`, `schema`, `strict`, `description`) | `response_format` |
//! | `reasoning.effort` | `reasoning_effort` |
//! | `stream: true` | `stream: true` with `stream_options.include_usage: true` |
//!
//! **Dropped** (no content, no Chat form): `include`, `prompt_cache_key`, `client_metadata`,
//! `store`, `metadata`, `service_tier`, `truncation`, `top_logprobs`, `max_tool_calls`,
//! `stream_options`, `safety_identifier`, `prompt_cache_retention`, `generate`, `user`,
//! `reasoning.summary` (reasoning text is always passed on), `text.verbosity`, `text.format`
//! `text`, unknown top-level keys; `reasoning` items with only `encrypted_content` (readable
//! only by the OpenAI account that wrote them); the hosted tools `web_search*`, `file_search`,
//! `code_interpreter`, `image_generation`, `computer*`, `mcp` (OpenAI runs them server-side;
//! Codex sends `web_search` on ordinary requests, so refusing it would fail every request: the
//! model works without the capability) and `tool_search` (the search of deferred tools, whose
//! calls have an item type of their own; the tools sent are still all callable).
//!
//! **Refused** (400 naming the field, nothing sent upstream): `previous_response_id`,
//! `conversation`, `prompt` (state stored by OpenAI: dropping it would lose the conversation),
//! `background: true`, `item_reference`, `compaction` and `compaction_trigger` items, other
//! item types, images in system/assistant messages, images by `file_id`, `input_file` and other
//! part types, tools of other types (e.g. the API's own `shell` and `apply_patch` tools,
//! whose calls have their own item types), `tool_choice` forcing a hosted tool or
//! `allowed_tools`, a forced `tool_choice` with no translatable tools, `text.format` types other
//! than `text`, `json_object`, `json_schema`, a non-string `instructions`.
//!
//! # Answer
//!
//! A stream is translated chunk by chunk (`Translator`):
//! - the first chunk → `response.created`, `response.in_progress` (`id` = `resp_` + the
//!   upstream `chatcmpl-…` id, `created_at` = its `created`, `model` = the client's model);
//! - `delta.reasoning_content` (DeepSeek) or `delta.reasoning` (OpenRouter, vLLM, Ollama) → a
//!   `reasoning` item: `output_item.added`, `reasoning_summary_part.added`,
//!   `reasoning_summary_text.delta`…, then `…text.done`, `…part.done`, `output_item.done` with
//!   the text as one `summary_text` (it returns next turn as `reasoning_content`, above);
//! - `delta.content` → a `message` item: `output_item.added`, `content_part.added`,
//!   `output_text.delta`…, `output_text.done`, `content_part.done`, `output_item.done`;
//!   `delta.refusal` → a `refusal` part (`response.refusal.delta` / `.done`);
//! - `delta.tool_calls[]` → one `function_call` item per Chat `index` (`call_id` = the
//!   upstream's `id`, made up from the response id when a server sends none), `output_item.added`,
//!   `function_call_arguments.delta`…, then `function_call_arguments.done` and
//!   `output_item.done` when the answer ends. What a call answers is read from the request's
//!   tools (`names`, through `stream_for` / `json_for`; `stream` and `json` know no tools and
//!   answer plain `function_call` items):
//!   - a call of a freeform (`custom`) tool → a `custom_tool_call` item whose `input` is decoded
//!     from the `{"input": …}` arguments (arguments of another shape are handed over whole),
//!     written when the call ends (`custom_tool_call_input.delta` with the whole input, then
//!     `.done`): a partial JSON string cannot be decoded piecewise;
//!   - a call of a namespaced tool's flat name → a `function_call` with `namespace` and the
//!     tool's own `name` again;
//!   - `local_shell` calls stay `function_call` items (Codex's shell handler takes them);
//! - a new kind of output closes the item before it; `finish_reason` closes all;
//! - `[DONE]` (or the end of the bytes after a `finish_reason`) → `response.completed` (`stop`,
//!   `tool_calls`, other reasons) or `response.incomplete` (`length` → `max_output_tokens`,
//!   `content_filter`), with `output` = the finished items and `usage` = `input_tokens`
//!   (`prompt_tokens`), `input_tokens_details.cached_tokens`, `output_tokens`,
//!   `output_tokens_details.reasoning_tokens`, `total_tokens`, read by
//!   [`crate::protocol::chat::usage_of_json`];
//! - an error chunk (`{"error":{…}}`, `{"error":"…"}`, or older vLLM's top-level
//!   `{"object":"error",…}`; `code`, else `type`, is the code), [`StreamTranslator::fail`], or
//!   the end of the bytes with no `finish_reason` → `response.failed` with `error.code` and
//!   `message`; unfinished items are left unfinished. A stream whose first event is an error
//!   still opens with `response.created` / `response.in_progress`, so it is well formed. (Before
//!   any output item the relay never feeds it one: the Chat watch reads the same shapes,
//!   `protocol::chat::stream_failure`, as a failure of the attempt, which fails over unseen.)
//! - a chunk that is not JSON, or JSON but not of the Chat shape (e.g. `content` as a list):
//!   skipping it could lose output silently, so the translator reports it
//!   ([`StreamTranslator::malformed`]) and takes nothing more; the relay fails the attempt over
//!   before output, or ends the stream with `response.failed` (code `bad_upstream_answer`).
//!
//! Every event carries `sequence_number` (0, 1, …) as the OpenAI API's do. A non-stream
//! `chat.completion` becomes one `response` object with the same items, status and usage.

mod answer;
mod chunk;
mod messages;
mod names;
mod request;
mod stream;

use bytes::Bytes;

use super::{StreamTranslator, Target, Translated, Translation, Untranslatable};
use names::CallNames;

/// Responses client, Chat Completions upstream.
pub struct ResponsesViaChat;

impl Translation for ResponsesViaChat {
    fn request(body: &[u8], target: &Target) -> Result<Translated, Untranslatable> {
        request::translate(body, target)
    }

    fn stream(client_model: &str) -> Box<dyn StreamTranslator> {
        Box::new(stream::Translator::new(client_model, CallNames::default()))
    }

    /// Calls of namespaced tools name their namespace again, which takes the request's tools.
    fn stream_for(client_request: &[u8], client_model: &str) -> Box<dyn StreamTranslator> {
        let names = CallNames::of_request(client_request);
        Box::new(stream::Translator::new(client_model, names))
    }

    fn json(upstream: &[u8], client_model: &str) -> Result<Bytes, String> {
        answer::json_answer(upstream, client_model, &CallNames::default())
    }

    fn json_for(
        upstream: &[u8],
        client_request: &[u8],
        client_model: &str,
    ) -> Result<Bytes, String> {
        answer::json_answer(
            upstream,
            client_model,
            &CallNames::of_request(client_request),
        )
    }
}

#[cfg(test)]
mod tests;
