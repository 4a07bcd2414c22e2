//! `POST /v1/messages/count_tokens` answered by the relay itself for a group whose Messages
//! requests go to OpenAI accounts (which have no such endpoint).
//!
//! The count is an **estimate**: text is counted with OpenAI's `o200k_base` encoding (the
//! tokenizer of the GPT-4o/GPT-5 families that will read the prompt, embedded in the
//! `tiktoken-rs` crate, so nothing is downloaded), plus a small overhead per message and tool for
//! the framing each API adds around them. What no tokenizer can see is priced flat: an image as
//! [`IMAGE_TOKENS`], a PDF as one token per four bytes of its decoded size. The framing of the
//! upstream's own prompt template is not known exactly, so expect a few percent either way.
//!
//! Cost: the first call builds the tokenizer from its embedded 3.6 MB table (about 2 s in an
//! unoptimised test build), later calls are linear in the text (about 1 s per MB unoptimised).
//! A caller on the async runtime runs it on a blocking thread.

use serde_json::Value;
use tiktoken_rs::{o200k_base_singleton, CoreBPE};

use super::Untranslatable;

/// Tokens one image is counted as: about what a 1–2 megapixel image costs on either API.
pub const IMAGE_TOKENS: u64 = 1_600;
/// Tokens of framing around each message (role and separators).
const MESSAGE_OVERHEAD: u64 = 4;
/// Tokens of framing around each tool definition.
const TOOL_OVERHEAD: u64 = 8;
/// Text is encoded in pieces of at most this many bytes (cut at whitespace where there is
/// some), which bounds the regex engine's work on one piece whatever the input.
const PIECE: usize = 16 * 1024;

/// Estimates the input tokens of a Messages request (`system`, `messages`, `tools`).
pub fn count_tokens_estimate(body: &[u8]) -> Result<u64, Untranslatable> {
    let request: Value = serde_json::from_slice(body).map_err(|e| Untranslatable {
        field: String::new(),
        message: format!("the request body is not valid JSON: {e}"),
    })?;
    let bpe = o200k_base_singleton();
    let mut total = 0u64;
    match request.get("system") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => total += text_tokens(bpe, text),
        Some(Value::Array(blocks)) => {
            for block in blocks {
                total += block_tokens(bpe, block);
            }
        }
        Some(_) => return Err(invalid("system", "must be a string or a list of blocks")),
    }
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages", "must be a list"))?;
    for (i, message) in messages.iter().enumerate() {
        total += MESSAGE_OVERHEAD;
        match message.get("content") {
            Some(Value::String(text)) => total += text_tokens(bpe, text),
            Some(Value::Array(blocks)) => {
                for block in blocks {
                    total += block_tokens(bpe, block);
                }
            }
            _ => {
                return Err(invalid(
                    &format!("messages[{i}].content"),
                    "must be a string or a list of blocks",
                ))
            }
        }
    }
    if let Some(tools) = request.get("tools").and_then(Value::as_array) {
        for tool in tools {
            total += TOOL_OVERHEAD;
            for key in ["name", "description"] {
                if let Some(text) = tool.get(key).and_then(Value::as_str) {
                    total += text_tokens(bpe, text);
                }
            }
            if let Some(schema) = tool.get("input_schema") {
                total += text_tokens(bpe, &schema.to_string());
            }
        }
    }
    Ok(total)
}

fn invalid(field: &str, message: &str) -> Untranslatable {
    Untranslatable {
        field: field.to_owned(),
        message: format!("`{field}` {message}"),
    }
}

/// Tokens of one content block, whatever its type.
fn block_tokens(bpe: &CoreBPE, block: &Value) -> u64 {
    let str_of = |key: &str| block.get(key).and_then(Value::as_str).unwrap_or_default();
    match block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "text" => text_tokens(bpe, str_of("text")),
        "thinking" => text_tokens(bpe, str_of("thinking")),
        "image" => IMAGE_TOKENS,
        "document" => {
            let source = &block["source"];
            let data = source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match source.get("type").and_then(Value::as_str) {
                Some("text") => text_tokens(bpe, data),
                // Base64 is 4 characters per 3 bytes; a PDF's text is about a token per
                // 4 bytes of file.
                _ => (data.len() as u64 * 3 / 4) / 4,
            }
        }
        "tool_use" => {
            let input = block.get("input").map(Value::to_string).unwrap_or_default();
            text_tokens(bpe, str_of("name")) + text_tokens(bpe, &input)
        }
        "tool_result" => match block.get("content") {
            Some(Value::String(text)) => text_tokens(bpe, text),
            Some(Value::Array(inner)) => inner.iter().map(|b| block_tokens(bpe, b)).sum(),
            _ => 0,
        },
        // Anything else (redacted thinking, search results, …): its JSON text.
        _ => text_tokens(bpe, &block.to_string()),
    }
}

