//! Chat Completions chunks → the Responses event sequence (the order is in the module doc of
//! [`super`]).

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use serde_json::{json, Value};

use super::answer::{self, Ending, Identity};
use super::chunk::{CallDelta, Chunk, Text};
use super::names::CallNames;
use crate::protocol::sse::SseEvent;
use crate::protocol::{chat, TokenUsage};
use crate::translate::{unreadable, StreamTranslator};

// === Writing ===

/// The delta events, written straight from borrowed text (the hot path of a stream).
#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    sequence_number: u64,
    item_id: &'a str,
    output_index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary_index: Option<usize>,
    delta: &'a str,
    /// `output_text.delta` carries an (empty) `logprobs` list; other deltas have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[u8; 0]>,
}

/// Writes one event: `event: <kind>` and its JSON data.
fn write_event(out: &mut BytesMut, kind: &str, data: &impl Serialize) {
    out.put_slice(b"event: ");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\ndata: ");
    // Serialising into memory fails only for maps with non-string keys, which these are not.
    let _ = serde_json::to_writer(out.writer(), data);
    out.put_slice(b"\n\n");
}

/// A delta event of item `item_id`; `content_index` for message parts, `summary_index` for
/// reasoning summaries.
#[expect(
    clippy::too_many_arguments,
    reason = "the fields of one event, written without building it first"
)]
fn write_delta(
    out: &mut BytesMut,
    sequence: &mut u64,
    kind: &str,
    item_id: &str,
    output_index: usize,
    content_index: Option<usize>,
    summary_index: Option<usize>,
    delta: &str,
) {
    let event = DeltaEvent {
        kind,
        sequence_number: *sequence,
        item_id,
        output_index,
        content_index,
        summary_index,
        delta,
        logprobs: (kind == "response.output_text.delta").then_some([]),
    };
    *sequence += 1;
    write_event(out, kind, &event);
}

// === State ===

/// One output item while it is being streamed.
enum Item {
    Reasoning {
        text: String,
    },
    Message {
        /// Finished content parts.
        parts: Vec<Value>,
        /// The part being streamed: whether it is a refusal, and its text.
        open: Option<(bool, String)>,
    },
    Call {
        /// The Chat `tool_calls[].index` it answers.
        index: u64,
        call_id: String,
        name: String,
        arguments: String,
        /// A freeform tool's call: its `input` is decoded from the arguments at the end.
        custom: bool,
    },
}

struct Slot {
    id: String,
    item: Item,
    /// `response.output_item.done` was written; `done` holds the finished item.
    done: Option<Value>,
}

pub struct Translator {
    model: String,
    names: CallNames,
    who: Option<Identity>,
    sequence: u64,
    items: Vec<Slot>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    /// A terminal event was written: nothing more goes out.
    ended: bool,
    /// An upstream chunk could not be read ([`StreamTranslator::malformed`]).
    malformed: Option<String>,
}

