//! A Responses event stream → a Messages event stream.
//!
//! Responses streams output items one after another, each with its own events; Messages has
//! numbered content blocks of which one is open at a time. The translator keeps that one open
//! block and opens the next when an event belongs to another item or part.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use serde_json::{json, Value};

use super::stop::StopSequences;
use super::{error_type, message_id, reasoning_signature, stop_reason, Ending, MessagesUsage};
use crate::protocol::anthropic;
use crate::protocol::responses::{try_read_terminal, TerminalRead};
use crate::protocol::sse::SseEvent;
use crate::protocol::TokenUsage;
use crate::translate::quick_delta::{quick_delta, string_end};
use crate::translate::{unreadable, StreamTranslator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Thinking,
    ToolUse,
}

/// The content block the client has open.
struct Open {
    index: u64,
    kind: Kind,
    /// The upstream output item it belongs to.
    output_index: u64,
    /// Text: the content part; thinking: the last summary part written.
    part: u64,
    /// Tool use: some arguments were written already.
    wrote: bool,
}

pub struct Translator {
    client_model: String,
    response_id: Option<String>,
    started: bool,
    ended: bool,
    next_index: u64,
    open: Option<Open>,
    /// Output items that got a content block (so `output_item.done` does not repeat them).
    shown: HashSet<u64>,
    tool_use: bool,
    refusal: bool,
    stops: StopSequences,
    /// The stop sequence that ended the shown output; later upstream output is not shown.
    stopped: Option<String>,
    /// An upstream event could not be read ([`StreamTranslator::malformed`]).
    malformed: Option<String>,
}

impl Translator {
    pub fn with_stops(client_model: &str, stops: StopSequences) -> Self {
        Self {
            stops,
            ..Self::new(client_model)
        }
    }

    pub fn new(client_model: &str) -> Self {
        Self {
            client_model: client_model.to_owned(),
            response_id: None,
            started: false,
            ended: false,
            next_index: 0,
            open: None,
            shown: HashSet::new(),
            tool_use: false,
            refusal: false,
            stops: StopSequences::default(),
            stopped: None,
            malformed: None,
        }
    }
}

/// The fields of the Responses events this translator reads; each event has some of them.
/// `delta`, nearly every event's one field of note, borrows from the event when it has no
/// escapes (no allocation per delta).
#[derive(Deserialize, Default)]
#[serde(default)]
struct Event<'a> {
    output_index: u64,
    content_index: u64,
    summary_index: u64,
    #[serde(borrow)]
    delta: Option<Cow<'a, str>>,
    item: Option<Item>,
    part: Option<Part>,
    /// The preamble's response: its fields but the id are skipped, not kept.
    response: Option<Response>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Item {
    #[serde(rename = "type")]
    pub kind: String,
    pub call_id: Option<String>,
    pub name: Option<String>,
    pub arguments: Option<String>,
    pub encrypted_content: Option<String>,
    #[serde(deserialize_with = "null_as_empty")]
    pub summary: Vec<Part>,
    #[serde(deserialize_with = "null_as_empty")]
    pub content: Vec<Part>,
}

