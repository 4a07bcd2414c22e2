//! Downstream API keys: who may use the gateway, and which account group serves them.
//!
//! Keys are kept as SHA-256 digests. A presented key is hashed and looked up by digest, then
//! the digests are compared in constant time, so neither the lookup nor the comparison tells an
//! attacker how much of a guessed key was right.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::pool::Platform;
use crate::relay::failure::ClientError;

/// A key as declared in the config (the store of a later issue provides the same).
#[derive(Debug, Clone)]
pub struct ApiKeySpec {
    pub key: Secret,
    pub name: String,
    pub group: String,
    pub enabled: bool,
    /// Requests in flight at once; 0 = unlimited.
    pub concurrency: u32,
}

/// An authenticated client's key: what the relay needs to know about it.
#[derive(Debug)]
pub struct ApiKey {
    /// SHA-256 of the key: a stable identity that is not the key.
    pub id: [u8; 32],
    pub name: String,
    pub group: String,
    /// The platform of the key's group: which protocol the key reaches.
    pub platform: Platform,
    enabled: bool,
    /// The key's concurrency slots; `None` = unlimited.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
}

pub struct KeyDirectory {
    by_digest: HashMap<[u8; 32], (Arc<ApiKey>, [u8; 32])>,
}

impl KeyDirectory {
    /// `groups`: the platform of each group (from the config); unknown groups are OpenAI.
    pub fn new(specs: &[ApiKeySpec], groups: &BTreeMap<String, Platform>) -> Self {
        let by_digest = specs
            .iter()
            .map(|spec| {
                let digest = digest(spec.key.expose());
                let key = Arc::new(ApiKey {
                    id: digest,
                    name: spec.name.clone(),
                    group: spec.group.clone(),
                    platform: groups.get(&spec.group).copied().unwrap_or(Platform::OpenAi),
                    enabled: spec.enabled,
                    slots: (spec.concurrency > 0)
                        .then(|| Arc::new(tokio::sync::Semaphore::new(spec.concurrency as usize))),
                });
                (digest, (key, digest))
            })
            .collect();
        Self { by_digest }
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// The key presented as `Authorization: Bearer <key>` or `x-api-key: <key>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<ApiKey>, ClientError> {
        let presented = presented_key(headers).ok_or_else(|| {
            unauthorized(
                "missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`",
                "missing_api_key",
            )
        })?;
        let wanted = digest(presented);
        let found = self
            .by_digest
            .get(&wanted)
            .filter(|(_, stored)| bool::from(stored.ct_eq(&wanted)));
        match found {
            Some((key, _)) if key.enabled => Ok(Arc::clone(key)),
            Some(_) => Err(unauthorized("this API key is disabled", "api_key_disabled")),
            None => Err(unauthorized("invalid API key", "invalid_api_key")),
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let value = value.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .unwrap_or(value)
            .trim();
        if !token.is_empty() {
            return Some(token);
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

fn unauthorized(message: &str, code: &str) -> ClientError {
    ClientError::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message).with_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> KeyDirectory {
        KeyDirectory::new(
            &[
                ApiKeySpec {
                    key: Secret::new("sk-alice"),
                    name: "alice".into(),
                    group: "default".into(),
                    enabled: true,
                    concurrency: 0,
                },
                ApiKeySpec {
                    key: Secret::new("sk-off"),
                    name: "off".into(),
                    group: "default".into(),
                    enabled: false,
                    concurrency: 0,
                },
            ],
            &BTreeMap::new(),
        )
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn bearer_and_x_api_key_are_accepted() {
        let keys = directory();
        assert_eq!(
            keys.authenticate(&headers("authorization", "Bearer sk-alice"))
                .unwrap()
                .name,
            "alice"
        );
        assert_eq!(
            keys.authenticate(&headers("x-api-key", "sk-alice"))
                .unwrap()
                .name,
            "alice"
        );
    }

    #[test]
    fn missing_unknown_and_disabled_keys_are_refused() {
        let keys = directory();
        let err = keys.authenticate(&HeaderMap::new()).unwrap_err();
        assert_eq!(err.status, StatusCode::UNAUTHORIZED);
        assert_eq!(err.code.as_deref(), Some("missing_api_key"));
        let err = keys
            .authenticate(&headers("authorization", "Bearer sk-alicf"))
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("invalid_api_key"));
        let err = keys
            .authenticate(&headers("x-api-key", "sk-off"))
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("api_key_disabled"));
    }
}
