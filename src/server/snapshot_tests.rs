//! `AppState::snapshot_writes` against the races it exists for: a reload from the store that read
//! the keys just before an admin write must not put the old list back after the write applied,
//! of two admin changes to one key at once, the second must not write the key as it was before
//! the first, and a group's delete must not find it unused and then delete it after a key moved
//! in.
//!
//! The store is an in-memory fake whose `list_keys` can stop after reading, so the reload is held
//! between its read and its swap for as long as the test wants; with nothing on other threads and
//! tokio's clock paused, a sleep runs every task until it is done or waiting.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{MapEnv, ReloadRequests};
use crate::domain::Platform;
use crate::http::auth::KeyDirectory;
use crate::limits::Limits;
use crate::pool::Pool;
use crate::runtime_state::{Live, RuntimeState};
use crate::state::AppState;
use crate::store::crypto::Sealer;
use crate::store::data_dir::DataDir;
use crate::store::keys::KeyHasher;
use crate::store::{
    AccountRecord, AuditFilter, AuditRow, GroupRecord, KeyRecord, MetaRow, SealedTokens, Store,
    StoreResult, TotalsBy, UsageFilter, UsageRow, UsageTotals,
};
use crate::upstream::session::SessionIds;
use crate::usage::{UsageRecord, UsageSink};

/// Keys and groups in memory; everything else empty. `list_keys`, once `hold` is set, reads the
/// keys, says so on `read`, and returns them only after `release`.
#[derive(Default)]
struct HeldStore {
    keys: Mutex<Vec<KeyRecord>>,
    groups: Vec<GroupRecord>,
    hold: std::sync::atomic::AtomicBool,
    read: Notify,
    release: Notify,
}

fn done<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, StoreResult<T>> {
    Box::pin(async move { Ok(value) })
}

impl Store for HeldStore {
    fn list_prices(&self) -> BoxFuture<'_, StoreResult<Vec<crate::store::PriceRecord>>> {
        done(Vec::new())
    }
    fn upsert_price(&self, _: &crate::store::PriceRecord) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn delete_price(&self, _: &str) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn get_meta(&self, _: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        done(None)
    }
    fn set_meta(&self, _: &str, _: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn meta_or_insert(&self, _: &str, value: &[u8]) -> BoxFuture<'_, StoreResult<Vec<u8>>> {
        done(value.to_vec())
    }
    fn list_meta(&self) -> BoxFuture<'_, StoreResult<Vec<MetaRow>>> {
        done(Vec::new())
    }
    fn list_groups(&self) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>> {
        done(self.groups.clone())
    }
    fn upsert_group(&self, _: &GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn delete_group(&self, _: &str) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn list_keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let keys = self.keys.lock().unwrap().clone();
            if self.hold.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.read.notify_one();
                self.release.notified().await;
            }
            Ok(keys)
        })
    }
    fn insert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.keys.lock().unwrap().push(key.clone());
        done(())
    }
    fn update_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        for stored in self.keys.lock().unwrap().iter_mut() {
            if stored.name == key.name {
                *stored = key.clone();
            }
        }
        done(())
    }
    fn upsert_key(&self, _: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn delete_key(&self, _: &str) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn list_accounts(&self) -> BoxFuture<'_, StoreResult<Vec<AccountRecord>>> {
        done(Vec::new())
    }
    fn insert_account(&self, _: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn upsert_account(&self, _: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn delete_account(&self, _: &str) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn save_account_state(&self, _: &str, _: &str) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn account_states(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>> {
        done(Vec::new())
    }
    fn save_tokens(&self, _: &str, _: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        done(())
    }
    fn saved_tokens(&self) -> BoxFuture<'_, StoreResult<Vec<SealedTokens>>> {
        done(Vec::new())
    }
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> BoxFuture<'a, StoreResult<u64>> {
        done(rows.len() as u64)
    }
    fn list_usage(
        &self,
        _: &UsageFilter,
        _: u32,
        _: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>> {
        done(Vec::new())
    }
    fn count_usage(&self, _: &UsageFilter) -> BoxFuture<'_, StoreResult<u64>> {
        done(0)
    }
    fn usage_totals(
        &self,
        _: &UsageFilter,
        _: TotalsBy,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageTotals>>> {
        done(Vec::new())
    }
    fn spend_since(&self, _: i64) -> BoxFuture<'_, StoreResult<Vec<(String, f64)>>> {
        done(Vec::new())
    }
    fn append_audit<'a>(&'a self, _: &'a AuditRow) -> BoxFuture<'a, StoreResult<()>> {
        done(())
    }
    fn list_audit(&self, _: &AuditFilter, _: u32) -> BoxFuture<'_, StoreResult<Vec<AuditRow>>> {
        done(Vec::new())
    }
    fn prune_audit(&self, _: i64) -> BoxFuture<'_, StoreResult<u64>> {
        done(0)
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct NoUsage;

