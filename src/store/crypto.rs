//! Upstream credentials encrypted at rest with AES-256-GCM.
//!
//! The key is `storage.encryption_key` (64 hex digits, usually an `env:`/`file:` reference) or,
//! without it, `encryption.key` in the data directory, generated on first start (owner-only).
//! A check value sealed with the key is kept in the store, so opening it with another key fails
//! at start with a clear message instead of failing later, account by account; nothing is ever
//! re-encrypted or dropped on a mismatch.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::Store;
use crate::domain::Secret;
use crate::store::data_dir::DataDir;

/// File in the data directory holding a generated key.
pub const KEY_FILE: &str = "encryption.key";
const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;
const CHECK_NAME: &str = "encryption_check";
const CHECK_PLAINTEXT: &[u8] = b"subrelay encryption key check";

pub struct Sealer {
    cipher: Aes256Gcm,
}

/// Where the key came from, for the start-up log.
pub enum KeyOrigin {
    Config,
    ExistingFile(std::path::PathBuf),
    GeneratedFile(std::path::PathBuf),
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The key from the config, else from (or newly into) the data directory.
    pub fn from_config(
        configured: Option<&Secret>,
        data_dir: &DataDir,
    ) -> Result<(Self, KeyOrigin), String> {
        if let Some(secret) = configured {
            let key = parse_hex_key(secret.expose()).ok_or(
                "storage.encryption_key: must be 64 hex digits (32 bytes), e.g. from `openssl rand -hex 32`",
            )?;
            return Ok((Self::new(&key), KeyOrigin::Config));
        }
        let path = data_dir.path().join(KEY_FILE);
        let existed = path.exists();
        let key = data_dir.secret(KEY_FILE)?;
        let origin = if existed {
            KeyOrigin::ExistingFile(path)
        } else {
            KeyOrigin::GeneratedFile(path)
        };
        Ok((Self::new(&key), origin))
    }

    /// `version | nonce | ciphertext+tag`; `context` (the row's identity) is authenticated, so
    /// a sealed value copied to another row does not open.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "cannot encrypt a credential".to_owned())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let (&version, rest) = sealed
            .split_first()
            .ok_or("an encrypted credential is empty")?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN {
            return Err("an encrypted credential has an unknown format".to_owned());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: body,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| "a credential does not decrypt with this key".to_owned())
    }

    /// The name of the check value in the store's `meta` table.
    pub const CHECK_NAME: &'static str = CHECK_NAME;

    /// Whether `sealed` (the stored check value) opens with this key.
    pub fn check(&self, sealed: &[u8]) -> Result<(), String> {
        match self.open(CHECK_NAME, sealed) {
            Ok(plain) if plain == CHECK_PLAINTEXT => Ok(()),
            _ => Err(
                "the encryption key does not match the one this store was written with: \
                 set storage.encryption_key (or restore storage.data_dir/encryption.key) to the \
                 original key; nothing was changed"
                    .to_owned(),
            ),
        }
    }

    /// Checks this key against the store (first start: records the check value; instances
    /// starting together on a shared store keep the first one written and check against it).
    pub async fn verify(&self, store: &dyn Store) -> Result<(), String> {
        if let Some(sealed) = store
            .get_meta(CHECK_NAME)
            .await
            .map_err(|e| format!("cannot read the store: {e}"))?
        {
            return self.check(&sealed);
        }
        let ours = self.seal(CHECK_NAME, CHECK_PLAINTEXT)?;
        let stored = store
            .meta_or_insert(CHECK_NAME, &ours)
            .await
            .map_err(|e| format!("cannot write the store: {e}"))?;
        self.check(&stored)
    }
}

/// The runtime state seals what Redis must not hold in the clear (sign-in tokens) with this key.
impl crate::runtime_state::Seal for Sealer {
    fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, String> {
        Sealer::seal(self, context, plaintext)
    }

    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, String> {
        Sealer::open(self, context, sealed)
    }
}

fn parse_hex_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let sealer = Sealer::new(&[7; 32]);
        let sealed = sealer.seal("account:a", b"sk-upstream").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"sk-upstream"));
        assert_eq!(sealer.open("account:a", &sealed).unwrap(), b"sk-upstream");
        assert!(sealer.open("account:b", &sealed).is_err());
        assert!(Sealer::new(&[8; 32]).open("account:a", &sealed).is_err());
    }

    #[test]
    fn hex_keys_are_parsed_strictly() {
        assert_eq!(parse_hex_key(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(parse_hex_key("abcd"), None);
        assert_eq!(parse_hex_key(&"zz".repeat(32)), None);
    }
}
