//! The handles of the Redis backend: each keeps this instance's view (the local backend's own
//! types) and writes its changes through [`Shared`].

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::local;
use super::shared::{MapMirror, Mirror, Shared, SpendMirror};
use super::{SealedValue, SharedKey, SharedRecord, SharedValue};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// === leases ===

/// One name's leases: this instance's in `local` (which also bounds them by the limit), all
/// instances' in the sorted set `key`.
pub struct LeaseSet {
    pub(super) local: Arc<local::LeaseSet>,
    key: String,
    /// The signal a release wakes on every instance.
    signal: String,
    shared: Arc<Shared>,
    /// Local lease ids also held in Redis (renewed by the instance's renewer).
    held: Mutex<HashSet<u64>>,
}

impl LeaseSet {
    pub fn new(
        shared: &Arc<Shared>,
        name: &str,
        signal: &str,
        freed: Arc<tokio::sync::Notify>,
    ) -> Arc<Self> {
        let set = Arc::new(Self {
            local: local::LeaseSet::new(name, None, freed),
            key: shared.key(&format!("lease:{name}")),
            signal: signal.to_owned(),
            shared: Arc::clone(shared),
            held: Mutex::default(),
        });
        shared.register_leases(Arc::downgrade(&set));
        set
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The Redis ids of the leases held here.
    pub fn held_ids(&self) -> Vec<String> {
        let instance = self.shared.instance();
        lock(&self.held)
            .iter()
            .map(|id| format!("{instance}:{id}"))
            .collect()
    }
}

/// A lease of this instance; [`Lease::confirm`] takes it in Redis too.
pub struct Lease {
    pub(super) local: local::Lease,
    set: Arc<LeaseSet>,
    in_redis: AtomicBool,
}

impl Lease {
    pub fn new(local: local::Lease, set: &Arc<LeaseSet>) -> Self {
        Self {
            local,
            set: Arc::clone(set),
            in_redis: AtomicBool::new(false),
        }
    }

    /// The lease set's Redis key and this lease's id in it.
    pub fn redis_ids(&self) -> (&str, String) {
        let id = self.local.id();
        (
            &self.set.key,
            format!("{}:{id}", self.set.shared.instance()),
        )
    }

    /// Notes that the lease was taken in Redis too (by a script that did more than that: the
    /// key's admission); it is renewed and released there from now on.
    pub fn taken_in_redis(&self) {
        lock(&self.set.held).insert(self.local.id());
        self.in_redis.store(true, Ordering::Release);
    }

    /// Takes the lease across instances (one round trip): false when every slot of the name is
    /// held somewhere. Redis unreachable: true (this instance's own limit holds).
    pub async fn confirm(&self, limit: u32) -> bool {
        let id = self.local.id();
        let redis_id = format!("{}:{id}", self.set.shared.instance());
        match self
            .set
            .shared
            .acquire_lease(&self.set.key, limit, &redis_id)
            .await
        {
            Some(true) => {
                lock(&self.set.held).insert(id);
                self.in_redis.store(true, Ordering::Release);
                true
            }
            Some(false) => false,
            None => true,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.in_redis.load(Ordering::Acquire) {
            return;
        }
        let id = self.local.id();
        lock(&self.set.held).remove(&id);
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(&self.set.key)
            .arg(format!("{}:{id}", self.set.shared.instance()));
        let wake = self.set.shared.publish_signal(&self.set.signal);
        self.set.shared.send(vec![zrem, wake]);
    }
}

// === records ===

pub struct RecordInner<T> {
    value: Mutex<T>,
    /// What Redis holds as far as this instance knows (the last value written or loaded).
    last: Mutex<Option<String>>,
    key: String,
    shared: Arc<Shared>,
    /// A write that did not reach Redis: pushed again when Redis answers.
    dirty: Arc<AtomicBool>,
}

pub struct Record<T>(Arc<RecordInner<T>>);

impl<T: SharedRecord + Send + 'static> Record<T> {
    pub fn new(shared: &Arc<Shared>, name: &str, initial: T) -> Self {
        let inner = Arc::new(RecordInner {
            value: Mutex::new(initial),
            last: Mutex::new(None),
            key: shared.key(&format!("account:{name}")),
            shared: Arc::clone(shared),
            dirty: Arc::new(AtomicBool::new(false)),
        });
        let weak: Weak<RecordInner<T>> = Arc::downgrade(&inner);
        shared.register_mirror(&inner.key, weak);
        Self(inner)
    }

    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&lock(&self.0.value))
    }

    pub fn update_local<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.0.value))
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let (result, exported) = {
            let mut value = lock(&self.0.value);
            let result = f(&mut value);
            (result, value.export())
        };
        {
            let mut last = lock(&self.0.last);
            if last.as_deref() == Some(exported.as_str()) {
                return result;
            }
            *last = Some(exported.clone());
        }
        if self.0.shared.is_up() {
            self.0
                .shared
                .write_mirror_noting(&self.0.key, &exported, Some(&self.0.dirty));
        } else {
            self.0.dirty.store(true, Ordering::Release);
        }
        result
    }
}

