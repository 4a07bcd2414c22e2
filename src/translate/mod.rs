//! Translation between client protocols and upstream protocols (issue 16): a client speaking one
//! API is served by an account that speaks another. Pure, like [`crate::protocol`]: bytes in,
//! bytes out, no I/O, no clock.
//!
//! One module per direction, named `<client>_via_<upstream>`:
//!
//! | module | client sends | account speaks |
//! |---|---|---|
//! | `messages_via_responses` | Anthropic Messages | OpenAI Responses (Claude Code on a ChatGPT sign-in) |
//! | `chat_via_responses` | Chat Completions | OpenAI Responses (Chat tools on a ChatGPT sign-in) |
//! | `responses_via_chat` | OpenAI Responses | Chat Completions (Codex CLI on DeepSeek, vLLM, …) |
//! | `chat_via_messages` | Chat Completions | Anthropic Messages (OpenAI SDKs on Claude accounts) |
//!
//! Each direction has three parts, and the relay needs nothing else from it:
//! - [`Translation::request`]: the client's body → the upstream's body, or [`Untranslatable`]
//!   (a 400 in the client's shape naming the field) when the target has no form for some content.
//!   Content is never dropped silently; fields a target cannot take and that carry no content
//!   (hints, metadata) are dropped, and each direction's module doc lists them.
//! - [`Translation::stream`]: a [`StreamTranslator`], a state machine fed the upstream's SSE events
//!   one by one, writing whole client events.
//! - [`Translation::json`]: a whole upstream JSON answer → the client's JSON answer.
//!
//! The relay keeps its guarantees around these: it classifies and meters the *upstream* events
//! with the upstream protocol's `StreamWatch` (a failure before output, usage in upstream
//! tokens, the end), holds the translator's output back until [`StreamTranslator::has_output`]
//! says real output began (so a failure before it fails over unseen, and
//! `gateway.first_token_timeout` waits for it), and forwards it in the upstream's place.
//!
//! Golden cases for every direction are files under `tests/translate/<module>/` (see
//! [`golden`]), run by each module's unit tests.

use bytes::{Bytes, BytesMut};

use crate::protocol::responses;
use crate::protocol::sse::SseEvent;

mod chat_answer;
mod chat_request;
pub mod chat_via_messages;
pub mod chat_via_responses;
pub mod count_tokens;
#[cfg(test)]
pub mod golden;
mod json_text;
pub mod messages_via_responses;
mod quick_delta;
pub mod responses_via_chat;

/// The client's request cannot be expressed for the upstream. Answered with 400 in the client's
/// error shape; nothing is sent upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable {
    /// The offending field as a JSON path in the client's body, e.g. `messages[2].content[0]`.
    pub field: String,
    /// Why, for the client: names what the target API cannot take.
    pub message: String,
}

impl std::fmt::Display for Untranslatable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What the relay tells a translation about the attempt it builds a body for.
#[derive(Debug, Clone)]
pub struct Target {
    /// The model name to send upstream (after the group's and the account's `model_map`).
    pub upstream_model: String,
    /// The upstream is the Codex backend of a ChatGPT sign-in: it takes only `stream: true`,
    /// `store: false`, a string `instructions` and a list `input` (PROTOCOLS.md). The relay's
    /// usual Codex normalisation still runs on the translated body afterwards.
    pub codex_backend: bool,
}

/// A translated request body.
#[derive(Debug, Clone)]
pub struct Translated {
    pub body: Bytes,
    /// Whether the upstream request streams (the Codex backend always does; otherwise the
    /// client's choice).
    pub upstream_stream: bool,
}

/// Why an upstream event's data, which failed to parse as the translator's reading of it, makes
/// the stream malformed: always when it is not JSON at all; when it is JSON of another shape,
/// only for an event the translator acts on (`acted_on`), since an event it ignores loses
/// nothing. `None`: the event may be skipped (also an event with no data).
pub(crate) fn unreadable(
    name: &[u8],
    data: &[u8],
    error: &serde_json::Error,
    acted_on: bool,
) -> Option<String> {
    if data.trim_ascii().is_empty() {
        return None;
    }
    let what = match name {
        b"" => "an event".to_owned(),
        name => format!("a `{}` event", String::from_utf8_lossy(name)),
    };
    match error.classify() {
        serde_json::error::Category::Data if !acted_on => None,
        serde_json::error::Category::Data => Some(format!(
            "the upstream sent {what} of an unknown shape: {error}"
        )),
        _ => Some(format!(
            "the upstream sent {what} whose data is not JSON: {error}"
        )),
    }
}

/// One direction of translation.
pub trait Translation {
    /// `body`: the client's request body as received (already size-checked and inflated).
    fn request(body: &[u8], target: &Target) -> Result<Translated, Untranslatable>;

    /// A translator for one upstream stream. `client_model`: the model name the client asked
    /// for, reported back where the client's protocol carries one.
    fn stream(client_model: &str) -> Box<dyn StreamTranslator>;

    /// The translator for the stream answering `client_request` (the client's body as received);
    /// the relay calls this one. Directions whose client stream depends on the request override
    /// it (Chat's `stream_options.include_usage` decides whether a usage chunk is written); the
    /// others get [`Translation::stream`].
    fn stream_for(client_request: &[u8], client_model: &str) -> Box<dyn StreamTranslator> {
        let _ = client_request;
        Self::stream(client_model)
    }

    /// A whole upstream JSON answer → the client's JSON answer. `Err`: the upstream answer is
    /// not what its protocol promises (the relay treats it as a bad upstream answer).
    fn json(upstream: &[u8], client_model: &str) -> Result<Bytes, String>;