/// Tokens of a text, encoded piece by piece.
fn text_tokens(bpe: &CoreBPE, text: &str) -> u64 {
    let mut rest = text;
    let mut total = 0u64;
    while !rest.is_empty() {
        let (piece, tail) = rest.split_at(piece_end(rest));
        total += bpe.encode_ordinary(piece).len() as u64;
        rest = tail;
    }
    total
}

/// Where the next piece ends: the last whitespace within [`PIECE`] bytes, else the last char
/// boundary within it (a run of text with no whitespace at all).
fn piece_end(text: &str) -> usize {
    if text.len() <= PIECE {
        return text.len();
    }
    let mut end = PIECE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    match text[..end].rfind(char::is_whitespace) {
        Some(at) if at > 0 => at,
        _ => end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(body: &str) -> u64 {
        count_tokens_estimate(body.as_bytes()).unwrap()
    }

    /// "Hello, world!" is 4 tokens in o200k_base (`Hello`, `,`, ` world`, `!`): the real
    /// encoding is in use, not a byte ratio.
    #[test]
    fn text_is_counted_with_o200k_base() {
        let bpe = o200k_base_singleton();
        assert_eq!(text_tokens(bpe, "Hello, world!"), 4);
        assert_eq!(text_tokens(bpe, ""), 0);
    }

    #[test]
    fn system_messages_and_tools_all_count() {
        let bare = count(r#"{"model":"m","messages":[{"role":"user","content":"Hello, world!"}]}"#);
        assert_eq!(bare, MESSAGE_OVERHEAD + 4);
        let with_system = count(
            r#"{"model":"m","system":[{"type":"text","text":"Hello, world!"}],"messages":[{"role":"user","content":"Hello, world!"}]}"#,
        );
        assert_eq!(with_system, bare + 4);
        let with_tool = count(
            r#"{"model":"m","messages":[{"role":"user","content":"Hello, world!"}],"tools":[{"name":"get_weather","description":"Weather now","input_schema":{"type":"object"}}]}"#,
        );
        assert!(with_tool > bare + TOOL_OVERHEAD, "{with_tool}");
    }

    #[test]
    fn tool_calls_results_and_images_count() {
        let text_only =
            count(r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"}]}]}"#);
        let with_image = count(
            r#"{"messages":[{"role":"user","content":[{"type":"text","text":"look"},{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}}]}]}"#,
        );
        assert_eq!(with_image, text_only + IMAGE_TOKENS);
        let turn = count(
            r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"read","input":{"path":"/etc/hosts"}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"127.0.0.1 localhost"}]}]}]}"#,
        );
        assert!(turn > 2 * MESSAGE_OVERHEAD + 8, "{turn}");
    }

    /// A long text cut into pieces counts about the same as the tokens of its words.
    #[test]
    fn long_text_is_counted_in_pieces() {
        let bpe = o200k_base_singleton();
        let text = "hello ".repeat(20_000);
        let n = text_tokens(bpe, &text);
        assert!((19_990..=20_010).contains(&n), "{n}");
        let unbroken = "x".repeat(3 * PIECE + 5);
        assert!(text_tokens(bpe, &unbroken) > 0);
        let multibyte = "é".repeat(PIECE);
        assert!(text_tokens(bpe, &multibyte) > 0);
    }

    #[test]
    fn malformed_requests_name_the_field() {
        let err = count_tokens_estimate(br#"{"model":"m"}"#).unwrap_err();
        assert_eq!(err.field, "messages");
        let err = count_tokens_estimate(br#"{"messages":[{"role":"user"}]}"#).unwrap_err();
        assert_eq!(err.field, "messages[0].content");
        assert!(count_tokens_estimate(b"not json").is_err());
    }
}
