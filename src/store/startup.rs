//! Opening the store at start, in the order that keeps every promise: open and migrate, check the
//! encryption key (a wrong key stops here, before anything is written), write the config's rows,
//! replay the usage spool a previous run left, then read the spending the limits are seeded with.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::crypto::{KeyOrigin, Sealer};
use super::keys::{KeyHasher, HASH_SECRET_FILE};
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::usage_writer::replay;
use super::{sync, GroupRecord, Store};
use crate::config::{Config, GroupSettings, StorageBackend};
use crate::domain::{GroupRouting, ModelMap, Platform};
use crate::store::data_dir::DataDir;

pub struct Opened {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
    pub hasher: KeyHasher,
    /// The secret upstream session ids are derived from (`session.key`, or the store's).
    pub session_secret: [u8; 32],
    /// USD per key since the month began, and since the day began (with the spool replayed).
    pub month_spend: Vec<(String, f64)>,
    pub day_spend: Vec<(String, f64)>,
}

/// `periods`: unix ms of the start of the current UTC day and month (`limits::period_starts`).
pub async fn open(
    config: &Config,
    data_dir: &DataDir,
    (day_start, month_start): (i64, i64),
) -> Result<Opened, String> {
    let (sealer, origin) = Sealer::from_config(config.storage.encryption_key.as_ref(), data_dir)?;
    let store: Arc<dyn Store> = match &config.storage.backend {
        StorageBackend::Sqlite => {
            // A wrong key is refused before the store is opened for writing (not even a
            // migration or a WAL checkpoint touches the file).
            if let Some(sealed) =
                SqliteStore::peek_meta(data_dir.path(), Sealer::CHECK_NAME).await?
            {
                sealer.check(&sealed)?;
            }
            Arc::new(SqliteStore::open(data_dir.path()).await?)
        }
        StorageBackend::Postgres {
            url,
            max_connections,
        } => Arc::new(PostgresStore::open(url, *max_connections).await?),
    };
    sealer.verify(store.as_ref()).await?;
    announce_key(&origin);
    // A shared store keeps the secrets every instance must agree on; one instance keeps them
    // in its data directory.
    let (hasher, session_secret) = if store.shared() {
        (
            KeyHasher::new(shared_secret(store.as_ref(), &sealer, KEY_HASH_SECRET).await?),
            shared_secret(store.as_ref(), &sealer, SESSION_SECRET).await?,
        )
    } else {
        (
            KeyHasher::new(data_dir.secret(HASH_SECRET_FILE)?),
            data_dir.secret(SESSION_SECRET_FILE)?,
        )
    };
    sync::config_into_store(config, store.as_ref(), &hasher, &sealer).await?;

    let replayed = replay(data_dir.path(), store.as_ref()).await?;
    if replayed > 0 {
        tracing::info!("{replayed} usage row(s) recovered from the spool of the previous run");
    }
    let fail = |e: super::StoreError| format!("cannot read spending from the store: {e}");
    let month_spend = store.spend_since(month_start).await.map_err(fail)?;
    let day_spend = store.spend_since(day_start).await.map_err(fail)?;
    Ok(Opened {
        store,
        sealer: Arc::new(sealer),
        hasher,
        session_secret,
        month_spend,
        day_spend,
    })
}

/// The data directory's file of the secret upstream session ids are derived from.
pub const SESSION_SECRET_FILE: &str = "session.key";
/// The `meta` names (and sealing contexts) of the shared secrets in a shared store.
pub const KEY_HASH_SECRET: &str = "secret:key_hash";
pub const SESSION_SECRET: &str = "secret:session";

/// A 32-byte secret kept sealed in the store's `meta`: the first instance to start creates it
/// (insert if absent, then read back, so instances starting together agree), every other one
/// reads it.
pub async fn shared_secret(
    store: &dyn Store,
    sealer: &Sealer,
    name: &str,
) -> Result<[u8; 32], String> {
    let fresh: [u8; 32] = rand::random();
    let sealed = sealer.seal(name, &fresh)?;
    let stored = store
        .meta_or_insert(name, &sealed)
        .await
        .map_err(|e| format!("cannot read {name} from the store: {e}"))?;
    let plain = sealer.open(name, &stored)?;
    <[u8; 32]>::try_from(plain.as_slice())
        .map_err(|_| format!("{name} in the store is damaged: expected 32 bytes"))
}

