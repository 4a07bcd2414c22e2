//! Downstream API keys: who may use the gateway, which account group serves them, and their
//! limits.
//!
//! Keys are known only by their keyed hash (HMAC-SHA256 under a secret in the data directory,
//! the same hash the store keeps). A presented key is hashed and looked up by digest, then the
//! digests are compared in constant time, so neither the lookup nor the comparison tells an
//! attacker how much of a guessed key was right. The directory is updated in place when the
//! admin API creates, changes or deletes a key, so a new key works for the next request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::refusal::Refusal;
use crate::domain::{KeyLimits, Platform};
use crate::runtime_state::{LeaseSet, RuntimeState};
use crate::store::keys::{from_hex, KeyHasher};
use crate::store::{now_secs, KeyRecord};

/// An authenticated client's key: what the relay needs to know about it.
#[derive(Debug)]
pub struct ApiKey {
    /// The keyed hash of the key: a stable identity that is not the key.
    pub id: [u8; 32],
    pub name: String,
    pub group: String,
    /// The platform of the key's group: which protocol the key reaches.
    pub platform: Platform,
    enabled: bool,
    pub limits: KeyLimits,
    concurrency: u32,
    /// The key's concurrency slots; `None` = unlimited.
    pub slots: Option<Arc<KeySlots>>,
}

/// A key's concurrency slots: leases keyed by the key's name in the runtime state.
#[derive(Debug)]
pub struct KeySlots {
    leases: LeaseSet,
    limit: u32,
}

impl KeySlots {
    /// The leases and the limit, for the key's admission (`Limits::admit`).
    pub fn parts(&self) -> (&LeaseSet, u32) {
        (&self.leases, self.limit)
    }
}

pub struct KeyDirectory {
    hasher: KeyHasher,
    inner: RwLock<Directory>,
    /// Where the keys' concurrency slots live.
    runtime: RuntimeState,
}

#[derive(Default)]
struct Directory {
    by_digest: HashMap<[u8; 32], Arc<ApiKey>>,
    /// The platform of each group; unknown groups are OpenAI.
    groups: BTreeMap<String, Platform>,
}

impl KeyDirectory {
    pub fn new(hasher: KeyHasher) -> Self {
        Self::with_state(hasher, RuntimeState::default())
    }

    /// Keys whose concurrency slots live in `runtime`.
    pub fn with_state(hasher: KeyHasher, runtime: RuntimeState) -> Self {
        Self {
            hasher,
            inner: RwLock::default(),
            runtime,
        }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Replaces every key and group (at start and on a configuration reload, from the store); a
    /// key that stays keeps its requests' concurrency slots.
    pub fn load(&self, keys: &[KeyRecord], groups: BTreeMap<String, Platform>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.groups = groups;
        let previous: HashMap<String, Arc<ApiKey>> = inner
            .by_digest
            .drain()
            .map(|(_, key)| (key.name.clone(), key))
            .collect();
        for record in keys {
            let old = previous.get(&record.name).map(AsRef::as_ref);
            if let Some(key) = build(record, &inner.groups, old, &self.runtime) {
                inner.by_digest.insert(key.id, key);
            }
        }
    }

    /// Adds a key or replaces it (found by name); its requests in flight keep their slots.
    pub fn upsert(&self, record: &KeyRecord) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let old = inner
            .by_digest
            .iter()
            .find(|(_, k)| k.name == record.name)
            .map(|(digest, key)| (*digest, Arc::clone(key)));
        if let Some((digest, _)) = &old {
            inner.by_digest.remove(digest);
        }
        let previous = old.as_ref().map(|(_, k)| k.as_ref());
        if let Some(key) = build(record, &inner.groups, previous, &self.runtime) {
            inner.by_digest.insert(key.id, key);
        }
    }

    pub fn remove(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.by_digest.retain(|_, k| k.name != name);
    }

