//! Upstream session identifiers derived per API key: a keyed hash (HMAC-SHA256) of the API
//! key's id and the client's value. The same conversation keeps the same upstream id (so the
//! upstream's prompt cache works), two tenants sending the same value never collide, and no
//! client's id is shown upstream or to another key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub struct SessionIds {
    secret: [u8; 32],
}

impl SessionIds {
    pub fn new(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// A UUID-shaped id (some backends expect one) derived from `key_id` and `value`.
    pub fn derive(&self, key_id: &[u8], value: &str) -> String {
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        mac.update(key_id);
        mac.update(&[0]);
        mac.update(value.as_bytes());
        let d = mac.finalize().into_bytes();
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_per_key_and_different_across_keys() {
        let ids = SessionIds::new([7; 32]);
        let a1 = ids.derive(b"key-a", "conv-1");
        assert_eq!(a1, ids.derive(b"key-a", "conv-1"));
        assert_ne!(a1, ids.derive(b"key-b", "conv-1"));
        assert_ne!(a1, ids.derive(b"key-a", "conv-2"));
        assert_eq!(a1.len(), 36);
        assert!(!a1.contains("conv"));
        assert_ne!(a1, SessionIds::new([8; 32]).derive(b"key-a", "conv-1"));
    }
}