impl<T: SharedRecord + Send> Mirror for RecordInner<T> {
    fn load(&self, stored: Option<&str>) {
        let Some(stored) = stored else { return };
        let mut last = lock(&self.last);
        if last.as_deref() == Some(stored) {
            return;
        }
        lock(&self.value).import(stored);
        *last = Some(stored.to_owned());
    }

    fn dirty(&self) -> Option<String> {
        self.dirty
            .swap(false, Ordering::AcqRel)
            .then(|| lock(&self.value).export())
    }
}

// === expiring values ===

pub struct MapInner<K, V> {
    local: local::ExpiringMap<K, V>,
    kind: String,
    shared: Arc<Shared>,
}

pub struct ExpiringMap<K, V>(Arc<MapInner<K, V>>);

impl<K, V> ExpiringMap<K, V>
where
    K: Eq + Hash + Clone + SharedKey + Send + 'static,
    V: SharedValue + Send + 'static,
{
    pub fn new(shared: &Arc<Shared>, kind: &str) -> Self {
        let inner = Arc::new(MapInner {
            local: local::ExpiringMap::default(),
            kind: kind.to_owned(),
            shared: Arc::clone(shared),
        });
        let weak: Weak<MapInner<K, V>> = Arc::downgrade(&inner);
        shared.register_map(kind, weak);
        Self(inner)
    }

    pub fn update<R>(
        &self,
        key: &K,
        ttl: Option<Duration>,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> R {
        let mut write = None;
        let result = self.0.local.update(key, ttl, |value| {
            let before = value.as_ref().map(SharedValue::encode);
            let result = f(value);
            let after = value.as_ref().map(SharedValue::encode);
            if before != after || (ttl.is_some() && after.is_some()) {
                write = Some(after);
            }
            result
        });
        if let Some(after) = write {
            self.0
                .shared
                .write_expiring(&self.0.kind, &key.to_shared(), after.as_deref(), ttl);
        }
        result
    }

    pub fn take(&self, key: &K) -> Option<V> {
        let value = self.0.local.take(key);
        self.0
            .shared
            .write_expiring(&self.0.kind, &key.to_shared(), None, None);
        value
    }

    pub fn remove(&self, key: &K) {
        self.0.local.remove(key);
        self.0
            .shared
            .write_expiring(&self.0.kind, &key.to_shared(), None, None);
    }

    pub fn len(&self) -> usize {
        self.0.local.len()
    }

    /// Reads `key` from Redis into this instance's view when it is not there (a value written
    /// before this instance subscribed). One round trip; not for the hot path.
    pub async fn fetch(&self, key: &K) {
        if self.0.local.update(key, None, |v| v.is_some()) {
            return;
        }
        if let Some((stored, ttl)) = self
            .0
            .shared
            .read_expiring(&self.0.kind, &key.to_shared())
            .await
        {
            if let Some(value) = V::decode(&stored) {
                self.0.local.update(key, Some(ttl), |v| *v = Some(value));
            }
        }
    }
}

impl<K, V> MapMirror for MapInner<K, V>
where
    K: Eq + Hash + Clone + SharedKey + Send,
    V: SharedValue + Send,
{
    fn apply(&self, key: &str, value: Option<&str>, ttl: Option<Duration>) {
        let Some(key) = K::from_shared(key) else {
            return;
        };
        match value.and_then(V::decode) {
            Some(value) => self.local.update(&key, ttl, |v| *v = Some(value)),
            None => self.local.remove(&key),
        }
    }
}

// === versioned values ===

pub struct CellInner<T> {
    local: local::VersionedCell<T>,
    /// The name the value is sealed for.
    name: String,
    key: String,
    shared: Arc<Shared>,
    dirty: Arc<AtomicBool>,
    /// Whether a value that does not open here was reported (once per cell).
    warned: AtomicBool,
}

pub struct VersionedCell<T>(Arc<CellInner<T>>);

#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    gen: u64,
    v: String,
}