impl Translator {
    pub fn new(client_model: &str, names: CallNames) -> Self {
        Self {
            model: client_model.to_owned(),
            names,
            who: None,
            sequence: 0,
            items: Vec::new(),
            finish_reason: None,
            usage: None,
            ended: false,
            malformed: None,
        }
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, mut data: Value) {
        if let Some(map) = data.as_object_mut() {
            map.insert("type".into(), Value::String(kind.to_owned()));
            map.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        write_event(out, kind, &data);
    }

    /// `response.created` and `response.in_progress`, once, named after the first chunk.
    fn start(&mut self, id: Option<&str>, created: Option<u64>, out: &mut BytesMut) {
        if self.who.is_some() {
            return;
        }
        let who = Identity::new(id, created, &self.model);
        for (kind, status) in [
            ("response.created", "in_progress"),
            ("response.in_progress", "in_progress"),
        ] {
            let response = who.response(status, Vec::new(), None);
            self.emit(out, kind, json!({ "response": response }));
        }
        self.who = Some(who);
    }

    /// The answer's identity; made up if no chunk named it.
    fn who(&mut self, out: &mut BytesMut) -> Identity {
        self.start(None, None, out);
        self.who
            .clone()
            .unwrap_or_else(|| Identity::new(None, None, &self.model))
    }

    fn open_index(&self, wanted: fn(&Item) -> bool) -> Option<usize> {
        self.items
            .iter()
            .position(|slot| slot.done.is_none() && wanted(&slot.item))
    }

    fn add(&mut self, prefix: &str, item: Item, mut shown: Value, out: &mut BytesMut) -> usize {
        let index = self.items.len();
        let id = self.who(out).item_id(prefix, index);
        shown["id"] = Value::String(id.clone());
        self.items.push(Slot {
            id,
            item,
            done: None,
        });
        self.emit(
            out,
            "response.output_item.added",
            json!({"output_index": index, "item": shown}),
        );
        index
    }

    fn reasoning(&mut self, delta: &str, out: &mut BytesMut) {
        let index = match self.open_index(|i| matches!(i, Item::Reasoning { .. })) {
            Some(index) => index,
            None => {
                self.close_all(out);
                let index = self.add(
                    "rs",
                    Item::Reasoning {
                        text: String::new(),
                    },
                    json!({"type": "reasoning", "summary": []}),
                    out,
                );
                let id = self.items[index].id.clone();
                self.emit(
                    out,
                    "response.reasoning_summary_part.added",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": ""}}),
                );
                index
            }
        };
        let slot = &mut self.items[index];
        if let Item::Reasoning { text } = &mut slot.item {
            text.push_str(delta);
        }
        write_delta(
            out,
            &mut self.sequence,
            "response.reasoning_summary_text.delta",
            &slot.id,
            index,
            None,
            Some(0),
            delta,
        );
    }

    fn text(&mut self, refusal: bool, delta: &str, out: &mut BytesMut) {
        let index = match self.open_index(|i| matches!(i, Item::Message { .. })) {
            Some(index) => index,
            None => {
                self.close_all(out);
                self.add(
                    "msg",
                    Item::Message {
                        parts: Vec::new(),
                        open: None,
                    },
                    answer::message_item("", "in_progress", Vec::new()),
                    out,
                )
            }
        };
        let same_kind = matches!(
            &self.items[index].item,
            Item::Message { open: Some((r, _)), .. } if *r == refusal
        );
        if !same_kind {
            self.close_part(index, out);
            let content_index = parts_len(&self.items[index].item);
            if let Item::Message { open, .. } = &mut self.items[index].item {
                *open = Some((refusal, String::new()));
            }
            let id = self.items[index].id.clone();
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "part": answer::part(refusal, "")}),
            );
        }
        let slot = &mut self.items[index];
        let mut content_index = 0;
        if let Item::Message {
            parts,
            open: Some((_, text)),
        } = &mut slot.item
        {
            text.push_str(delta);
            content_index = parts.len();
        }
        let kind = if refusal {
            "response.refusal.delta"
        } else {
            "response.output_text.delta"
        };
        write_delta(
            out,
            &mut self.sequence,
            kind,
            &slot.id,
            index,
            Some(content_index),
            None,
            delta,
        );
    }

    /// Closes the streamed content part of message `index`, if one is open.
    fn close_part(&mut self, index: usize, out: &mut BytesMut) {
        let id = self.items[index].id.clone();
        let Item::Message { parts, open } = &mut self.items[index].item else {
            return;
        };
        let Some((refusal, text)) = open.take() else {
            return;
        };
        let content_index = parts.len();
        let part = answer::part(refusal, &text);
        parts.push(part.clone());
        if refusal {
            self.emit(
                out,
                "response.refusal.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "refusal": text}),
            );
        } else {
            self.emit(
                out,
                "response.output_text.done",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "text": text, "logprobs": []}),
            );
        }
        self.emit(
            out,
            "response.content_part.done",
            json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "part": part}),
        );
    }

    fn tool_call(&mut self, call: &CallDelta<'_>, position: usize, out: &mut BytesMut) {
        let chat_index = call.index.unwrap_or(position as u64);
        let function = call.function.as_ref();
        let name = function.and_then(|f| f.name.as_deref());
        let found = self
            .items
            .iter()
            .position(|slot| matches!(slot.item, Item::Call { index, .. } if index == chat_index));
        let index = match found {
            Some(index) => index,
            None => {
                // A call ends the text or reasoning before it; calls stay open side by side
                // (a server may interleave their arguments) until the answer ends.
                for open in self.open_indices(|i| !matches!(i, Item::Call { .. })) {
                    self.close(open, out);
                }
                let position = self.items.len();
                let call_id = match call.id.as_deref() {
                    Some(id) => id.to_owned(),
                    // Some servers omit the id; the client needs one to answer the call.
                    None => self.who(out).item_id("call", position),
                };
                let name = name.unwrap_or("").to_owned();
                let custom = self.names.is_custom(&name);
                let (prefix, shown) = if custom {
                    let shown = answer::custom_call_item("", "in_progress", &call_id, &name, "");
                    ("ctc", shown)
                } else {
                    let shown =
                        answer::call_item(&self.names, "", "in_progress", &call_id, &name, "");
                    ("fc", shown)
                };
                self.add(
                    prefix,
                    Item::Call {
                        index: chat_index,
                        call_id,
                        name,
                        arguments: String::new(),
                        custom,
                    },
                    shown,
                    out,
                )
            }
        };
        let slot = &mut self.items[index];
        if slot.done.is_some() {
            return;
        }
        let Item::Call {
            name: known,
            arguments,
            custom,
            ..
        } = &mut slot.item
        else {
            return;
        };
        if known.is_empty() {
            if let Some(late) = name {
                late.clone_into(known);
            }
        }
        if let Some(delta) = function
            .and_then(|f| f.arguments.as_deref())
            .filter(|d| !d.is_empty())
        {
            arguments.push_str(delta);
            if *custom {
                // The input is a JSON string until the arguments are whole: written at the end.
                return;
            }
            write_delta(
                out,
                &mut self.sequence,
                "response.function_call_arguments.delta",
                &slot.id,
                index,
                None,
                None,
                delta,
            );
        }
    }

    fn open_indices(&self, wanted: fn(&Item) -> bool) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].done.is_none() && wanted(&self.items[i].item))
            .collect()
    }

    fn close_all(&mut self, out: &mut BytesMut) {
        for index in self.open_indices(|_| true) {
            self.close(index, out);
        }
    }

    /// Writes the done events of item `index`.
    fn close(&mut self, index: usize, out: &mut BytesMut) {
        self.close_part(index, out);
        let id = self.items[index].id.clone();
        let done = match &self.items[index].item {
            Item::Reasoning { text } => {
                let text = text.clone();
                self.emit(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                );
                self.emit(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id, "output_index": index, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text}}),
                );
                answer::reasoning_item(&id, &text)
            }
            Item::Message { parts, .. } => answer::message_item(&id, "completed", parts.clone()),
            Item::Call {
                call_id,
                name,
                arguments,
                custom: true,
                ..
            } => {
                let input = answer::custom_input(arguments);
                let item = answer::custom_call_item(&id, "completed", call_id, name, &input);
                if !input.is_empty() {
                    write_delta(
                        out,
                        &mut self.sequence,
                        "response.custom_tool_call_input.delta",
                        &id,
                        index,
                        None,
                        None,
                        &input,
                    );
                }
                let done = json!({"item_id": id, "output_index": index, "input": input});
                self.emit(out, "response.custom_tool_call_input.done", done);
                item
            }
            Item::Call {
                call_id,
                name,
                arguments,
                ..
            } => {
                let item =
                    answer::call_item(&self.names, &id, "completed", call_id, name, arguments);
                // The client's name of the function (without its namespace).
                let done = json!({"item_id": id, "output_index": index, "name": item["name"],
                                  "arguments": arguments});
                self.emit(out, "response.function_call_arguments.done", done);
                item
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
        );
        self.items[index].done = Some(done);
    }

    fn finished_output(&self) -> Vec<Value> {
        self.items.iter().filter_map(|s| s.done.clone()).collect()
    }

    /// `response.completed` or `response.incomplete`, from the finish reason and usage seen.
    fn end(&mut self, out: &mut BytesMut) {
        let who = self.who(out);
        self.close_all(out);
        let ending = Ending::of(self.finish_reason.as_deref());
        let (kind, status) = match ending {
            Ending::Completed => ("response.completed", "completed"),
            Ending::Incomplete(_) => ("response.incomplete", "incomplete"),
        };
        let mut response = who.response(status, self.finished_output(), self.usage.as_ref());
        if let Ending::Incomplete(reason) = ending {
            response["incomplete_details"] = json!({ "reason": reason });
        }
        self.emit(out, kind, json!({ "response": response }));
        self.ended = true;
    }

    /// `response.failed`: open items stay unfinished (the client must not take a cut-off
    /// message or call as whole).
    fn failed(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        let who = self.who(out);
        let mut response = who.response("failed", self.finished_output(), self.usage.as_ref());
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({ "response": response }));
        self.ended = true;
    }

    fn chunk(&mut self, chunk: Chunk<'_>, data: &[u8], out: &mut BytesMut) {
        if let Some((code, message)) = chunk.failure() {
            self.failed(&code, &message, out);
            return;
        }
        let created = chunk.created.as_ref().and_then(Value::as_u64);
        self.start(chunk.id.as_deref(), created, out);
        if chunk.usage.is_some() {
            // Rare (once per stream): read by the relay's own Chat usage reader.
            self.usage = chat::usage_of_json(data).ok().flatten();
        }
        let Some(choice) = chunk
            .choices
            .into_iter()
            .flatten()
            .find(|choice| choice.index == 0)
        else {
            return;
        };
        if let Some(delta) = &choice.delta {
            let reasoning = [&delta.reasoning_content, &delta.reasoning]
                .into_iter()
                .find_map(|field| field.as_ref().and_then(Text::text));
            if let Some(text) = reasoning {
                self.reasoning(text, out);
            }
            if let Some(text) = delta.content.as_deref().filter(|t| !t.is_empty()) {
                self.text(false, text, out);
            }
            if let Some(text) = delta.refusal.as_deref().filter(|t| !t.is_empty()) {
                self.text(true, text, out);
            }
            for (position, call) in delta.tool_calls.iter().flatten().enumerate() {
                self.tool_call(call, position, out);
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(reason.into_owned());
            self.close_all(out);
        }
    }
}