impl UsageSink for NoUsage {
    fn record(&self, _: UsageRecord) {}
}

/// The state `serve` builds, on `store`, with the default configuration and no accounts.
fn state(store: Arc<HeldStore>, dir: &std::path::Path) -> Arc<AppState> {
    let config = crate::config::load(None, &MapEnv::default()).unwrap();
    let data_dir = DataDir::open(dir).unwrap();
    let (sealer, _) = Sealer::from_config(None, &data_dir).unwrap();
    let runtime = RuntimeState::default();
    let keys = KeyDirectory::with_state(KeyHasher::new([7; 32]), runtime.clone());
    keys.set_group("default", Platform::OpenAi);
    let prices = Arc::new(Live::new(config.price_table()));
    Arc::new(AppState {
        gateway_config: Live::new(config.gateway.clone()),
        groups: Live::new(config.group_settings()),
        oauth: config.oauth.clone(),
        pool: Pool::with_state(
            Vec::new(),
            super::pool_policy(&config.gateway),
            runtime.clone(),
        )
        .unwrap(),
        keys,
        snapshot_writes: tokio::sync::Mutex::new(()),
        limits: Arc::new(
            Limits::seeded_in(&runtime, Vec::new(), Vec::new()).with_prices(Arc::clone(&prices)),
        ),
        prices,
        store,
        sealer: Arc::new(sealer),
        usage: Arc::new(NoUsage),
        data_dir,
        sessions: SessionIds::new([9; 32]),
        admin_token: None,
        access_log: false,
        tasks: TaskTracker::new(),
        websocket_refusals: crate::upstream::websocket::Refusals::new(&runtime),
        shutdown: CancellationToken::new(),
        config_origin: Live::new(config.origin.clone()),
        reload: ReloadRequests::channel().0,
        runtime,
        clients: crate::http::client_addr::ClientLimits {
            trusted_proxies: Vec::new(),
            admin_failures: Default::default(),
        },
    })
}

/// A held store with the config's `default` group.
fn with_default_group() -> HeldStore {
    HeldStore {
        groups: vec![GroupRecord {
            name: "default".into(),
            platform: Platform::OpenAi,
            source: crate::store::Source::Config,
            created_at: 0,
            settings: Default::default(),
        }],
        ..Default::default()
    }
}

fn bearer(key: &str) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {key}").parse().unwrap(),
    );
    headers
}

fn admin() -> crate::admin::Admin {
    crate::admin::Admin {
        actor: crate::store::audit::Actor::new("test", None),
    }
}