    /// [`Translation::json`] for the answer to `client_request`, as [`Translation::stream_for`]
    /// (Messages' `stop_sequences`, which a Responses upstream cannot apply, are applied to the
    /// answer by the translator); the relay calls this one.
    fn json_for(
        upstream: &[u8],
        client_request: &[u8],
        client_model: &str,
    ) -> Result<Bytes, String> {
        let _ = client_request;
        Self::json(upstream, client_model)
    }
}

/// Turns one upstream stream into the client's stream, event by event.
///
/// Output is whole SSE events in the client's protocol (`event: …\ndata: …\n\n`, or
/// `data: …\n\n` for Chat), appended to `out`. An upstream event may yield none, one or several.
pub trait StreamTranslator: Send {
    /// One upstream event.
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut);

    /// One upstream event, with its terminal reading when the relay's watch of a Responses
    /// upstream made one (`read`): a translator from Responses takes it instead of reading the
    /// event again. Others translate the event alone.
    fn event_read(
        &mut self,
        event: &SseEvent<'_>,
        read: Option<responses::TerminalRead>,
        out: &mut BytesMut,
    ) {
        let _ = read;
        self.event(event, out);
    }

    /// Whether what was written so far holds real output (text, reasoning, a tool call, a
    /// content block), not only the client protocol's preamble (`message_start`,
    /// `response.created`). The relay holds everything back until this is true, so an
    /// upstream failure before it still fails over unseen, and `gateway.first_token_timeout`
    /// waits for it.
    fn has_output(&self) -> bool;

    /// The upstream sent an event this translator cannot accept: data that is not JSON, or JSON
    /// of a shape the translator has no reading for where the event may carry output (skipping
    /// it could lose content silently). The translator wrote nothing for that event and takes no
    /// more; this says what was wrong (for the log and the client's failure message). The relay
    /// treats it as a bad upstream answer: another account is tried while the client has no
    /// output yet, and after output the stream ends with [`StreamTranslator::fail`].
    fn malformed(&self) -> Option<&str>;

    /// The upstream stream ended (its terminal event was seen, or the bytes simply stopped).
    /// Writes whatever closes the client's stream properly (e.g. `message_stop`,
    /// `data: [DONE]`) if it is not closed yet.
    fn finish(&mut self, out: &mut BytesMut);

    /// The stream cannot go on after output (upstream failure mid-stream, limits): writes the
    /// client protocol's in-stream failure, closing any open block first where the protocol
    /// needs that. `code` and `message` are safe to show the client.
    fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::chat_via_messages::ChatViaMessages;
    use super::chat_via_responses::ChatViaResponses;
    use super::messages_via_responses::MessagesViaResponses;
    use super::responses_via_chat::ResponsesViaChat;
    use super::*;
    use crate::protocol::sse::SseScanner;

    fn feed(translator: &mut dyn StreamTranslator, frame: &str) -> BytesMut {
        let mut out = BytesMut::new();
        SseScanner::new().feed(frame.as_bytes(), |e| translator.event(&e, &mut out));
        out
    }

    const RESPONSES_DELTA: &str = "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n";

    /// Each direction with an upstream event cut in half (not JSON), then a sound one.
    fn cut_streams() -> Vec<(Box<dyn StreamTranslator>, &'static str, &'static str)> {
        vec![
            (
                MessagesViaResponses::stream("m"),
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.de\n\n",
                RESPONSES_DELTA,
            ),
            (
                ChatViaResponses::stream("m"),
                "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.de\n\n",
                RESPONSES_DELTA,
            ),
            (
                ChatViaMessages::stream("m"),
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"ind\n\n",
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n",
            ),
            (
                ResponsesViaChat::stream("m"),
                "data: {\"id\":\"chatcmpl-1\",\"choi\n\n",
                "data: {\"id\":\"chatcmpl-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n",
            ),
        ]
    }

    #[test]
    fn every_translator_reports_data_that_is_not_json_and_takes_nothing_more() {
        for (mut translator, cut, sound) in cut_streams() {
            assert!(translator.malformed().is_none(), "{cut}");
            let out = feed(translator.as_mut(), cut);
            assert!(out.is_empty(), "nothing written for {cut}: {out:?}");
            let why = translator.malformed().unwrap();
            assert!(why.contains("not JSON"), "{why}");
            let after = feed(translator.as_mut(), sound);
            assert!(after.is_empty(), "nothing after it: {after:?}");
        }
    }

    /// Control: the same sound events are translated by a fresh translator.
    #[test]
    fn the_sound_events_alone_are_translated() {
        for (mut translator, _, sound) in cut_streams() {
            let out = feed(translator.as_mut(), sound);
            assert!(!out.is_empty(), "{sound}");
            assert!(translator.malformed().is_none());
        }
    }

    #[test]
    fn an_event_a_translator_ignores_may_have_any_shape_but_must_be_json() {
        let odd = "event: response.future_event\ndata: {\"type\":\"response.future_event\",\"delta\":{\"x\":1}}\n\n";
        let mut translator = MessagesViaResponses::stream("m");
        feed(translator.as_mut(), odd);
        assert!(translator.malformed().is_none());
        let mut translator = ChatViaMessages::stream("m");
        feed(
            translator.as_mut(),
            "event: future_event\ndata: {\"type\":\"future_event\",\"index\":\"x\"}\n\n",
        );
        assert!(translator.malformed().is_none());
        let mut translator = MessagesViaResponses::stream("m");
        feed(
            translator.as_mut(),
            "event: response.future_event\ndata: not json\n\n",
        );
        assert!(translator.malformed().is_some());
    }
}
