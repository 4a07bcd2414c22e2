//! Identifiers and timestamps for answers.
//!
//! Ids only need to be unique and look like the real ones (`resp_…`, `msg_…`, `cmp_…`), so they
//! come from a process-wide counter mixed with the start time instead of a random generator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(1);
static SALT: OnceLock<u64> = OnceLock::new();

/// Seconds since the Unix epoch, for `created_at`.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A fresh id with the given prefix, such as `resp_68a1f0c2e4b7d9aa0000000000000007`.
pub(crate) fn fresh(prefix: &str) -> String {
    let salt = *SALT.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{salt:016x}{n:016x}")
}

/// An opaque, base64-looking blob standing in for encrypted compaction content.
pub(crate) fn opaque_blob(seed: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(96);
    out.push_str("gAAAAAB");
    for byte in seed.bytes().cycle().take(88) {
        state = (state ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        out.push(char::from(ALPHABET[(state >> 58) as usize]));
    }
    out.push_str("==");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_prefixed() {
        let a = fresh("resp_");
        let b = fresh("resp_");
        assert!(a.starts_with("resp_") && b.starts_with("resp_"));
        assert_ne!(a, b);
    }

    #[test]
    fn blob_is_base64_looking() {
        let blob = opaque_blob("cmp_1");
        assert!(blob
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='));
        assert_eq!(blob, opaque_blob("cmp_1"));
    }
}