/// Some servers write `null` for an empty list; it reads as empty rather than failing the item.
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Part>, D::Error> {
    Ok(Option::<Vec<Part>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub refusal: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Response {
    id: Option<String>,
}

/// A JSON string, escaped, straight into the output. A text with nothing to escape (no `"`,
/// `\\` or control character: nearly every delta) is copied between quotes, found eight bytes
/// at a time, instead of escaped byte by byte.
fn put_json_str(out: &mut BytesMut, text: &str) {
    if string_end(text.as_bytes()).is_none() {
        out.reserve(text.len() + 2);
        out.put_u8(b'"');
        out.put_slice(text.as_bytes());
        out.put_u8(b'"');
        return;
    }
    // Writing into memory cannot fail.
    let _ = serde_json::to_writer((&mut *out).writer(), text);
}

fn put_u64(out: &mut BytesMut, n: u64) {
    // A block index, nearly always one digit.
    if let Ok(digit) = u8::try_from(n) {
        if digit < 10 {
            out.put_u8(b'0' + digit);
            return;
        }
    }
    // Writing into memory cannot fail.
    let _ = write!(out, "{n}");
}

fn write(out: &mut BytesMut, name: &str, data: &Value) {
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(data.to_string().as_bytes());
    out.put_slice(b"\n\n");
}

impl Translator {
    fn start(&mut self, out: &mut BytesMut) {
        if self.started {
            return;
        }
        self.started = true;
        // Written directly (once per stream, but a JSON value built and printed cost more
        // than the rest of the stream's events together).
        out.put_slice(
            b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":",
        );
        put_json_str(out, &message_id(self.response_id.as_deref()));
        out.put_slice(b",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        put_json_str(out, &self.client_model);
        // The upstream tells usage only at the end: message_delta carries it.
        out.put_slice(
            b",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\
              \"usage\":{\"input_tokens\":0,\"output_tokens\":0}}}\n\n",
        );
    }

    fn close(&mut self, out: &mut BytesMut) {
        if let Some(open) = self.open.take() {
            if open.kind == Kind::Text {
                let held = self.stops.flush();
                if !held.is_empty() {
                    Self::string_delta(out, open.index, "text_delta", "text", &held);
                }
            }
            out.put_slice(
                b"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":",
            );
            put_u64(out, open.index);
            out.put_slice(b"}\n\n");
        }
    }

    /// Opens a block for `output_index`/`part` unless that block is the open one; returns its
    /// index.
    fn open<'a>(
        &mut self,
        out: &mut BytesMut,
        kind: Kind,
        output_index: u64,
        part: u64,
        // A tool call's id and name, read only when its block opens.
        tool: impl FnOnce() -> (&'a str, &'a str),
    ) -> u64 {
        if let Some(open) = &self.open {
            let same_part = kind == Kind::Thinking || open.part == part;
            if open.kind == kind && open.output_index == output_index && same_part {
                return open.index;
            }
        }
        self.start(out);
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.shown.insert(output_index);
        // Written directly, as every event a text stream has (no `Value`).
        out.put_slice(
            b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":",
        );
        put_u64(out, index);
        match kind {
            Kind::Text => {
                out.put_slice(b",\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
            }
            Kind::Thinking => {
                out.put_slice(b",\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n")
            }
            Kind::ToolUse => {
                let (id, name) = tool();
                out.put_slice(b",\"content_block\":{\"type\":\"tool_use\",\"id\":");
                put_json_str(out, id);
                out.put_slice(b",\"name\":");
                put_json_str(out, name);
                out.put_slice(b",\"input\":{}}}\n\n");
            }
        }
        self.open = Some(Open {
            index,
            kind,
            output_index,
            part,
            wrote: false,
        });
        index
    }

    fn delta(out: &mut BytesMut, index: u64, delta: Value) {
        write(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    /// A `content_block_delta` carrying one string, written without building a JSON value:
    /// nearly every upstream event becomes one, so this is the translator's hot path.
    fn string_delta(out: &mut BytesMut, index: u64, kind: &str, field: &str, text: &str) {
        out.put_slice(
            b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
        );
        put_u64(out, index);
        out.put_slice(b",\"delta\":{\"type\":\"");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\",\"");
        out.put_slice(field.as_bytes());
        out.put_slice(b"\":");
        put_json_str(out, text);
        out.put_slice(b"}}\n\n");
    }

    fn text(&mut self, out: &mut BytesMut, output_index: u64, part: u64, text: &str) {
        let index = self.open(out, Kind::Text, output_index, part, || ("", ""));
        if self.stops.is_empty() {
            if !text.is_empty() {
                Self::string_delta(out, index, "text_delta", "text", text);
            }
            return;
        }
        let (shown, stop) = self.stops.feed(text);
        if !shown.is_empty() {
            Self::string_delta(out, index, "text_delta", "text", &shown);
        }
        if stop.is_some() {
            self.stopped = stop;
            self.close(out);
        }
    }

    /// Summary text of a reasoning item; summary parts after the first are set apart by a
    /// blank line within the one thinking block.
    fn thinking(&mut self, out: &mut BytesMut, output_index: u64, summary_part: u64, text: &str) {
        let index = self.open(out, Kind::Thinking, output_index, summary_part, || ("", ""));
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let mut text = text.to_owned();
        if open.part != summary_part {
            open.part = summary_part;
            text.insert_str(0, "\n\n");
        }
        if !text.is_empty() {
            Self::string_delta(out, index, "thinking_delta", "thinking", &text);
        }
    }

    fn tool_use(&mut self, out: &mut BytesMut, output_index: u64, item: &Item) -> u64 {
        self.tool_use = true;
        self.open(out, Kind::ToolUse, output_index, 0, || {
            (
                item.call_id.as_deref().unwrap_or_default(),
                item.name.as_deref().unwrap_or_default(),
            )
        })
    }

    fn arguments(&mut self, out: &mut BytesMut, index: u64, arguments: &str) {
        if let Some(open) = self.open.as_mut() {
            open.wrote = true;
        }
        if !arguments.is_empty() {
            Self::string_delta(out, index, "input_json_delta", "partial_json", arguments);
        }
    }

    fn is_open(&self, kind: Kind, output_index: u64) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| o.kind == kind && o.output_index == output_index)
    }

    /// An item is complete: close its block, writing what its earlier events did not show
    /// (arguments sent only whole, the reasoning's encrypted content, items sent only whole).
    fn item_done(&mut self, out: &mut BytesMut, output_index: u64, item: &Item) {
        match item.kind.as_str() {
            "function_call" => {
                if !self.is_open(Kind::ToolUse, output_index) {
                    if self.shown.contains(&output_index) {
                        return;
                    }
                    self.tool_use(out, output_index, item);
                }
                let wrote = self.open.as_ref().is_some_and(|o| o.wrote);
                let index = self.open.as_ref().map_or(0, |o| o.index);
                if !wrote {
                    self.arguments(out, index, item.arguments.as_deref().unwrap_or_default());
                }
                self.close(out);
            }
            "reasoning" => {
                let signature = item.encrypted_content.as_deref().map(reasoning_signature);
                if !self.is_open(Kind::Thinking, output_index) {
                    if self.shown.contains(&output_index) {
                        return;
                    }
                    let summary: Vec<&str> = item
                        .summary
                        .iter()
                        .filter_map(|p| p.text.as_deref())
                        .collect();
                    if summary.is_empty() && signature.is_none() {
                        return;
                    }
                    self.thinking(out, output_index, 0, &summary.join("\n\n"));
                }
                if let (Some(signature), Some(open)) = (signature, &self.open) {
                    Self::delta(
                        out,
                        open.index,
                        json!({"type": "signature_delta", "signature": signature}),
                    );
                }
                self.close(out);
            }
            "message" => {
                if !self.shown.contains(&output_index) {
                    for (part, content) in item.content.iter().enumerate() {
                        if self.stopped.is_some() {
                            return;
                        }
                        match content.kind.as_str() {
                            "output_text" => {
                                let text = content.text.as_deref().unwrap_or_default();
                                self.text(out, output_index, part as u64, text);
                            }
                            "refusal" => {
                                self.refusal = true;
                                let text = content.refusal.as_deref().unwrap_or_default();
                                self.text(out, output_index, part as u64, text);
                            }
                            _ => {}
                        }
                    }
                }
                if self
                    .open
                    .as_ref()
                    .is_some_and(|o| o.output_index == output_index)
                {
                    self.close(out);
                }
            }
            _ => {}
        }
    }

    fn terminal(&mut self, out: &mut BytesMut, usage: Option<TokenUsage>, ending: Ending) {
        self.start(out);
        self.close(out);
        let reason = match self.stopped {
            Some(_) => "stop_sequence",
            None => stop_reason(ending, self.tool_use, self.refusal),
        };
        // Written directly, as `message_start` is (no `Value`).
        out.put_slice(
            b"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":",
        );
        put_json_str(out, reason);
        out.put_slice(b",\"stop_sequence\":");
        match &self.stopped {
            Some(stop) => put_json_str(out, stop),
            None => out.put_slice(b"null"),
        }
        out.put_slice(b"},\"usage\":");
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer(
            (&mut *out).writer(),
            &MessagesUsage::from(&usage.unwrap_or_default()),
        );
        out.put_slice(b"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
        self.ended = true;
    }

    fn error(&mut self, out: &mut BytesMut, code: Option<&str>, message: &str) {
        out.put_slice(&anthropic::error_event(error_type(code), message));
        self.ended = true;
    }
}

/// The upstream events this translator tells apart, named once per event: the name is
/// compared with the known ones in one match, not again at each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    /// `response.created`, `response.queued`.
    Preamble,
    InProgress,
    ItemAdded,
    PartAdded,
    TextDelta,
    RefusalDelta,
    SummaryDelta,
    ArgumentsDelta,
    ItemDone,
    Completed,
    Incomplete,
    /// `response.failed`, `error`.
    Failed,
    /// Any other event: the `.done` events that repeat what the deltas said, events this
    /// translator does not know. Only checked to be JSON.
    Other,
}

impl Name {
    fn of(name: &[u8]) -> Self {
        match name {
            b"response.output_text.delta" => Name::TextDelta,
            b"response.function_call_arguments.delta" => Name::ArgumentsDelta,
            b"response.reasoning_summary_text.delta" => Name::SummaryDelta,
            b"response.refusal.delta" => Name::RefusalDelta,
            b"response.created" | b"response.queued" => Name::Preamble,
            b"response.in_progress" => Name::InProgress,
            b"response.output_item.added" => Name::ItemAdded,
            b"response.content_part.added" => Name::PartAdded,
            b"response.output_item.done" => Name::ItemDone,
            b"response.completed" => Name::Completed,
            b"response.incomplete" => Name::Incomplete,
            b"response.failed" | b"error" => Name::Failed,
            _ => Name::Other,
        }
    }

    fn is_delta(self) -> bool {
        matches!(
            self,
            Name::TextDelta | Name::RefusalDelta | Name::SummaryDelta | Name::ArgumentsDelta
        )
    }
}

/// The reason a `response.incomplete` gives.
fn incomplete_reason(data: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(data).ok()?;
    value["response"]["incomplete_details"]["reason"]
        .as_str()
        .map(str::to_owned)
}

impl StreamTranslator for Translator {
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut) {
        self.event_read(event, None, out);
    }

    fn event_read(&mut self, event: &SseEvent<'_>, read: Option<TerminalRead>, out: &mut BytesMut) {
        if self.ended || self.malformed.is_some() {
            return;
        }
        let name = event.name();
        let kind = Name::of(name);
        let data = event.data();
        if matches!(kind, Name::Completed | Name::Incomplete | Name::Failed) {
            // Read once (by the relay's watch when it gives its reading), leniently: a terminal
            // event that is not JSON would end the client's stream without its usage or error
            // (it fails the attempt); JSON of another shape reads as a terminal without usage
            // or error details.
            let (terminal, usage) = match read.unwrap_or_else(|| try_read_terminal(&data)) {
                Ok(read) => read,
                Err(e) => {
                    if !e.is_data() {
                        self.malformed = unreadable(name, &data, &e, true);
                        if self.malformed.is_some() {
                            return;
                        }
                    }
                    Default::default()
                }
            };
            match kind {
                Name::Completed => return self.terminal(out, usage, Ending::Completed),
                Name::Incomplete => {
                    let reason = incomplete_reason(&data);
                    return self.terminal(out, usage, Ending::Incomplete(reason.as_deref()));
                }
                _ => {
                    let message = terminal
                        .error_message
                        .unwrap_or_else(|| "the upstream failed".to_owned());
                    return self.error(out, terminal.error_code.as_deref(), &message);
                }
            }
        }
        if self.stopped.is_some() {
            // Output past the stop sequence is not the client's.
            return;
        }
        let acted_on = match kind {
            // The preamble again: nothing new once the message started with its id.
            Name::InProgress => !self.started || self.response_id.is_none(),
            other => other != Name::Other,
        };
        if !acted_on {
            // Nothing is read from it, so it is only checked to be JSON (a stream of broken
            // bytes fails over), without reading its fields (`output_text.done` and
            // `content_part.done` repeat the text).
            if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&data) {
                self.malformed = unreadable(name, &data, &e, false);
            }
            return;
        }
        let quick = if kind.is_delta() {
            quick_delta(&data)
        } else {
            None
        };
        let read = match quick {
            Some(q) => Ok(Event {
                output_index: q.output_index,
                content_index: q.content_index,
                summary_index: q.summary_index,
                delta: Some(Cow::Borrowed(q.delta)),
                ..Event::default()
            }),
            None => serde_json::from_slice::<Event>(&data),
        };
        let ev = match read {
            Ok(ev) => ev,
            Err(e) => {
                self.malformed = unreadable(name, &data, &e, true);
                return;
            }
        };
        match kind {
            Name::Preamble | Name::InProgress => {
                if self.response_id.is_none() {
                    self.response_id = ev.response.and_then(|r| r.id);
                }
                self.start(out);
            }
            Name::ItemAdded => {
                self.start(out);
                if let Some(item) = ev.item.filter(|i| i.kind == "function_call") {
                    self.tool_use(out, ev.output_index, &item);
                }
            }
            Name::PartAdded => {
                if let Some(part) = ev.part {
                    if part.kind == "refusal" {
                        self.refusal = true;
                    }
                    if matches!(part.kind.as_str(), "output_text" | "refusal") {
                        self.text(out, ev.output_index, ev.content_index, "");
                    }
                }
            }
            Name::TextDelta | Name::RefusalDelta => {
                if kind == Name::RefusalDelta {
                    self.refusal = true;
                }
                let delta = ev.delta.unwrap_or_default();
                self.text(out, ev.output_index, ev.content_index, &delta);
            }
            Name::SummaryDelta => {
                let delta = ev.delta.unwrap_or_default();
                self.thinking(out, ev.output_index, ev.summary_index, &delta);
            }
            Name::ArgumentsDelta => {
                if let Some(index) = self
                    .open
                    .as_ref()
                    .filter(|o| o.kind == Kind::ToolUse && o.output_index == ev.output_index)
                    .map(|o| o.index)
                {
                    self.arguments(out, index, &ev.delta.unwrap_or_default());
                }
            }
            Name::ItemDone => {
                if let Some(item) = ev.item {
                    self.item_done(out, ev.output_index, &item);
                }
            }
            _ => {}
        }
    }

    fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }

    fn has_output(&self) -> bool {
        // `message_start` is the preamble; a content block is output.
        self.next_index > 0
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        // The bytes stopped without a terminal event: close the message so the client's
        // parser ends cleanly; the relay records the attempt as incomplete on its side.
        self.terminal(out, None, Ending::Completed);
    }

    fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        self.error(out, Some(code), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_is_written_as_serde_json_writes_it() {
        for text in [
            "",
            "Hel lo",
            "é ✓ 😀",
            "a\"b",
            "back\\slash",
            "line\nfeed",
            "\u{1}",
            "tab\tx",
        ] {
            let mut out = BytesMut::new();
            put_json_str(&mut out, text);
            assert_eq!(
                &out[..],
                serde_json::to_string(text).unwrap().as_bytes(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 9, 10, 255, 256, u64::MAX] {
            let mut out = BytesMut::new();
            put_u64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }
}