impl<T> CellInner<T>
where
    T: SealedValue,
{
    /// The stored form of `value` at `gen` (`None`: it cannot be sealed, so it is not written).
    fn stored(&self, value: &T, gen: u64) -> Option<String> {
        match value.seal(&self.name, self.shared.sealer()) {
            Ok(v) => serde_json::to_string(&Stored { gen, v }).ok(),
            Err(e) => {
                tracing::warn!(key = %self.key, "runtime state: a value cannot be sealed ({e}); it is not shared");
                None
            }
        }
    }
}

impl<T: Clone + SealedValue + Send + 'static> VersionedCell<T> {
    pub fn new(shared: &Arc<Shared>, name: &str, initial: T) -> Self {
        let inner = Arc::new(CellInner {
            local: local::VersionedCell::new(initial),
            name: name.to_owned(),
            key: shared.key(&format!("tokens:{name}")),
            shared: Arc::clone(shared),
            dirty: Arc::new(AtomicBool::new(false)),
            warned: AtomicBool::new(false),
        });
        let weak: Weak<CellInner<T>> = Arc::downgrade(&inner);
        shared.register_mirror(&inner.key, weak);
        Self(inner)
    }

    pub fn load(&self) -> (T, u64) {
        self.0.local.load()
    }

    pub fn read<R>(&self, f: impl FnOnce(&T, u64) -> R) -> R {
        self.0.local.read(f)
    }

    pub fn compare_and_set(&self, expected: u64, value: T) -> Result<u64, u64> {
        let stored = self.0.stored(&value, expected.saturating_add(1));
        let generation = self.0.local.compare_and_set(expected, value)?;
        let Some(stored) = stored else {
            return Ok(generation);
        };
        if self.0.shared.is_up() {
            self.0
                .shared
                .cas_mirror(&self.0.key, expected, &stored, &self.0.dirty);
        } else {
            self.0.dirty.store(true, Ordering::Release);
        }
        Ok(generation)
    }

    /// Reads what Redis holds now (after taking the refresh lock: another instance may have
    /// refreshed meanwhile).
    pub async fn sync(&self) {
        self.0.shared.reload(&self.0.key).await;
    }
}

impl<T: Clone + SealedValue + Send> Mirror for CellInner<T> {
    fn load(&self, stored: Option<&str>) {
        let Some(stored) = stored.and_then(|s| serde_json::from_str::<Stored>(s).ok()) else {
            return;
        };
        match T::open(&self.name, &stored.v, self.shared.sealer()) {
            Ok(value) => self.local.replace_if_newer(stored.gen, value),
            // Another key wrote it (or it was copied from another name): as if absent; the
            // store's copy stays the truth.
            Err(e) => {
                if !self.warned.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        key = %self.key,
                        "runtime state: the shared value does not open with this instance's key ({e}); it is ignored (do all instances use the same storage.encryption_key?)"
                    );
                }
            }
        }
    }

    fn dirty(&self) -> Option<String> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return None;
        }
        let (value, gen) = self.local.load();
        self.stored(&value, gen)
    }
}

// === single flight ===

/// How long a refresh lock lives if its holder dies.
const LOCK_TTL: Duration = Duration::from_secs(60);
/// How often a waiter for another instance's refresh looks again.
const LOCK_POLL: Duration = Duration::from_millis(50);

pub struct RefreshLock {
    local: tokio::sync::Mutex<()>,
    key: String,
    shared: Arc<Shared>,
}