/// Every group the store knows, with its platform, and the groups' routing settings.
pub async fn groups(
    store: &dyn Store,
) -> Result<(BTreeMap<String, Platform>, GroupSettings), String> {
    let records = store
        .list_groups()
        .await
        .map_err(|e| format!("cannot read groups from the store: {e}"))?;
    Ok((
        records
            .iter()
            .map(|g| (g.name.clone(), g.platform))
            .collect(),
        group_settings(&records),
    ))
}

/// The routing settings the running snapshot holds for `records`. The admin API and the
/// config checked them before they were stored; a stored map that fails anyway (a hand edit) is
/// left out with a warning rather than stopping the gateway.
pub fn group_settings(records: &[GroupRecord]) -> GroupSettings {
    let mut settings = GroupSettings::default();
    for group in records {
        let stored = &group.settings;
        let model_map = match ModelMap::new(&stored.model_map) {
            Ok(map) => map,
            Err(e) => {
                tracing::warn!(group = %group.name, "the stored model_map is left out: {e}");
                ModelMap::default()
            }
        };
        if stored.translate || !model_map.is_empty() {
            let routing = GroupRouting {
                translate: stored.translate,
                model_map,
            };
            settings.routing.insert(group.name.clone(), routing);
        }
        if !stored.model_fallback.is_empty() {
            match crate::domain::check_model_fallback(&stored.model_fallback) {
                Ok(()) => {
                    settings
                        .model_fallback
                        .insert(group.name.clone(), stored.model_fallback.clone());
                }
                Err((model, e)) => tracing::warn!(
                    group = %group.name,
                    "the stored model_fallback is left out ({model}: {e})"
                ),
            }
        }
    }
    settings
}

/// The running price table: the shipped defaults plus the store's prices (the config's, written
/// at start, and the admin API's).
pub async fn price_table(store: &dyn Store) -> Result<crate::pricing::PriceTable, String> {
    let rows = store
        .list_prices()
        .await
        .map_err(|e| format!("cannot read prices from the store: {e}"))?;
    Ok(crate::pricing::PriceTable::with_specs(
        rows.iter().map(|p| (p.model.as_str(), &p.price)),
    ))
}

fn announce_key(origin: &KeyOrigin) {
    match origin {
        KeyOrigin::Config => {
            tracing::info!("stored credentials are encrypted with storage.encryption_key");
        }
        KeyOrigin::ExistingFile(path) => tracing::info!(
            "stored credentials are encrypted with the key in {} (keep a copy of it with your backups)",
            path.display()
        ),
        KeyOrigin::GeneratedFile(path) => tracing::warn!(
            "generated the encryption key for stored credentials in {}: back it up now; without it a restored database cannot be read (or set storage.encryption_key to its content)",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GroupSettingsRecord, Source};

    fn record(name: &str, settings: GroupSettingsRecord) -> GroupRecord {
        GroupRecord {
            name: name.to_owned(),
            platform: Platform::OpenAi,
            source: Source::Admin,
            created_at: 0,
            settings,
        }
    }

    #[test]
    fn stored_settings_become_the_snapshots_and_a_bad_one_is_left_out_alone() {
        let good = GroupSettingsRecord {
            translate: true,
            model_map: [("claude-*".to_owned(), "gpt-5.1-codex".to_owned())].into(),
            model_fallback: [("gpt-5".to_owned(), vec!["gpt-5-mini".to_owned()])].into(),
        };
        // Only a hand edit of the database makes these.
        let bad = GroupSettingsRecord {
            translate: true,
            model_map: [("claude-*".to_owned(), " ".to_owned())].into(),
            model_fallback: [("gpt-5".to_owned(), vec!["gpt-5".to_owned()])].into(),
        };
        let plain = GroupSettingsRecord::default();
        let settings = group_settings(&[
            record("good", good),
            record("bad", bad),
            record("plain", plain),
        ]);
        let good = settings.routing("good").unwrap();
        assert!(good.translate);
        assert_eq!(good.model_map.map("claude-opus-4"), Some("gpt-5.1-codex"));
        assert_eq!(settings.model_fallback["good"]["gpt-5"], ["gpt-5-mini"]);
        // The bad group still translates; its broken map and fallback are left out.
        let bad = settings.routing("bad").unwrap();
        assert!(bad.translate && bad.model_map.is_empty());
        assert!(!settings.model_fallback.contains_key("bad"));
        assert!(settings.routing("plain").is_none());
    }
}
