//! Reading a request body: size limit (declared and actual), and `Content-Encoding: gzip` or
//! `zstd` (Codex compresses bodies when signed in with ChatGPT). The limit applies to the
//! decompressed size as well, so a small bomb cannot expand past it, and decompression runs off
//! the event loop.

use std::io::Read;
use std::sync::LazyLock;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;

use super::refusal::Refusal;

/// Compressed bodies being inflated at once, over all workers; more wait their turn (without
/// blocking any event loop). Each may hold up to `gateway.max_body_size` of output.
static INFLATING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, usize::from)));

/// Reads at most `limit` bytes, before and after decompression. A compressed body is inflated
/// on a blocking thread, so a bomb costs that thread at most `limit` bytes and never stalls the
/// event loop. A body that does not arrive within `server.body_read_timeout` ([`BodyReadTimeout`]
/// in the error's chain) is a 408.
pub async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, Refusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Refusal::BodyTooLarge { limit });
    }
    let raw = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Refusal::BodyTooLarge { limit }
            } else if let Some(after) = timed_out(e.as_ref()) {
                Refusal::BodyTimeout { after }
            } else {
                Refusal::BodyUnreadable(e.to_string())
            }
        })?
        .to_bytes();
    let encoding = headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let codec = match encoding.as_deref() {
        // The common case stays on the event loop: nothing to inflate.
        None | Some("" | "identity") => return Ok(detach(raw)),
        Some("gzip" | "x-gzip") => Codec::Gzip,
        Some("zstd") => Codec::Zstd,
        Some(other) => return Err(Refusal::UnsupportedEncoding(other.to_owned())),
    };
    let _turn = INFLATING
        .acquire()
        .await
        .map_err(|_| Refusal::InflateFailed)?;
    tokio::task::spawn_blocking(move || inflate(codec, &raw, limit))
        .await
        .map_err(|_| Refusal::InflateFailed)?
}

#[derive(Debug, Clone, Copy)]
enum Codec {
    Gzip,
    Zstd,
}

fn inflate(codec: Codec, raw: &[u8], limit: usize) -> Result<Bytes, Refusal> {
    match codec {
        Codec::Gzip => decode(flate2::read::GzDecoder::new(raw), limit, "gzip"),
        Codec::Zstd => {
            let decoder = ruzstd::decoding::StreamingDecoder::new(raw)
                .map_err(|e| bad_encoding("zstd", &e.to_string()))?;
            decode(decoder, limit, "zstd")
        }
    }
    .map(Bytes::from)
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

/// Output is taken from the decoder this much at a time.
const CHUNK: usize = 64 * 1024;

/// Decodes to at most `limit` bytes: the decoder is asked for at most [`CHUNK`] bytes at a time
/// and stopped as soon as its output passes the limit, so it never produces more than
/// `limit + CHUNK` bytes, and the output buffer never holds more than `limit`.
fn decode(mut reader: impl Read, limit: usize, name: &'static str) -> Result<Vec<u8>, Refusal> {
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad_encoding(name, &e.to_string())),
        };
        let len = out.len() + n;
        if len > limit {
            return Err(Refusal::BodyTooLarge { limit });
        }
        if len > out.capacity() {
            // Doubling, as `Vec` would, but never past the limit.
            let wanted = len.max(out.capacity().saturating_mul(2)).min(limit);
            out.reserve_exact(wanted - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// The error a request body gives when `server.body_read_timeout` is up (the server's body
/// timer makes it); answered with 408.
#[derive(Debug, thiserror::Error)]
#[error("the request body took longer than server.body_read_timeout ({} s) to arrive", .0.as_secs())]
pub struct BodyReadTimeout(pub std::time::Duration);

/// The [`BodyReadTimeout`] somewhere in `error`'s chain (axum wraps body errors).
fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<std::time::Duration> {
    std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<BodyReadTimeout>())
        .map(|timeout| timeout.0)
}

fn bad_encoding(codec: &'static str, detail: &str) -> Refusal {
    Refusal::BadEncoding {
        codec,
        detail: detail.to_owned(),
    }
}

/// Bombs for tests: small bodies that inflate to a lot.
#[cfg(test)]
pub(crate) mod bombs {
    /// A zstd frame of RLE blocks: 4 bytes per 128 KiB of output (33 KB → 1 GiB).
    pub fn zstd(inflated: usize) -> Vec<u8> {
        const BLOCK: usize = 128 * 1024;
        let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
        // No content size, no checksum, no dictionary; a 128 KiB window.
        frame.extend_from_slice(&[0x00, 7 << 3]);
        let blocks = inflated.div_ceil(BLOCK);
        for i in 0..blocks {
            let last = u32::from(i + 1 == blocks);
            let size = BLOCK.min(inflated - i * BLOCK) as u32;
            let header = last | (1 << 1) | (size << 3);
            frame.extend_from_slice(&header.to_le_bytes()[..3]);
            frame.push(b'a');
        }
        frame
    }

    /// `inflated` zeros, gzipped.
    pub fn gzip(inflated: usize) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(zeros.len());
            encoder.write_all(&zeros[..n]).unwrap();
            left -= n;
        }
        encoder.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts what the decoder produced.
    struct Counting<'a, R> {
        inner: R,
        produced: &'a AtomicUsize,
    }

    impl<R: Read> Read for Counting<'_, R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.produced.fetch_add(n, Ordering::Relaxed);
            Ok(n)
        }
    }

    const LIMIT: usize = 1 << 20;

    #[test]
    fn a_zstd_bomb_stops_one_chunk_past_the_limit() {
        let bomb = bombs::zstd(1 << 30);
        assert!(bomb.len() < 40 * 1024, "{} bytes", bomb.len());
        let produced = AtomicUsize::new(0);
        let decoder = ruzstd::decoding::StreamingDecoder::new(&bomb[..]).unwrap();
        let reader = Counting {
            inner: decoder,
            produced: &produced,
        };
        let error = decode(reader, LIMIT, "zstd").unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let produced = produced.into_inner();
        assert!(
            produced > LIMIT && produced <= LIMIT + CHUNK,
            "the decoder produced {produced} bytes"
        );
    }

    #[test]
    fn a_gzip_bomb_stops_one_chunk_past_the_limit() {
        let bomb = bombs::gzip(64 << 20);
        let produced = AtomicUsize::new(0);
        let reader = Counting {
            inner: flate2::read::GzDecoder::new(&bomb[..]),
            produced: &produced,
        };
        let error = decode(reader, LIMIT, "gzip").unwrap_err();
        assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let produced = produced.into_inner();
        assert!(
            produced > LIMIT && produced <= LIMIT + CHUNK,
            "the decoder produced {produced} bytes"
        );
    }

    #[test]
    fn a_body_of_exactly_the_limit_inflates_into_a_buffer_no_larger() {
        // Positive control: the same decoders pass a body that fits.
        let out = decode(
            ruzstd::decoding::StreamingDecoder::new(&bombs::zstd(LIMIT)[..]).unwrap(),
            LIMIT,
            "zstd",
        )
        .unwrap();
        assert_eq!(out.len(), LIMIT);
        assert!(out.capacity() <= LIMIT, "capacity {}", out.capacity());
        assert!(out.iter().all(|&b| b == b'a'));
        let out = decode(
            flate2::read::GzDecoder::new(&bombs::gzip(LIMIT - 1)[..]),
            LIMIT,
            "gzip",
        )
        .unwrap();
        assert_eq!(out.len(), LIMIT - 1);
    }
}
