//! Reading a request body: size limit (declared and actual), and `Content-Encoding: gzip` or
//! `zstd` (Codex compresses bodies when signed in with ChatGPT). The limit applies to the
//! decompressed size as well, so a small bomb cannot expand past it.

use std::io::Read;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::relay::failure::ClientError;

pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ClientError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large(limit)
            } else {
                ClientError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    format!("could not read the request body: {e}"),
                )
            }
        })?
        .to_bytes();
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("" | "identity") => Ok(detach(raw)),
        Some("gzip" | "x-gzip") => decode(flate2::read::GzDecoder::new(&raw[..]), limit, "gzip"),
        Some("zstd") => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(&raw[..])
                .map_err(|e| bad_encoding("zstd", &e.to_string()))?;
            decode(decoder, limit, "zstd")
        }
        Some(other) => Err(ClientError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            format!("unsupported Content-Encoding {other:?}: send identity, gzip or zstd"),
        )),
    }
}

/// Below this size a body is copied out of the connection's read buffer, which it would
/// otherwise pin (about 8 KiB) for as long as the request lives, streams included.
const COPY_BELOW: usize = 64 * 1024;

fn detach(body: Bytes) -> Bytes {
    if body.len() < COPY_BELOW {
        Bytes::copy_from_slice(&body)
    } else {
        body
    }
}

fn decode(reader: impl Read, limit: usize, name: &str) -> Result<Bytes, ClientError> {
    let mut out = Vec::new();
    // One byte past the limit tells "too large" apart from "exactly the limit".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| bad_encoding(name, &e.to_string()))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

fn too_large(limit: usize) -> ClientError {
    ClientError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request_error",
        format!("the request body is larger than gateway.max_body_size ({limit} bytes)"),
    )
    .with_code("request_too_large")
}

fn bad_encoding(name: &str, detail: &str) -> ClientError {
    ClientError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        format!("the request body is not valid {name}: {detail}"),
    )
}