    pub fn set_group(&self, name: &str, platform: Platform) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.groups.insert(name.to_owned(), platform);
    }

    pub fn remove_group(&self, name: &str) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.groups.remove(name);
    }

    pub fn group_platform(&self, name: &str) -> Option<Platform> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.groups.get(name).copied()
    }

    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key presented as `Authorization: Bearer <key>` or `x-api-key: <key>`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<ApiKey>, Refusal> {
        let presented = presented_key(headers).ok_or(Refusal::MissingApiKey)?;
        let wanted = self.hasher.digest(presented);
        let found = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            inner
                .by_digest
                .get(&wanted)
                .filter(|key| bool::from(key.id.ct_eq(&wanted)))
                .map(Arc::clone)
        };
        match found {
            None => Err(Refusal::InvalidApiKey),
            Some(key) if !key.enabled => Err(Refusal::ApiKeyDisabled),
            Some(key) if key.limits.expires_at.is_some_and(|t| t <= now_secs()) => {
                Err(Refusal::ApiKeyExpired)
            }
            Some(key) => Ok(key),
        }
    }
}

/// The runtime key of a stored one; `previous` lends its slots when the concurrency is unchanged.
fn build(
    record: &KeyRecord,
    groups: &BTreeMap<String, Platform>,
    previous: Option<&ApiKey>,
    runtime: &RuntimeState,
) -> Option<Arc<ApiKey>> {
    let id = from_hex(&record.key_hash)?;
    let slots = match previous {
        Some(old) if old.concurrency == record.concurrency => old.slots.clone(),
        _ => (record.concurrency > 0).then(|| {
            Arc::new(KeySlots {
                leases: runtime.leases(
                    &format!("key:{}", record.name),
                    &runtime.signal(&format!("key:{}", record.name)),
                ),
                limit: record.concurrency,
            })
        }),
    };
    Some(Arc::new(ApiKey {
        id,
        name: record.name.clone(),
        group: record.group.clone(),
        platform: groups
            .get(&record.group)
            .copied()
            .unwrap_or(Platform::OpenAi),
        enabled: record.enabled,
        limits: KeyLimits {
            expires_at: record.expires_at,
            rpm_limit: record.rpm_limit,
            daily_spend_limit: record.daily_spend_limit,
            monthly_spend_limit: record.monthly_spend_limit,
            allowed_models: record.allowed_models.clone(),
        },
        concurrency: record.concurrency,
        slots,
    }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn record(hasher: &KeyHasher, key: &str, name: &str, enabled: bool) -> KeyRecord {
        KeyRecord {
            name: name.into(),
            key_hash: hasher.hex_digest(key),
            prefix: String::new(),
            suffix: String::new(),
            group: "default".into(),
            enabled,
            expires_at: None,
            concurrency: 0,
            rpm_limit: 0,
            daily_spend_limit: None,
            monthly_spend_limit: None,
            allowed_models: None,
            source: crate::store::Source::Config,
            created_at: 0,
        }
    }

    fn directory() -> KeyDirectory {
        let hasher = KeyHasher::new([9; 32]);
        let keys = KeyDirectory::new(hasher.clone());
        keys.load(
            &[
                record(&hasher, "sk-alice", "alice", true),
                record(&hasher, "sk-off", "off", false),
            ],
            BTreeMap::new(),
        );
        keys
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
        assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(err.code().as_deref(), Some("missing_api_key"));
        let err = keys
            .authenticate(&headers("authorization", "Bearer sk-alicf"))
            .unwrap_err();
        assert_eq!(err.code().as_deref(), Some("invalid_api_key"));
        let err = keys
            .authenticate(&headers("x-api-key", "sk-off"))
            .unwrap_err();
        assert_eq!(err.code().as_deref(), Some("api_key_disabled"));
    }

    #[test]
    fn keys_added_changed_and_removed_at_runtime_take_effect_at_once() {
        let keys = directory();
        let hasher = keys.hasher().clone();
        let mut bob = record(&hasher, "sk-bob", "bob", true);
        keys.upsert(&bob);
        assert_eq!(
            keys.authenticate(&headers("x-api-key", "sk-bob"))
                .unwrap()
                .name,
            "bob"
        );
        bob.expires_at = Some(1);
        keys.upsert(&bob);
        let err = keys
            .authenticate(&headers("x-api-key", "sk-bob"))
            .unwrap_err();
        assert_eq!(err.code().as_deref(), Some("api_key_expired"));
        keys.remove("bob");
        let err = keys
            .authenticate(&headers("x-api-key", "sk-bob"))
            .unwrap_err();
        assert_eq!(err.code().as_deref(), Some("invalid_api_key"));
    }
}