fn parts_len(item: &Item) -> usize {
    match item {
        Item::Message { parts, .. } => parts.len(),
        _ => 0,
    }
}

impl StreamTranslator for Translator {
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut) {
        if self.ended || self.malformed.is_some() {
            return;
        }
        let data = event.data();
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        match serde_json::from_slice::<Chunk<'_>>(&data) {
            Ok(chunk) => self.chunk(chunk, &data, out),
            // Not JSON, or JSON in another shape (a `content` list, a numeric id…) that may
            // carry output: skipping it could lose output silently, so the stream is broken.
            Err(e) => {
                self.malformed = unreadable(event.name(), &data, &e, true);
            }
        }
    }

    fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }

    fn has_output(&self) -> bool {
        // `response.created` and `.in_progress` are the preamble; an output item is output.
        !self.items.is_empty()
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if self.ended {
            return;
        }
        if self.finish_reason.is_some() {
            // The answer was whole; only `[DONE]` went missing.
            self.end(out);
        } else {
            self.failed(
                "upstream_stream_ended",
                "the upstream stream ended before the answer was finished",
                out,
            );
        }
    }

    fn fail(&mut self, code: &str, message: &str, out: &mut BytesMut) {
        if !self.ended {
            self.failed(code, message, out);
        }
    }
}
