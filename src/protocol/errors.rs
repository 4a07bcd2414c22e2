//! Error bodies in the client's protocol shape.

use bytes::Bytes;
use serde::Serialize;

/// `{"error":{"message","type","code","param"}}`, as the OpenAI API and Codex backend answer.
pub fn openai_error_body(message: &str, kind: &str, code: Option<&str>) -> Bytes {
    #[derive(Serialize)]
    struct Body<'a> {
        error: Inner<'a>,
    }
    #[derive(Serialize)]
    struct Inner<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        code: Option<&'a str>,
        param: Option<&'a str>,
    }
    let body = Body {
        error: Inner {
            message,
            kind,
            code,
            param: None,
        },
    };
    // Serialising plain strings cannot fail.
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