#[tokio::test]
async fn a_key_created_while_a_reload_holds_its_read_is_still_known_after_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_default_group());
    let state = state(Arc::clone(&store), dir.path());
    store.hold.store(true, std::sync::atomic::Ordering::SeqCst);

    // The reload reads the keys (none yet) and stops before it swaps them in.
    let reload = state.tasks.spawn({
        let state = Arc::clone(&state);
        async move { super::reload::from_store(&state, "the test").await }
    });
    store.read.notified().await;

    // The admin creates a key meanwhile: it runs until it is done or waits for the reload.
    tokio::time::pause();
    let create = state.tasks.spawn({
        let state = Arc::clone(&state);
        async move {
            let body = serde_json::from_value(serde_json::json!({"name": "late"})).unwrap();
            crate::admin::create_key(&state, &admin(), body).await
        }
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    tokio::time::resume();

    store.release.notify_one();
    reload.await.unwrap().unwrap();
    let Ok(created) = create.await.unwrap() else {
        panic!("the key was not created");
    };
    assert_eq!(
        store.keys.lock().unwrap().len(),
        1,
        "the key is in the store"
    );
    let known = state.keys.authenticate(&bearer(&created.api_key));
    assert!(
        known.is_ok(),
        "the reload put back the list it read before the key was created"
    );
}

#[tokio::test]
async fn two_changes_to_one_key_at_once_both_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_default_group());
    let state = state(Arc::clone(&store), dir.path());
    let body = serde_json::from_value(serde_json::json!({"name": "k"})).unwrap();
    crate::admin::create_key(&state, &admin(), body)
        .await
        .unwrap();
    let change = |fields: serde_json::Value| {
        let state = Arc::clone(&state);
        let body: crate::admin::UpdateKey = serde_json::from_value(fields).unwrap();
        async move { crate::admin::update_key(&state, &admin(), "key.update", "k", body).await }
    };

    // The first change reads the key and stops there.
    store.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let first = state
        .tasks
        .spawn(change(serde_json::json!({"rpm_limit": 5})));
    store.read.notified().await;

    // The second runs until it is done or waits for the first.
    tokio::time::pause();
    let second = state
        .tasks
        .spawn(change(serde_json::json!({"concurrency": 3})));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    tokio::time::resume();

    store.release.notify_one();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let keys = store.keys.lock().unwrap().clone();
    assert_eq!(
        (keys[0].rpm_limit, keys[0].concurrency),
        (5, 3),
        "one change wrote the key as it was before the other"
    );
}

/// A group deleted while a key moves into it: the delete's check that no key uses the group
/// must still hold when it deletes, so the move waits for it and then finds no such group (it
/// must not land in between, leaving a key in a deleted group).
#[tokio::test]
async fn a_key_cannot_move_into_a_group_being_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut held = with_default_group();
    held.groups.push(GroupRecord {
        name: "doomed".into(),
        platform: Platform::OpenAi,
        source: crate::store::Source::Admin,
        created_at: 0,
        settings: Default::default(),
    });
    let store = Arc::new(held);
    let state = state(Arc::clone(&store), dir.path());
    state.keys.set_group("doomed", Platform::OpenAi);
    let body = serde_json::from_value(serde_json::json!({"name": "k"})).unwrap();
    crate::admin::create_key(&state, &admin(), body)
        .await
        .unwrap();

    // The delete reads the keys (none in the group) and stops there.
    store.hold.store(true, std::sync::atomic::Ordering::SeqCst);
    let delete = state.tasks.spawn({
        let state = Arc::clone(&state);
        async move { crate::admin::delete_group(&state, &admin(), "doomed").await }
    });
    store.read.notified().await;

    // The key moves into the group meanwhile: it runs until it is done or waits for the delete.
    tokio::time::pause();
    let moved = state.tasks.spawn({
        let state = Arc::clone(&state);
        let body: crate::admin::UpdateKey =
            serde_json::from_value(serde_json::json!({"group": "doomed"})).unwrap();
        async move { crate::admin::update_key(&state, &admin(), "key.update", "k", body).await }
    });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    tokio::time::resume();

    store.release.notify_one();
    delete.await.unwrap().unwrap();
    assert!(
        moved.await.unwrap().is_err(),
        "the key moved into the group after the delete found it unused"
    );
    assert_eq!(store.keys.lock().unwrap()[0].group, "default");
    assert!(state.keys.group_platform("doomed").is_none());
}
