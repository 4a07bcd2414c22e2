//! Chat Completions chunks → the Responses event sequence (the order is in the module doc of
//! [`super`]).

use bytes::{BufMut, BytesMut};
use serde_json::{json, Value};

use super::answer::{self, Ending, Identity};
use crate::protocol::sse::SseEvent;
use crate::protocol::{chat, TokenUsage};
use crate::translate::StreamTranslator;

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
    who: Option<Identity>,
    sequence: u64,
    items: Vec<Slot>,
    finish_reason: Option<String>,
    usage: Option<TokenUsage>,
    /// A terminal event was written: nothing more goes out.
    ended: bool,
}

impl Translator {
    pub fn new(client_model: &str) -> Self {
        Self {
            model: client_model.to_owned(),
            who: None,
            sequence: 0,
            items: Vec::new(),
            finish_reason: None,
            usage: None,
            ended: false,
        }
    }

    fn emit(&mut self, out: &mut BytesMut, kind: &str, mut data: Value) {
        if let Some(map) = data.as_object_mut() {
            map.insert("type".into(), Value::String(kind.to_owned()));
            map.insert("sequence_number".into(), Value::from(self.sequence));
        }
        self.sequence += 1;
        out.put_slice(b"event: ");
        out.put_slice(kind.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(data.to_string().as_bytes());
        out.put_slice(b"\n\n");
    }

    /// `response.created` and `response.in_progress`, once, named after the first chunk.
    fn start(&mut self, chunk: &Value, out: &mut BytesMut) -> Identity {
        if let Some(who) = &self.who {
            return who.clone();
        }
        let who = Identity::new(chunk, &self.model);
        self.who = Some(who.clone());
        for (kind, status) in [
            ("response.created", "in_progress"),
            ("response.in_progress", "in_progress"),
        ] {
            let response = who.response(status, Vec::new(), None);
            self.emit(out, kind, json!({ "response": response }));
        }
        who
    }

    fn open_index(&self, wanted: fn(&Item) -> bool) -> Option<usize> {
        self.items
            .iter()
            .position(|slot| slot.done.is_none() && wanted(&slot.item))
    }

    fn add(
        &mut self,
        who: &Identity,
        prefix: &str,
        item: Item,
        shown: Value,
        out: &mut BytesMut,
    ) -> usize {
        let index = self.items.len();
        let id = who.item_id(prefix, index);
        let mut shown = shown;
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

    fn reasoning(&mut self, who: &Identity, delta: &str, out: &mut BytesMut) {
        let index = match self.open_index(|i| matches!(i, Item::Reasoning { .. })) {
            Some(index) => index,
            None => {
                self.close_all(out);
                let index = self.add(
                    who,
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
        let id = self.items[index].id.clone();
        if let Item::Reasoning { text } = &mut self.items[index].item {
            text.push_str(delta);
        }
        self.emit(
            out,
            "response.reasoning_summary_text.delta",
            json!({"item_id": id, "output_index": index, "summary_index": 0, "delta": delta}),
        );
    }

    fn text(&mut self, who: &Identity, refusal: bool, delta: &str, out: &mut BytesMut) {
        let index = match self.open_index(|i| matches!(i, Item::Message { .. })) {
            Some(index) => index,
            None => {
                self.close_all(out);
                self.add(
                    who,
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
        let id = self.items[index].id.clone();
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
            self.emit(
                out,
                "response.content_part.added",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "part": answer::part(refusal, "")}),
            );
        }
        let content_index = parts_len(&self.items[index].item);
        if let Item::Message {
            open: Some((_, text)),
            ..
        } = &mut self.items[index].item
        {
            text.push_str(delta);
        }
        self.delta_event(&id, index, content_index, refusal, delta, out);
    }

    fn delta_event(
        &mut self,
        id: &str,
        index: usize,
        content_index: usize,
        refusal: bool,
        delta: &str,
        out: &mut BytesMut,
    ) {
        if refusal {
            self.emit(
                out,
                "response.refusal.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "delta": delta}),
            );
        } else {
            self.emit(
                out,
                "response.output_text.delta",
                json!({"item_id": id, "output_index": index, "content_index": content_index,
                       "delta": delta, "logprobs": []}),
            );
        }
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

    fn tool_call(&mut self, who: &Identity, call: &Value, position: usize, out: &mut BytesMut) {
        let chat_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let function = &call["function"];
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
                let call_id = match call.get("id").and_then(Value::as_str) {
                    Some(id) => id.to_owned(),
                    // Some servers omit the id; the client needs one to answer the call.
                    None => who.item_id("call", position),
                };
                let name = function["name"].as_str().unwrap_or("").to_owned();
                let shown = answer::call_item("", "in_progress", &call_id, &name, "");
                self.add(
                    who,
                    "fc",
                    Item::Call {
                        index: chat_index,
                        call_id,
                        name,
                        arguments: String::new(),
                    },
                    shown,
                    out,
                )
            }
        };
        if self.items[index].done.is_some() {
            return;
        }
        let id = self.items[index].id.clone();
        let Item::Call {
            name, arguments, ..
        } = &mut self.items[index].item
        else {
            return;
        };
        if name.is_empty() {
            if let Some(late) = function["name"].as_str() {
                late.clone_into(name);
            }
        }
        if let Some(delta) = function["arguments"].as_str().filter(|d| !d.is_empty()) {
            arguments.push_str(delta);
            self.emit(
                out,
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": index, "delta": delta}),
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
                ..
            } => {
                let item = answer::call_item(&id, "completed", call_id, name, arguments);
                let arguments = arguments.clone();
                self.emit(
                    out,
                    "response.function_call_arguments.done",
                    json!({"item_id": id, "output_index": index, "arguments": arguments}),
                );
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
        let who = self.start(&Value::Null, out);
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
        let who = self.start(&Value::Null, out);
        let mut response = who.response("failed", self.finished_output(), self.usage.as_ref());
        response["error"] = json!({"code": code, "message": message});
        self.emit(out, "response.failed", json!({ "response": response }));
        self.ended = true;
    }

    fn chunk(&mut self, chunk: &Value, data: &[u8], out: &mut BytesMut) {
        if let Some(error) = chunk.get("error").filter(|e| e.is_object()) {
            let code = match error.get("code").or_else(|| error.get("type")) {
                Some(Value::String(code)) => code.clone(),
                Some(Value::Number(code)) => code.to_string(),
                _ => "upstream_error".to_owned(),
            };
            let message = error["message"].as_str().unwrap_or("the upstream failed");
            self.failed(&code, message, out);
            return;
        }
        let who = self.start(chunk, out);
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.usage = chat::usage_of_json(data).ok().flatten();
        }
        let Some(choice) = chunk
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|choices| {
                choices
                    .iter()
                    .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
            })
        else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = answer::reasoning_text(delta) {
            self.reasoning(&who, text, out);
        }
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            self.text(&who, false, text, out);
        }
        if let Some(text) = delta["refusal"].as_str().filter(|t| !t.is_empty()) {
            self.text(&who, true, text, out);
        }
        if let Some(calls) = delta["tool_calls"].as_array() {
            for (position, call) in calls.iter().enumerate() {
                self.tool_call(&who, call, position, out);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.finish_reason = Some(reason.to_owned());
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
        if self.ended {
            return;
        }
        let data = event.data();
        if data.trim_ascii() == b"[DONE]" {
            self.end(out);
            return;
        }
        // Anything that is not a JSON object (a stray line) carries nothing to translate.
        if let Ok(chunk) = serde_json::from_slice::<Value>(&data) {
            if chunk.is_object() {
                self.chunk(&chunk, &data, out);
            }
        }
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
