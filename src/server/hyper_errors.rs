//! hyper's own answers to requests it cannot parse, given a JSON body.
//!
//! hyper answers a malformed request (400), a request line too long (414) or too many or too
//! large headers (431) by itself, before any service sees the request, with an empty body, and
//! offers no hook to change it. The socket wrapper ([`super::watchdog::Watched`]) recognises
//! exactly that answer (only while no request is being served, and only hyper's exact bytes:
//! the status line, `connection: close`, `content-length: 0`, `date`) and writes this one in its
//! place: the same status, in the OpenAI error shape (the route is unknown: the request never
//! parsed), and the connection still closes.

/// The status of hyper's automatic error answer, if `head` is exactly one.
pub fn automatic_error(head: &[u8]) -> Option<u16> {
    // "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n
    //  content-length: 0\r\ndate: Tue, 01 Dec 2026 00:03:08 GMT\r\n\r\n" is 117 bytes.
    if head.len() > 160 || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    let status: u16 = rest.get(..3)?.parse().ok()?;
    if !matches!(status, 400 | 414 | 431) {
        return None;
    }
    let (status_line_end, headers) = rest.split_once("\r\n")?;
    let reason = status_line_end.get(3..)?;
    let expected_reason = match status {
        400 => " Bad Request",
        414 => " URI Too Long",
        _ => " Request Header Fields Too Large",
    };
    if reason != expected_reason {
        return None;
    }
    let date = headers
        .strip_prefix("connection: close\r\ncontent-length: 0\r\ndate: ")?
        .strip_suffix("\r\n\r\n")?;
    (date.len() == 29 && !date.contains('\r')).then_some(status)
}

/// The answer written instead: same status, a JSON body, the connection closing.
pub fn json_answer(status: u16) -> Vec<u8> {
    let (reason, code, message) = match status {
        414 => (
            "URI Too Long",
            "uri_too_long",
            "the request line is longer than the gateway accepts (about 64 KiB)",
        ),
        431 => (
            "Request Header Fields Too Large",
            "headers_too_large",
            "the request has too many headers (more than 100) or they are too large (about 400 KiB in all)",
        ),
        _ => (
            "Bad Request",
            "malformed_request",
            "the request is not valid HTTP/1.1 and could not be read",
        ),
    };
    let body = serde_json::json!({
        "error": {"message": message, "type": "invalid_request_error", "code": code}
    })
    .to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_exact_automatic_answers_are_recognised() {
        let date = "Tue, 01 Dec 2026 00:03:08 GMT";
        for (status, reason) in [
            (400, "Bad Request"),
            (414, "URI Too Long"),
            (431, "Request Header Fields Too Large"),
        ] {
            let head = format!(
                "HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"
            );
            assert_eq!(automatic_error(head.as_bytes()), Some(status));
        }
        for other in [
            // Our own answers carry a body and a content type.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: {date}\r\n\r\n{{}}"),
            format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\nmore"),
            format!("HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"),
            format!("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\ndate: {date}\r\n\r\n"),
            "0\r\n\r\n".to_owned(),
        ] {
            assert_eq!(automatic_error(other.as_bytes()), None, "{other}");
        }
    }

    #[test]
    fn the_replacement_is_a_complete_json_answer() {
        let answer = String::from_utf8(json_answer(431)).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value["error"]["code"], "headers_too_large");
    }
}
