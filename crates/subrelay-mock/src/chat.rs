//! OpenAI Chat Completions: `POST /v1/chat/completions`, stream or JSON.
//!
//! A stream is `data: {chunk}` lines only (no `event:` lines): a first chunk whose delta carries
//! the role, N content chunks, a chunk with `finish_reason: "stop"`, then, only when the request
//! has `stream_options.include_usage: true`, a chunk with `choices: []` and the usage (every
//! other chunk then carries `usage: null`, as the real API does), and `data: [DONE]`.
//!
//! `fail_before_output` answers a 500 before any chunk, for streams as for JSON. A stream that
//! fails midway (`error_chunk_after`) sends an error chunk, as OpenAI-compatible servers do, and
//! `data: [DONE]`.
//!
//! Body rules (OpenAI-shaped 400s): a non-empty string `model`, a `messages` array, and
//! `stream_options` only together with `stream: true`.

mod wire;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::behavior::Behavior;
use crate::errors::{Dialect, Rejection};
use crate::ids;
use crate::reply::{json_reply, output_text, split_even, to_json, Reply};
use crate::request::missing;
use crate::sse::SseWriter;
use wire::{AssistantMessage, ChatUsage, Choice, Chunk, ChunkChoice, Completion, Delta};

/// What an accepted body asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Ask {
    /// The `model` as sent, options included.
    pub model: String,
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(default, borrow)]
    model: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream: Option<&'a RawValue>,
    #[serde(default, borrow)]
    stream_options: Option<&'a RawValue>,
    #[serde(default, borrow)]
    messages: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Checks a body and extracts what the answer needs.
pub(crate) fn read(body: &[u8]) -> Result<Ask, Rejection> {
    let fields: Fields<'_> = serde_json::from_slice(body).map_err(|err| {
        Rejection::invalid(
            format!("We could not parse the JSON body of your request: {err}"),
            Some("invalid_json"),
            None,
        )
    })?;
    let model = match fields
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(model)) if !model.is_empty() => model,
        _ => return Err(missing("model", "a non-empty string")),
    };
    if !fields
        .messages
        .is_some_and(|raw| raw.get().starts_with('['))
    {
        return Err(missing("messages", "an array of messages"));
    }
    let stream = fields.stream.is_some_and(|raw| raw.get() == "true");
    let include_usage = match fields.stream_options {
        None => false,
        Some(_) if !stream => {
            return Err(Rejection::invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled."
                    .to_owned(),
                None,
                Some("stream_options"),
            ))
        }
        Some(raw) => serde_json::from_str::<StreamOptions>(raw.get())
            .map_err(|err| {
                Rejection::invalid(
                    format!("Invalid 'stream_options': {err}"),
                    Some("invalid_type"),
                    Some("stream_options"),
                )
            })?
            .include_usage
            .unwrap_or(false),
    };
    Ok(Ask {
        model,
        stream,
        include_usage,
    })
}

/// The answer a behaviour asks for.
pub(crate) fn answer(
    ask: &Ask,
    model: &str,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    if behavior.fail_before_output {
        return Dialect::OpenAi.failure();
    }
    let id = ids::fresh("chatcmpl-");
    let created = ids::now_unix();
    if ask.stream {
        stream(&id, created, model, ask.include_usage, behavior)
    } else {
        completion(&id, created, model, behavior)
    }
}

/// The non-stream answer: one `chat.completion` object.
fn completion(
    id: &str,
    created: u64,
    model: &str,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let text = output_text(behavior);
    let completion = Completion {
        id,
        object: "chat.completion",
        created,
        model,
        choices: [Choice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content: &text,
                refusal: None,
                annotations: [],
            },
            logprobs: None,
            finish_reason: "stop",
        }],
        usage: ChatUsage::from(behavior.usage_or_default()),
        service_tier: "default",
        system_fingerprint: None,
    };
    Ok(json_reply(
        to_json(&completion, 768 + text.len())?,
        behavior,
    ))
}