/// Releases the Redis lock (compare-and-delete) when dropped.
pub struct Unlock {
    key: String,
    owner: String,
    shared: Arc<Shared>,
}

impl Drop for Unlock {
    fn drop(&mut self) {
        self.shared.unlock(&self.key, &self.owner);
    }
}

impl RefreshLock {
    pub fn new(shared: &Arc<Shared>, name: &str) -> Self {
        Self {
            local: tokio::sync::Mutex::new(()),
            key: shared.key(&format!("refresh:{name}")),
            shared: Arc::clone(shared),
        }
    }

    /// This instance's lock first (one waiter per instance reaches Redis), then Redis's.
    pub async fn lock(&self) -> (tokio::sync::MutexGuard<'_, ()>, Option<Unlock>) {
        let guard = self.local.lock().await;
        let owner = {
            use rand::Rng;
            let n: u128 = rand::thread_rng().gen();
            format!("{}:{n:032x}", self.shared.instance())
        };
        loop {
            match self.shared.try_lock(&self.key, &owner, LOCK_TTL).await {
                Some(true) => {
                    return (
                        guard,
                        Some(Unlock {
                            key: self.key.clone(),
                            owner,
                            shared: Arc::clone(&self.shared),
                        }),
                    )
                }
                Some(false) => tokio::time::sleep(LOCK_POLL).await,
                // Redis unreachable: this instance's lock is all there is.
                None => return (guard, None),
            }
        }
    }
}

// === key windows and spending ===

/// Per-key request windows and spending totals with Redis: the windows are in Redis (taken by
/// [`Shared::admit_key`]), `local` holds them only while Redis does not answer; spending is
/// counted in `local`, the mirror of the totals in Redis, which every instance adds to.
pub struct KeyWindows {
    pub(super) local: local::KeyWindows,
    pub(super) shared: Arc<Shared>,
    /// Keys (with the day) whose totals were asked of Redis once: a key whose spending this
    /// instance has not seen yet is read in the background the first time it is checked.
    fetched: Mutex<HashMap<String, i64>>,
}

impl KeyWindows {
    pub fn new(shared: &Arc<Shared>) -> Arc<Self> {
        let windows = Arc::new(Self {
            local: local::KeyWindows::default(),
            shared: Arc::clone(shared),
            fetched: Mutex::default(),
        });
        let weak: Weak<KeyWindows> = Arc::downgrade(&windows);
        shared.register_spend(weak);
        windows
    }

    /// Counted here, and added in Redis in the background; the totals Redis answers with come
    /// back on the pool channel.
    pub fn add(&self, key: &str, day: i64, month: i64, day_amount: f64, month_amount: f64) {
        self.local.add(key, day, month, day_amount, month_amount);
        self.shared
            .spend(key, day, month, "add", (day_amount, month_amount));
    }

    /// The store's totals at start: Redis keeps the larger of its count and the store's.
    pub fn seed(&self, key: &str, day: i64, month: i64, day_total: f64, month_total: f64) {
        self.local.raise(key, day, month, day_total, month_total);
        lock(&self.fetched).insert(key.to_owned(), day);
        self.shared
            .spend(key, day, month, "max", (day_total, month_total));
    }

    /// From the mirror (no round trip); the first time a key is asked for in a day, Redis's
    /// totals are read in the background.
    pub fn totals(&self, key: &str, day: i64, month: i64) -> (f64, f64) {
        let first = {
            let mut fetched = lock(&self.fetched);
            match fetched.get_mut(key) {
                Some(seen) if *seen >= day => false,
                Some(seen) => {
                    *seen = day;
                    true
                }
                None => {
                    fetched.insert(key.to_owned(), day);
                    true
                }
            }
        };
        if first {
            self.shared.spend(key, day, month, "get", (0.0, 0.0));
        }
        self.local.totals(key, day, month)
    }
}

impl SpendMirror for KeyWindows {
    fn raise(&self, key: &str, day: i64, month: i64, day_total: f64, month_total: f64) {
        self.local.raise(key, day, month, day_total, month_total);
    }

    fn push(&self) {
        for (key, day, month, day_total, month_total) in self.local.all_totals() {
            self.shared
                .spend(&key, day, month, "max", (day_total, month_total));
        }
    }
}
