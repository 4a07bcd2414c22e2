//! A whole Responses `response` object → an Anthropic `message` object.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::stop::StopSequences;
use super::stream::Item;
use super::{message_id, reasoning_signature, stop_reason, usage_json, Ending};
use crate::protocol::responses;

#[derive(Deserialize)]
struct Response {
    id: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    incomplete_details: Option<Incomplete>,
    output: Vec<Item>,
}

#[derive(Deserialize)]
struct Incomplete {
    reason: Option<String>,
}

pub fn translate(
    upstream: &[u8],
    client_model: &str,
    stops: StopSequences,
) -> Result<Bytes, String> {
    let response: Response = serde_json::from_slice(upstream)
        .map_err(|e| format!("the upstream answer is not a Responses `response` object: {e}"))?;
    if response.status.as_deref() == Some("failed") {
        return Err("the upstream answer is a failed response".to_owned());
    }
    let usage = responses::usage_of_json(upstream)?.unwrap_or_default();
    let mut content = Vec::new();
    let mut tool_use = false;
    let mut refusal = false;
    let mut stopped: Option<String> = None;
    for item in &response.output {
        if stopped.is_some() {
            // Output past the stop sequence is not the client's.
            break;
        }
        match item.kind.as_str() {
            "reasoning" => {
                let summary: Vec<&str> = item
                    .summary
                    .iter()
                    .filter_map(|p| p.text.as_deref())
                    .collect();
                let signature = item.encrypted_content.as_deref().map(reasoning_signature);
                if !summary.is_empty() || signature.is_some() {
                    content.push(json!({
                        "type": "thinking",
                        "thinking": summary.join("\n\n"),
                        "signature": signature.unwrap_or_default(),
                    }));
                }
            }
            "message" => {
                for part in &item.content {
                    let text = match part.kind.as_str() {
                        "output_text" => part.text.as_deref(),
                        "refusal" => {
                            refusal = true;
                            part.refusal.as_deref()
                        }
                        _ => None,
                    };
                    let Some(mut text) = text else { continue };
                    if let Some((at, stop)) = stops.find(text) {
                        text = &text[..at];
                        stopped = Some(stop);
                    }
                    if !text.is_empty() || stopped.is_none() {
                        content.push(json!({"type": "text", "text": text}));
                    }
                    if stopped.is_some() {
                        break;
                    }
                }
            }
            "function_call" => {
                tool_use = true;
                let arguments = item.arguments.as_deref().unwrap_or_default();
                // Arguments cut short (a max-tokens stop) are not JSON: they are handed over as
                // the string they are rather than lost.
                let input = if arguments.trim().is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(arguments).unwrap_or_else(|_| json!(arguments))
                };
                content.push(json!({
                    "type": "tool_use",
                    "id": item.call_id.as_deref().unwrap_or_default(),
                    "name": item.name.as_deref().unwrap_or_default(),
                    "input": input,
                }));
            }
            _ => {}
        }
    }
    let ending = match response.status.as_deref() {
        Some("incomplete") => Ending::Incomplete(
            response
                .incomplete_details
                .as_ref()
                .and_then(|d| d.reason.as_deref()),
        ),
        _ => Ending::Completed,
    };
    let message = json!({
        "id": message_id(response.id.as_deref()),
        "type": "message",
        "role": "assistant",
        "model": client_model,
        "content": content,
        "stop_reason": match stopped {
            Some(_) => "stop_sequence",
            None => stop_reason(ending, tool_use, refusal),
        },
        "stop_sequence": stopped,
        "usage": usage_json(&usage),
    });
    serde_json::to_vec(&message)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}