/// The stream answer.
fn stream(
    id: &str,
    created: u64,
    model: &str,
    include_usage: bool,
    behavior: &Behavior,
) -> Result<Reply, serde_json::Error> {
    let deltas = behavior.delta_events();
    let text = output_text(behavior);
    let mut sse = SseWriter::with_capacity(deltas + 4, 512 + (deltas + 3) * 256 + text.len());
    let head = ChunkHead {
        id,
        created,
        model,
        include_usage,
    };
    let first = [ChunkChoice::new(
        Delta {
            role: Some("assistant"),
            content: Some(""),
        },
        None,
    )];
    // Chunks written so far; at `error_chunk_after` the error chunk takes the rest's place.
    let mut written = 0;
    let mut fails_here = || {
        let fails = behavior.error_chunk_after == Some(written);
        written += 1;
        fails
    };
    if fails_here() {
        return failed(sse, behavior);
    }
    sse.data(&head.chunk(&first))?;
    for piece in split_even(&text, deltas) {
        if fails_here() {
            return failed(sse, behavior);
        }
        let delta = [ChunkChoice::new(
            Delta {
                role: None,
                content: Some(piece),
            },
            None,
        )];
        sse.data(&head.chunk(&delta))?;
    }
    if fails_here() {
        return failed(sse, behavior);
    }
    let finish = [ChunkChoice::new(
        Delta {
            role: None,
            content: None,
        },
        Some("stop"),
    )];
    sse.data(&head.chunk(&finish))?;
    if include_usage {
        let mut last = head.chunk(&[]);
        last.usage = Some(Some(ChatUsage::from(behavior.usage_or_default())));
        sse.data(&last)?;
    }
    sse.done();
    Ok(sse.into_reply(behavior))
}

/// The stream so far, then the error chunk of [`Behavior::error_chunk_after`] and `[DONE]`.
fn failed(mut sse: SseWriter, behavior: &Behavior) -> Result<Reply, serde_json::Error> {
    if behavior.legacy_error_chunk {
        sse.data(&serde_json::json!({
            "object": "error",
            "message": "The mock upstream failed while generating (legacy vLLM error object).",
            "type": "InternalServerError",
            "param": null,
            "code": 500,
        }))?;
    } else {
        sse.data(&serde_json::json!({
            "error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": null,
                "code": null,
            }
        }))?;
    }
    sse.done();
    Ok(sse.into_reply(behavior))
}

/// What every chunk of one stream shares.
struct ChunkHead<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    include_usage: bool,
}

impl<'a> ChunkHead<'a> {
    /// A chunk with these choices; `usage: null` when usage was asked for, else no `usage`.
    fn chunk<'c>(&self, choices: &'c [ChunkChoice<'c>]) -> Chunk<'c>
    where
        'a: 'c,
    {
        Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            service_tier: "default",
            system_fingerprint: None,
            choices,
            usage: self.include_usage.then_some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::frames;

    #[tokio::test]
    async fn ready_chunks_leave_in_one_write_and_paced_ones_one_by_one() {
        let together = stream("c", 1, "m", true, &Behavior::default()).unwrap();
        assert_eq!(frames(together).await.len(), 1);
        let paced = Behavior {
            event_interval: std::time::Duration::from_millis(1),
            ..Behavior::default()
        };
        let chunks = frames(stream("c", 1, "m", false, &paced).unwrap()).await;
        assert_eq!(chunks.len(), 6, "role, 3 content, finish, [DONE]");
        assert!(chunks
            .iter()
            .all(|c| c.starts_with(b"data: ") && c.ends_with(b"\n\n")));
    }

    #[tokio::test]
    async fn a_stream_failing_midway_sends_an_error_chunk_and_done() {
        let at_two = Behavior {
            error_chunk_after: Some(2),
            event_interval: std::time::Duration::from_millis(1),
            ..Behavior::default()
        };
        let chunks = frames(stream("c", 1, "m", false, &at_two).unwrap()).await;
        assert_eq!(chunks.len(), 4, "role, 1 content, error, [DONE]");
        assert!(chunks[2].starts_with(b"data: {\"error\":{"));
        assert_eq!(chunks[3], &b"data: [DONE]\n\n"[..]);
        let legacy = Behavior {
            error_chunk_after: Some(0),
            legacy_error_chunk: true,
            ..Behavior::default()
        };
        let all = frames(stream("c", 1, "m", false, &legacy).unwrap())
            .await
            .concat();
        let all = String::from_utf8(all).unwrap();
        assert!(all.contains(r#""object":"error""#), "{all}");
        assert!(!all.contains("assistant"), "no chunk before it: {all}");
    }

    #[test]
    fn stream_options_need_stream() {
        let ok = read(
            br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(ok.stream && ok.include_usage);
        let err = read(br#"{"model":"m","messages":[],"stream_options":{"include_usage":true}}"#)
            .unwrap_err();
        assert_eq!(err.param, Some("stream_options"));
        let err = read(br#"{"model":"m"}"#).unwrap_err();
        assert_eq!(err.param, Some("messages"));
        let plain = read(br#"{"model":"m","messages":[]}"#).unwrap();
        assert!(!plain.stream && !plain.include_usage);
    }
}
