//! At start, the config file's groups (with their `translate`, `model_map` and `model_fallback`),
//! prices, keys and accounts are written into the store marked `source=config`; config rows the
//! file no longer declares are removed, so the file stays the truth for what it declares and the
//! admin API owns the rest (a price the admin API set for a model the file then declares takes the
//! file's price; the admin API refuses to change or delete a config row). A configuration reload
//! does the same with the file it re-read.

use std::collections::HashSet;

use super::crypto::Sealer;
use super::keys::{hint, KeyHasher};
use super::{
    accounts, now_secs, GroupRecord, GroupSettingsRecord, KeyRecord, PriceRecord, Source, Store,
};
use crate::config::Config;

pub async fn config_into_store(
    config: &Config,
    store: &dyn Store,
    hasher: &KeyHasher,
    sealer: &Sealer,
) -> Result<(), String> {
    let fail = |e: super::StoreError| format!("cannot write the config into the store: {e}");
    let now = now_secs();

    // Checked before anything is written, so a refused config (at start or on reload) leaves the
    // store as it was.
    let existing_keys = store.list_keys().await.map_err(fail)?;
    for spec in &config.api_keys {
        let hash = hasher.hex_digest(spec.key.expose());
        // A runtime key with the same secret under another name would authenticate twice.
        if let Some(clash) = existing_keys
            .iter()
            .find(|k| k.key_hash == hash && k.name != spec.name && k.source == Source::Admin)
        {
            return Err(format!(
                "api_keys: the key named {:?} in the config is the same key as {:?}, created through the admin API; delete one of them",
                spec.name, clash.name
            ));
        }
    }

    let mut names = HashSet::new();
    for (name, platform) in &config.groups {
        names.insert(name.clone());
        store
            .upsert_group(&GroupRecord {
                name: name.clone(),
                platform: *platform,
                source: Source::Config,
                created_at: now,
                settings: GroupSettingsRecord {
                    translate: config.group_routing.get(name).is_some_and(|r| r.translate),
                    model_map: config
                        .group_routing
                        .get(name)
                        .map(|r| r.model_map.entries())
                        .unwrap_or_default(),
                    model_fallback: config.model_fallback.get(name).cloned().unwrap_or_default(),
                },
            })
            .await
            .map_err(fail)?;
    }
    for stale in store.list_groups().await.map_err(fail)? {
        if stale.source == Source::Config && !names.contains(&stale.name) {
            store.delete_group(&stale.name).await.map_err(fail)?;
        }
    }

    // Only what differs is written: on a shared store each write makes every instance reload.
    let existing_prices = store.list_prices().await.map_err(fail)?;
    for (model, price) in &config.prices {
        let old = existing_prices.iter().find(|p| &p.model == model);
        if old.is_some_and(|p| p.source == Source::Config && p.price == *price) {
            continue;
        }
        if old.is_some_and(|p| p.source == Source::Admin) {
            tracing::info!(%model, "the config's price replaces the one set through the admin API");
        }
        store
            .upsert_price(&PriceRecord {
                model: model.clone(),
                price: *price,
                source: Source::Config,
                updated_at: now,
            })
            .await
            .map_err(fail)?;
    }
    for stale in existing_prices {
        if stale.source == Source::Config && !config.prices.contains_key(&stale.model) {
            store.delete_price(&stale.model).await.map_err(fail)?;
        }
    }

    let mut names = HashSet::new();
    for spec in &config.api_keys {
        names.insert(spec.name.clone());
        let hash = hasher.hex_digest(spec.key.expose());
        let (prefix, suffix) = hint(spec.key.expose());
        let created_at = existing_keys
            .iter()
            .find(|k| k.name == spec.name)
            .map_or(now, |k| k.created_at);
        store
            .upsert_key(&KeyRecord {
                name: spec.name.clone(),
                key_hash: hash,
                prefix,
                suffix,
                group: spec.group.clone(),
                enabled: spec.enabled,
                expires_at: spec.limits.expires_at,
                concurrency: spec.concurrency,
                rpm_limit: spec.limits.rpm_limit,
                daily_spend_limit: spec.limits.daily_spend_limit,
                monthly_spend_limit: spec.limits.monthly_spend_limit,
                allowed_models: spec.limits.allowed_models.clone(),
                source: Source::Config,
                created_at,
            })
            .await
            .map_err(fail)?;
    }
    for stale in existing_keys {
        if stale.source == Source::Config && !names.contains(&stale.name) {
            store.delete_key(&stale.name).await.map_err(fail)?;
        }
    }

    let existing_accounts = store.list_accounts().await.map_err(fail)?;
    let mut names = HashSet::new();
    for spec in &config.accounts {
        names.insert(spec.name.clone());
        let mut record = accounts::to_record(spec, Source::Config, sealer)?;
        if let Some(old) = existing_accounts.iter().find(|a| a.name == spec.name) {
            record.created_at = old.created_at;
        }
        store.upsert_account(&record).await.map_err(fail)?;
    }
    for stale in existing_accounts {
        if stale.source == Source::Config && !names.contains(&stale.name) {
            store.delete_account(&stale.name).await.map_err(fail)?;
        }
    }
    Ok(())
}
