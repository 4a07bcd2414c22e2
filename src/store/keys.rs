//! API keys at rest: a keyed hash (HMAC-SHA256 under `key_hash.key` in the data directory) and
//! a short prefix/suffix for listings. A stolen database file alone gives neither the keys nor a
//! way to test guesses offline.

use hmac::{Hmac, Mac};
use rand::distributions::{Alphanumeric, DistString};
use sha2::Sha256;

/// File in the data directory holding the hashing secret.
pub const HASH_SECRET_FILE: &str = "key_hash.key";

/// Hashes presented and stored keys with the same secret.
#[derive(Clone)]
pub struct KeyHasher {
    secret: [u8; 32],
}

impl KeyHasher {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    pub fn digest(&self, key: &str) -> [u8; 32] {
        // HMAC accepts a key of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.secret) else {
            return [0; 32];
        };
        mac.update(key.as_bytes());
        mac.finalize().into_bytes().into()
    }

    pub fn hex_digest(&self, key: &str) -> String {
        to_hex(&self.digest(key))
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A new random key: `sk-sr-` and 40 letters and digits (about 238 bits).
pub fn generate() -> String {
    format!(
        "sk-sr-{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 40)
    )
}

/// What a listing may show of a key: enough to tell keys apart, never enough to matter. Short
/// keys (hand-written ones in a config) show nothing.
pub fn hint(key: &str) -> (String, String) {
    let chars: Vec<char> = key.chars().collect();
    let (head, tail) = match chars.len() {
        n if n >= 24 => (8, 4),
        n if n >= 12 => (3, 2),
        _ => (0, 0),
    };
    let prefix = chars.iter().take(head).collect();
    let suffix = chars[chars.len() - tail..].iter().collect();
    (prefix, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_the_secret_and_round_trip_through_hex() {
        let a = KeyHasher::new([1; 32]);
        let b = KeyHasher::new([2; 32]);
        assert_ne!(a.digest("sk-x"), b.digest("sk-x"));
        assert_eq!(from_hex(&a.hex_digest("sk-x")), Some(a.digest("sk-x")));
    }

    #[test]
    fn hints_never_show_a_short_key() {
        assert_eq!(hint("sk-demo"), (String::new(), String::new()));
        let key = generate();
        let (prefix, suffix) = hint(&key);
        assert_eq!(prefix, &key[..8]);
        assert_eq!(suffix.len(), 4);
        assert!(key.ends_with(&suffix));
    }
}
