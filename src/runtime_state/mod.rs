//! Runtime state: what the gateway knows only while it runs, behind a few small interfaces keyed
//! by stable names (account name, key name, a digest), so that one process (`state.backend:
//! local`, `local.rs`) or several instances sharing Redis (`state.backend: redis`, `shared.rs`)
//! can hold it.
//!
//! This module imports nothing of the crate: it stores the values its users define (the pool's
//! account health, the dashboard's sessions) and knows only names, limits, times and versions.
//!
//! ## The interfaces
//!
//! | trait | what it stores | key | Redis (`shared.rs`, `shared_handles.rs`) |
//! |---|---|---|---|
//! | [`Leases`] | concurrency slots of one account or one API key, as leases that end when their [`LeaseHandle`] drops, or at their expiry if never released | `account:{name}` / `key:{name}` | a sorted set `{prefix}lease:{name}` of lease ids (`{instance}:{n}`) scored by expiry on Redis's clock; taking one is a local pre-check (this instance alone stays under the limit) then one Lua call (drop expired members, count, add if under the limit: [`Lease::confirm`]); drop is `ZREM` plus a `PUBLISH`, sent by the writer; the instance's renewer pushes every held lease `state.lease_ttl` forward each `state.lease_ttl`/3 (one pipeline), so a killed instance's slots come back within the lease time; waiters also look again every 250 ms |
//! | [`Records`] | one record per name, read and changed in place: an account's health (cooldown and its reason, disabled flag, last error, quota, last probe; last use and strikes stay per instance) | account name | a string `{prefix}account:{name}` (JSON, no expiry; a cooldown's end in Unix ms); reads come from an in-process mirror (no round trip on the hot path); a change of the shared part is `SET` plus a `PUBLISH` carrying the value, and every other instance copies it into its mirror |
//! | [`Expiring`] | values that live for a time: sticky bindings, dashboard sessions, sign-in flows | a digest (key + conversation, session id) or the flow id | `{prefix}{kind}:{key}` with `SET … PX ttl` (`KEEPTTL` when only the value changes), `DEL` on removal; each change is published with its value and ttl and copied into every instance's mirror; [`ExpiringMap::fetch`] reads a value written before this instance subscribed |
//! | [`Versioned`] | a value with a generation that only moves by compare-and-set: an account's sign-in tokens | account name | a string `{prefix}tokens:{name}` (JSON: `gen` in the clear, the value sealed by its own type with the store's key, bound to the name: [`SealedValue`]; the published copy is the same sealed text); a Lua script writes only when the stored `gen` is the expected one; the refresh reads it ([`VersionedCell::sync`]) after taking the lock, so a refresh done by another instance is found, not repeated; a value that does not open here (another key) counts as absent, with one warning |
//! | [`SingleFlight`] | at most one holder at a time, others wait: the token refresh | account name | this instance's mutex first, then `SET {prefix}refresh:{name} <owner> NX PX 60000`, released by compare-and-delete (Lua); waiters poll every 50 ms |
//! | [`Signal`] | "something changed, look again": a slot was freed, an account may be usable | `pool`, `key:{name}` | a `PUBLISH` on `{prefix}pool` naming the signal; the subscriber task wakes that signal's local waiters on every other instance |
//! | [`WaitQueue`] | how many requests wait for a slot, bounded | one per pool | per instance, also with Redis (`gateway.queue_max_waiting` bounds each instance's queue) |
//! | [`Windows`] | per-key request windows (rpm) and spending per UTC day and month | key name | rpm: a sorted set `{prefix}rpm:{key}` of admissions scored by Redis's clock, trimmed, counted and added to in the key's admission script, which takes the key's slot in `{prefix}lease:key:{name}` in the same call, both or neither ([`KeyWindows::admit_key`]: one awaited call for a key with an rpm or a concurrency limit, none for a key without; a request waiting for the slot is counted in the window only when it gets it), expiring a window after its last admission; spending: strings `{prefix}spend:{key}:d:{YYYY-MM-DD}` and `:m:{YYYY-MM}` (USD, `INCRBYFLOAT`, kept a day past the period), added to by a script sent through the writer when a usage record is priced, which publishes the new totals; every instance (the sender too) raises its mirror to them, and the limit check reads the mirror (no round trip). Seeded at start with the larger of the store's totals and Redis's ([`KeyWindows::seed`]); a key first checked in a day is read in the background; after an outage each instance pushes its counts as a floor |
//!
//! Redis unreachable: every handle goes on with this instance's own state (mirrors, local
//! leases, its own rpm windows and spending counts), one warning is logged and `subrelay_state_backend_up` is 0; record and token writes
//! that did not reach Redis are pushed when it answers again, the other values are reloaded and
//! the leases held here are written back.
//!
//! ## How a Redis backend fits without slowing the local one
//!
//! Dispatch is static: each handle is an enum of backends ([`LeaseSet`], [`Record`],
//! [`ExpiringMap`], [`VersionedCell`], [`RefreshLock`], [`Signal`], [`WaitQueue`],
//! [`KeyWindows`]) with a `Local` and a `Redis` variant (the queue is local only), so a call is a `match` and a direct, inlinable call — no `dyn`, no boxed future, no
//! allocation for the local backend that its code did not make before. Handles are resolved once per name (when an account or key is loaded) and kept, so the
//! hot path never hashes a name to find its state. The local backend makes a fresh handle each
//! time (an account replaced through the admin API starts with fresh health and slots, as it
//! always did); a shared backend returns the name's existing state.
//!
//! What the local backend answers at once is a plain method. The Redis backend keeps them plain
//! too by answering from in-process mirrors kept current by the pool channel (records, sticky
//! bindings, sessions, flows, tokens, spending totals); its writes go out through the writer
//! task without the request waiting for them. Three calls need a real round trip: the refresh
//! lock ([`SingleFlight::lock`]), taking an account's lease across instances ([`Lease::confirm`],
//! awaited by `Pool::acquire` after the synchronous `Pool::select` picked an account and took
//! its local slot), and a key's admission ([`KeyWindows::admit_key`]: its rpm window and its
//! concurrency slot in one script, only for a key with either limit); the local lease's
//! `confirm` is ready at once. Budget (issue 17): a request waits for at most two round trips on
//! the hot path — the key's admission and the account's lease — and sends one pipeline (lease
//! releases, binding, health, spending) on the way out, without waiting; counted by
//! `subrelay_state_redis_calls` (tests/state_redis.rs checks both a key without limits: one
//! waited call, and a key with rpm and concurrency limits: two).

pub mod calendar;
mod live;
mod local;
mod shared;
mod shared_handles;
#[cfg(test)]
mod shared_tests;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::time::Instant;

pub use live::Live;
pub use shared::Shared;

/// A key of an expiring map as a shared backend names it.
pub trait SharedKey: Sized {
    fn to_shared(&self) -> String;
    fn from_shared(text: &str) -> Option<Self>;
}

/// A value as a shared backend stores it.
pub trait SharedValue: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

/// Seals what a shared backend must not hold in the clear (the store's key, supplied by the
/// caller): `context` is authenticated, so a value sealed for one name does not open as another's.
pub trait Seal: Send + Sync {
    fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, String>;
    fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, String>;
}

/// A value a shared backend stores sealed (sign-in tokens): the value's own layer says how it is
/// written and binds it to `name` (the account), so Redis never holds it in the clear.
pub trait SealedValue: Sized {
    fn seal(&self, name: &str, sealer: &dyn Seal) -> Result<String, String>;
    /// `Err`: not readable here (sealed with another key, or for another name).
    fn open(name: &str, sealed: &str, sealer: &dyn Seal) -> Result<Self, String>;
}

/// A record whose shared part (what other instances must see) is exported as text; what is
/// only this instance's business (last use, strikes) stays out of it.
pub trait SharedRecord {
    fn export(&self) -> String;
    /// Takes the shared part written by another instance.
    fn import(&mut self, stored: &str);
}

impl SharedKey for String {
    fn to_shared(&self) -> String {
        self.clone()
    }
    fn from_shared(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl SharedKey for [u8; 32] {
    fn to_shared(&self) -> String {
        self.iter().map(|b| format!("{b:02x}")).collect()
    }
    fn from_shared(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        if text.len() != 64 {
            return None;
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
}

impl SharedValue for String {
    fn encode(&self) -> String {
        self.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(text.to_owned())
    }
}

impl SharedValue for u32 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// The status an upstream refused a WebSocket upgrade with (`upstream::websocket`), shared so
/// every instance bridges that account over HTTP.
impl SharedValue for u16 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// Concurrency slots of one name (an account, an API key).
pub trait Leases {
    type Lease: LeaseHandle;
    /// A lease if fewer than `limit` are held (0: no limit). The lease ends when dropped.
    fn try_acquire(&self, limit: u32) -> Option<Self::Lease>;
    /// Leases held now (expired ones do not count).
    fn in_flight(&self) -> u32;
}

/// One held slot. Dropping it releases the slot and signals that a slot was freed.
pub trait LeaseHandle {
    /// Pushes the expiry one lease time forward (a long stream keeps its slot).
    #[allow(
        dead_code,
        reason = "the seam for expiring (shared) leases: the local sets are built without a \
                  lease time, so nothing renews yet; the Redis backend (issue 17) needs the \
                  relay to renew while a stream lasts"
    )]
    fn renew(&self);
}

/// One record per name, read and changed under a short lock (never across an `.await`).
pub trait Records<T> {
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R;
    fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
    /// Changes only what stays this instance's (no part of [`SharedRecord::export`]): a shared
    /// backend neither exports nor writes (the last use, on every request).
    fn update_local<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

/// Values that expire.
pub trait Expiring<K, V> {
    /// Runs `f` on the live value (`None`: absent or expired). What `f` leaves is stored (`None`
    /// removes it); `ttl` sets a new expiry from now, `None` keeps the current one (a new value
    /// needs a `ttl`: without one it is not kept).
    fn update<R>(&self, key: &K, ttl: Option<Duration>, f: impl FnOnce(&mut Option<V>) -> R) -> R;
    /// Removes and returns the live value.
    fn take(&self, key: &K) -> Option<V>;
    fn remove(&self, key: &K);
    /// Values held (live or not yet swept).
    #[cfg(test)]
    fn len(&self) -> usize;
}

/// A value whose generation moves only by compare-and-set.
pub trait Versioned<T> {
    /// The value and its generation.
    fn load(&self) -> (T, u64);
    /// Reads the value and its generation in place (no copy of the value).
    fn read<R>(&self, f: impl FnOnce(&T, u64) -> R) -> R;
    /// Stores `value` as generation `expected + 1` if the generation is still `expected`;
    /// otherwise returns the current generation.
    fn compare_and_set(&self, expected: u64, value: T) -> Result<u64, u64>;
}

/// At most one holder at a time per name.
pub trait SingleFlight {
    type Guard<'a>
    where
        Self: 'a;
    /// Waits for the lock; the guard releases it when dropped.
    fn lock(&self) -> impl Future<Output = Self::Guard<'_>> + Send;
}

/// Per-key spending totals (the request windows are [`KeyWindows::admit_key`]'s).
pub trait Windows {
    /// Adds to `key`'s totals of the period ids `day` and `month` (totals of older periods are
    /// forgotten).
    fn add(&self, key: &str, day: i64, month: i64, day_amount: f64, month_amount: f64);
    /// `key`'s totals in the periods `day` and `month`.
    fn totals(&self, key: &str, day: i64, month: i64) -> (f64, f64);
}

/// Which backend holds the runtime state (`state.backend`).
#[derive(Clone, Default)]
pub enum RuntimeState {
    /// In this process's memory.
    #[default]
    Local,
    /// In Redis, shared by the instances using the same prefix; read through mirrors here.
    Redis(Arc<Shared>),
}

impl RuntimeState {
    /// Redis at `url` under `prefix` (`state.backend: redis`); its tasks run on `tasks` until
    /// `shutdown`. Connects lazily: a Redis down at start is served like one that goes down.
    /// `sealer` seals the values Redis must not hold in the clear ([`SealedValue`]).
    pub fn redis(
        url: &str,
        prefix: &str,
        lease_ttl: Duration,
        sealer: Arc<dyn Seal>,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Self, String> {
        Shared::start(url, prefix, lease_ttl, sealer, tasks, shutdown).map(RuntimeState::Redis)
    }

    /// Tells every instance that the shared store changed (`PUBLISH {prefix}changes`), after a
    /// write that moved its change counter; nothing with local state.
    pub fn publish_store_change(&self) {
        if let RuntimeState::Redis(shared) = self {
            shared.publish_store_change();
        }
    }

    /// Woken when any instance published a store change (and after Redis came back, when one
    /// may have been missed); `None` with local state.
    pub fn store_changes(&self) -> Option<Arc<tokio::sync::Notify>> {
        match self {
            RuntimeState::Local => None,
            RuntimeState::Redis(shared) => Some(shared.store_changes()),
        }
    }

    /// Whether the shared backend answers (`None`: local state).
    pub fn backend_up(&self) -> Option<bool> {
        match self {
            RuntimeState::Local => None,
            RuntimeState::Redis(shared) => Some(shared.is_up()),
        }
    }

    /// Round trips a request waited for, and background pipelines, since start (`None`: local).
    pub fn round_trips(&self) -> Option<(u64, u64)> {
        match self {
            RuntimeState::Local => None,
            RuntimeState::Redis(shared) => Some(shared.counts()),
        }
    }

    /// How often a waiter for a slot looks again without being woken (a shared lease of a dead
    /// instance expires without a message).
    pub fn poll_every(&self) -> Option<Duration> {
        match self {
            RuntimeState::Local => None,
            RuntimeState::Redis(_) => Some(shared::POLL_EVERY),
        }
    }

    /// The concurrency slots of `name`; releasing one notifies `freed`.
    pub fn leases(&self, name: &str, freed: &Signal) -> LeaseSet {
        match self {
            RuntimeState::Local => {
                LeaseSet::Local(local::LeaseSet::new(name, None, freed.local_notify()))
            }
            RuntimeState::Redis(shared) => LeaseSet::Redis(shared_handles::LeaseSet::new(
                shared,
                name,
                freed.name(),
                freed.local_notify(),
            )),
        }
    }

    /// The record of `name`, starting from `initial` (a local record starts fresh; a shared one
    /// starts from what the other instances wrote).
    pub fn record<T: SharedRecord + Send + 'static>(&self, name: &str, initial: T) -> Record<T> {
        match self {
            RuntimeState::Local => Record::Local(local::Record::new(initial)),
            RuntimeState::Redis(shared) => {
                Record::Redis(shared_handles::Record::new(shared, name, initial))
            }
        }
    }

    /// A map of expiring values (`kind` names it: `sticky`, `session`, `flow`).
    pub fn expiring<K, V>(&self, kind: &str) -> ExpiringMap<K, V>
    where
        K: Eq + Hash + Clone + SharedKey + Send + 'static,
        V: SharedValue + Send + 'static,
    {
        match self {
            RuntimeState::Local => ExpiringMap::Local(local::ExpiringMap::default()),
            RuntimeState::Redis(shared) => {
                ExpiringMap::Redis(shared_handles::ExpiringMap::new(shared, kind))
            }
        }
    }

    /// `name`'s versioned value, starting at generation 0 (a shared backend stores it sealed).
    pub fn versioned<T: Clone + SealedValue + Send + 'static>(
        &self,
        name: &str,
        initial: T,
    ) -> VersionedCell<T> {
        match self {
            RuntimeState::Local => VersionedCell::Local(local::VersionedCell::new(initial)),
            RuntimeState::Redis(shared) => {
                VersionedCell::Redis(shared_handles::VersionedCell::new(shared, name, initial))
            }
        }
    }

    /// `name`'s single-flight lock.
    pub fn refresh_lock(&self, name: &str) -> RefreshLock {
        match self {
            RuntimeState::Local => RefreshLock::Local(local::RefreshLock::default()),
            RuntimeState::Redis(shared) => {
                RefreshLock::Redis(shared_handles::RefreshLock::new(shared, name))
            }
        }
    }

    pub fn signal(&self, channel: &str) -> Signal {
        match self {
            RuntimeState::Local => Signal::Local(Default::default()),
            RuntimeState::Redis(shared) => {
                let notify = Arc::new(tokio::sync::Notify::new());
                shared.register_signal(channel, &notify);
                Signal::Redis {
                    notify,
                    name: channel.into(),
                    shared: Arc::clone(shared),
                }
            }
        }
    }

    /// Requests waiting for a slot: counted per instance (also with a shared backend).
    pub fn wait_queue(&self, _name: &str) -> WaitQueue {
        WaitQueue::Local(Default::default())
    }

    /// Request windows and spending totals (shared with a shared backend).
    pub fn key_windows(&self) -> KeyWindows {
        match self {
            RuntimeState::Local => KeyWindows::Local(Default::default()),
            RuntimeState::Redis(shared) => {
                KeyWindows::Redis(shared_handles::KeyWindows::new(shared))
            }
        }
    }
}

// === impl LeaseSet ===

/// The concurrency slots of one name.
#[derive(Debug)]
pub enum LeaseSet {
    Local(std::sync::Arc<local::LeaseSet>),
    Redis(std::sync::Arc<shared_handles::LeaseSet>),
}

impl std::fmt::Debug for shared_handles::LeaseSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSet")
            .field("key", &self.key())
            .finish()
    }
}

/// One held slot of a [`LeaseSet`].
pub enum Lease {
    Local(local::Lease),
    Redis(shared_handles::Lease),
}

impl Lease {
    /// Takes the slot across instances too (a shared backend; one round trip): false when all
    /// of them are held somewhere (drop the lease). The local backend's lease is already whole.
    #[inline]
    pub async fn confirm(&self, limit: u32) -> bool {
        match self {
            Lease::Local(_) => true,
            Lease::Redis(lease) => lease.confirm(limit).await,
        }
    }
}

impl Leases for LeaseSet {
    type Lease = Lease;

    #[inline]
    fn try_acquire(&self, limit: u32) -> Option<Lease> {
        match self {
            LeaseSet::Local(set) => local::LeaseSet::try_acquire(set, limit).map(Lease::Local),
            LeaseSet::Redis(set) => local::LeaseSet::try_acquire(&set.local, limit)
                .map(|lease| Lease::Redis(shared_handles::Lease::new(lease, set))),
        }
    }

    fn in_flight(&self) -> u32 {
        match self {
            LeaseSet::Local(set) => set.in_flight(),
            LeaseSet::Redis(set) => set.local.in_flight(),
        }
    }
}

impl LeaseHandle for Lease {
    fn renew(&self) {
        match self {
            Lease::Local(lease) => lease.renew(),
            // The instance's renewer renews every lease it holds.
            Lease::Redis(lease) => lease.local.renew(),
        }
    }
}

impl LeaseSet {
    /// Waits for a lease (under `limit`; 0: no limit), looking again each time one of this
    /// set's leases is released. The caller bounds the wait.
    pub async fn acquire(&self, limit: u32) -> Lease {
        loop {
            let freed = self.released();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a release in between is not missed.
            freed.as_mut().enable();
            if let Some(lease) = self.try_acquire_shared(limit).await {
                return lease;
            }
            match self {
                LeaseSet::Local(_) => freed.await,
                // A slot of a dead instance comes back by expiry, without a message.
                LeaseSet::Redis(_) => {
                    let _ = tokio::time::timeout(shared::POLL_EVERY, freed).await;
                }
            }
        }
    }

    /// A lease if one is free now on every instance (a shared backend asks Redis: one round
    /// trip).
    pub async fn try_acquire_shared(&self, limit: u32) -> Option<Lease> {
        let lease = self.try_acquire(limit)?;
        lease.confirm(limit).await.then_some(lease)
    }

    /// Completes at the next release of one of this set's leases (or any other notification of
    /// the signal the set was made with).
    fn released(&self) -> Notified<'_> {
        match self {
            LeaseSet::Local(set) => set.released(),
            LeaseSet::Redis(set) => set.local.released(),
        }
    }

    /// Slots of `name` that expire `ttl` after their last renewal even if never dropped (local
    /// leases are always dropped; this is how a shared backend behaves when an instance dies).
    pub fn expiring(name: &str, ttl: Duration, freed: &Signal) -> Self {
        LeaseSet::Local(local::LeaseSet::new(name, Some(ttl), freed.local_notify()))
    }
}

// === impl Record ===

/// One name's record.
pub enum Record<T> {
    Local(local::Record<T>),
    Redis(shared_handles::Record<T>),
}

impl<T: SharedRecord + Send + 'static> Records<T> for Record<T> {
    #[inline]
    fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        match self {
            Record::Local(record) => record.read(f),
            Record::Redis(record) => record.read(f),
        }
    }

    #[inline]
    fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        match self {
            Record::Local(record) => record.update(f),
            Record::Redis(record) => record.update(f),
        }
    }

    #[inline]
    fn update_local<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        match self {
            Record::Local(record) => record.update(f),
            Record::Redis(record) => record.update_local(f),
        }
    }
}

// === impl ExpiringMap ===

/// Values that expire, by key.
pub enum ExpiringMap<K, V> {
    Local(local::ExpiringMap<K, V>),
    Redis(shared_handles::ExpiringMap<K, V>),
}

impl<K, V> ExpiringMap<K, V>
where
    K: Eq + Hash + Clone + SharedKey + Send + 'static,
    V: SharedValue + Send + 'static,
{
    /// A shared backend reads `key` from Redis when this instance does not know it (a value
    /// written before it started). Not for the hot path: one round trip on a miss.
    pub async fn fetch(&self, key: &K) {
        if let ExpiringMap::Redis(map) = self {
            map.fetch(key).await;
        }
    }
}

impl<K, V> Expiring<K, V> for ExpiringMap<K, V>
where
    K: Eq + Hash + Clone + SharedKey + Send + 'static,
    V: SharedValue + Send + 'static,
{
    #[inline]
    fn update<R>(&self, key: &K, ttl: Option<Duration>, f: impl FnOnce(&mut Option<V>) -> R) -> R {
        match self {
            ExpiringMap::Local(map) => map.update(key, ttl, f),
            ExpiringMap::Redis(map) => map.update(key, ttl, f),
        }
    }

    fn take(&self, key: &K) -> Option<V> {
        match self {
            ExpiringMap::Local(map) => map.take(key),
            ExpiringMap::Redis(map) => map.take(key),
        }
    }

    fn remove(&self, key: &K) {
        match self {
            ExpiringMap::Local(map) => map.remove(key),
            ExpiringMap::Redis(map) => map.remove(key),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        match self {
            ExpiringMap::Local(map) => map.len(),
            ExpiringMap::Redis(map) => map.len(),
        }
    }
}

// === impl VersionedCell ===

/// A value with a compare-and-set generation.
pub enum VersionedCell<T> {
    Local(local::VersionedCell<T>),
    Redis(shared_handles::VersionedCell<T>),
}

impl<T: Clone + SealedValue + Send + 'static> VersionedCell<T> {
    /// A shared backend reads the value other instances installed (after taking the refresh
    /// lock); the local one has nothing to read.
    pub async fn sync(&self) {
        if let VersionedCell::Redis(cell) = self {
            cell.sync().await;
        }
    }
}

impl<T: Clone + SealedValue + Send + 'static> Versioned<T> for VersionedCell<T> {
    fn load(&self) -> (T, u64) {
        match self {
            VersionedCell::Local(cell) => cell.load(),
            VersionedCell::Redis(cell) => cell.load(),
        }
    }

    fn read<R>(&self, f: impl FnOnce(&T, u64) -> R) -> R {
        match self {
            VersionedCell::Local(cell) => cell.read(f),
            VersionedCell::Redis(cell) => cell.read(f),
        }
    }

    fn compare_and_set(&self, expected: u64, value: T) -> Result<u64, u64> {
        match self {
            VersionedCell::Local(cell) => cell.compare_and_set(expected, value),
            VersionedCell::Redis(cell) => cell.compare_and_set(expected, value),
        }
    }
}

// === impl RefreshLock ===

/// One refresh at a time per account.
pub enum RefreshLock {
    Local(local::RefreshLock),
    Redis(shared_handles::RefreshLock),
}

/// Held while refreshing; dropping it lets the next waiter in.
pub enum RefreshGuard<'a> {
    Local(tokio::sync::MutexGuard<'a, ()>),
    /// This instance's lock, and Redis's (`None` while Redis is unreachable).
    Redis(
        #[allow(dead_code, reason = "held for its drop")] tokio::sync::MutexGuard<'a, ()>,
        #[allow(dead_code, reason = "held for its drop")] Option<shared_handles::Unlock>,
    ),
}

impl RefreshLock {
    /// Waits for the lock (see [`SingleFlight`]).
    pub fn lock(&self) -> impl Future<Output = RefreshGuard<'_>> + Send {
        SingleFlight::lock(self)
    }
}

impl SingleFlight for RefreshLock {
    type Guard<'a> = RefreshGuard<'a>;

    async fn lock(&self) -> RefreshGuard<'_> {
        match self {
            RefreshLock::Local(lock) => RefreshGuard::Local(lock.lock().await),
            RefreshLock::Redis(lock) => {
                let (local, unlock) = lock.lock().await;
                RefreshGuard::Redis(local, unlock)
            }
        }
    }
}

// === impl Signal ===

/// "Look again": a slot was freed or an account's state changed.
#[derive(Clone)]
pub enum Signal {
    Local(std::sync::Arc<tokio::sync::Notify>),
    /// Wakes this instance's waiters, and the others' through the pool channel.
    Redis {
        notify: std::sync::Arc<tokio::sync::Notify>,
        name: Arc<str>,
        shared: Arc<Shared>,
    },
}

impl Default for Signal {
    fn default() -> Self {
        Signal::Local(Default::default())
    }
}

impl Signal {
    /// Wakes every waiter now registered (on every instance, for a shared backend).
    pub fn notify(&self) {
        match self {
            Signal::Local(notify) => notify.notify_waiters(),
            Signal::Redis {
                notify,
                name,
                shared,
            } => {
                notify.notify_waiters();
                shared.send(vec![shared.publish_signal(name)]);
            }
        }
    }

    /// A future that completes at the next [`Signal::notify`]; `enable` it before looking, so
    /// a notification in between is not missed.
    pub fn notified(&self) -> Notified<'_> {
        match self {
            Signal::Local(notify) | Signal::Redis { notify, .. } => notify.notified(),
        }
    }

    fn local_notify(&self) -> std::sync::Arc<tokio::sync::Notify> {
        match self {
            Signal::Local(notify) | Signal::Redis { notify, .. } => std::sync::Arc::clone(notify),
        }
    }

    /// The name other instances know the signal by.
    fn name(&self) -> &str {
        match self {
            Signal::Local(_) => "",
            Signal::Redis { name, .. } => name,
        }
    }
}

// === impl WaitQueue ===

/// Requests waiting for a slot, bounded.
pub enum WaitQueue {
    Local(local::WaitQueue),
}

/// A place in the queue; dropping it (by any path) leaves the queue.
pub enum QueueTicket<'a> {
    Local(local::QueueTicket<'a>),
}

impl WaitQueue {
    /// Joins unless `max` already wait; the ticket is returned either way (so leaving is one
    /// path), with whether the queue was full.
    pub fn join(&self, max: usize) -> (QueueTicket<'_>, bool) {
        match self {
            WaitQueue::Local(queue) => {
                let (ticket, full) = queue.join(max);
                (QueueTicket::Local(ticket), full)
            }
        }
    }

    pub fn waiting(&self) -> usize {
        match self {
            WaitQueue::Local(queue) => queue.waiting(),
        }
    }
}

// === impl KeyWindows ===

/// Per-key request windows and spending totals.
pub enum KeyWindows {
    Local(local::KeyWindows),
    /// Request windows in Redis (`{prefix}rpm:{key}`, a sorted set of admissions), spending
    /// totals in Redis (`{prefix}spend:{key}:d:{YYYY-MM-DD}` / `:m:{YYYY-MM}`) read through a
    /// mirror here; this instance's own windows and counts while Redis does not answer.
    Redis(Arc<shared_handles::KeyWindows>),
}

/// What admitting one request of a key found ([`KeyWindows::admit_key`]).
pub enum Admission {
    /// Counted in the rpm window (if any), holding the key's slot (if it has a concurrency
    /// limit).
    Admitted(Option<Lease>),
    /// Over the rpm limit until the oldest admission leaves the window; nothing counted.
    OverRate(Duration),
    /// Every slot of the key is held; nothing counted.
    Busy,
}

impl KeyWindows {
    /// Admits one request of `key`: counts it in its window (`rpm` admissions per `window`;
    /// 0: no limit) and takes a slot of `slots` (the set and its limit; `None`: no concurrency
    /// limit), both or neither. With Redis: one script call (a round trip the request waits
    /// for) for a key with either limit, after this instance's own slot was taken (a local
    /// pre-check); this instance's own window and slot while Redis does not answer.
    pub async fn admit_key(
        &self,
        key: &str,
        rpm: u32,
        window: Duration,
        slots: Option<(&LeaseSet, u32)>,
    ) -> Admission {
        let now = Instant::now();
        let lease = match slots {
            Some((set, limit)) => match set.try_acquire(limit) {
                Some(lease) => Some(lease),
                // Over the rate limit is said first, as when no slot is held.
                None if rpm > 0 => return self.peek(key, rpm, window, now).await,
                None => return Admission::Busy,
            },
            None => None,
        };
        match self {
            KeyWindows::Local(windows) => {
                if rpm > 0 {
                    if let Err(wait) = windows.admit(key, rpm, window, now) {
                        return Admission::OverRate(wait);
                    }
                }
                Admission::Admitted(lease)
            }
            KeyWindows::Redis(windows) => {
                let in_redis = match &lease {
                    Some(Lease::Redis(lease)) => Some(lease),
                    _ => None,
                };
                if rpm == 0 && in_redis.is_none() {
                    return Admission::Admitted(lease);
                }
                let ids = in_redis.map(|l| l.redis_ids());
                let limit = slots.map_or(0, |(_, limit)| limit);
                let answer = windows
                    .shared
                    .admit_key(
                        &windows.shared.key(&format!("rpm:{key}")),
                        rpm,
                        window,
                        ids.as_ref().map(|(set, id)| (*set, limit, id.as_str())),
                        false,
                    )
                    .await;
                match answer {
                    Some(shared::KeyAnswer::Admitted) => {
                        if let Some(lease) = in_redis {
                            lease.taken_in_redis();
                        }
                        Admission::Admitted(lease)
                    }
                    Some(shared::KeyAnswer::Busy) => Admission::Busy,
                    Some(shared::KeyAnswer::OverRate(wait)) => Admission::OverRate(wait),
                    None => {
                        if rpm > 0 {
                            if let Err(wait) = windows.local.admit(key, rpm, window, now) {
                                return Admission::OverRate(wait);
                            }
                        }
                        Admission::Admitted(lease)
                    }
                }
            }
        }
    }

    /// Counts one admission in `key`'s window of `window` if fewer than `limit` were admitted
    /// in it; otherwise says how long until the oldest leaves it (this instance's window).
    #[cfg(test)]
    pub fn admit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        match self {
            KeyWindows::Local(windows) => windows.admit(key, limit, window, now),
            KeyWindows::Redis(windows) => windows.local.admit(key, limit, window, now),
        }
    }

    /// With every slot held here: over the rate limit, or busy (nothing counted).
    async fn peek(&self, key: &str, rpm: u32, window: Duration, now: Instant) -> Admission {
        let local = match self {
            KeyWindows::Local(windows) => windows,
            KeyWindows::Redis(windows) => {
                let answer = windows
                    .shared
                    .admit_key(
                        &windows.shared.key(&format!("rpm:{key}")),
                        rpm,
                        window,
                        None,
                        true,
                    )
                    .await;
                match answer {
                    Some(shared::KeyAnswer::OverRate(wait)) => return Admission::OverRate(wait),
                    Some(_) => return Admission::Busy,
                    None => &windows.local,
                }
            }
        };
        match local.peek(key, rpm, window, now) {
            Err(wait) => Admission::OverRate(wait),
            Ok(()) => Admission::Busy,
        }
    }

    /// [`KeyWindows::admit_key`] for a key with a concurrency limit, waiting while every slot
    /// is held: looks again each time one of the set's leases is released (with Redis, also
    /// every [`shared::POLL_EVERY`]). `Err`: over the rate limit. The caller bounds the wait.
    pub async fn admit_key_waiting(
        &self,
        key: &str,
        rpm: u32,
        window: Duration,
        slots: Option<(&LeaseSet, u32)>,
    ) -> Result<Option<Lease>, Duration> {
        loop {
            let Some((set, _)) = slots else {
                return match self.admit_key(key, rpm, window, None).await {
                    Admission::Admitted(lease) => Ok(lease),
                    Admission::OverRate(wait) => Err(wait),
                    // Without slots a key is never busy.
                    Admission::Busy => Ok(None),
                };
            };
            let freed = set.released();
            let mut freed = std::pin::pin!(freed);
            // Registered before looking, so a release in between is not missed.
            freed.as_mut().enable();
            match self.admit_key(key, rpm, window, slots).await {
                Admission::Admitted(lease) => return Ok(lease),
                Admission::OverRate(wait) => return Err(wait),
                Admission::Busy => {}
            }
            match set {
                LeaseSet::Local(_) => freed.await,
                // A slot of a dead instance comes back by expiry, without a message.
                LeaseSet::Redis(_) => {
                    let _ = tokio::time::timeout(shared::POLL_EVERY, freed).await;
                }
            }
        }
    }

    /// Seeds `key`'s totals from the store at start. With Redis, the totals there become the
    /// larger of theirs and the store's, and the mirror takes that: the store has every
    /// instance's usage rows once written (so it is the truth after Redis lost its data), but
    /// not the spending still in some instance's spool, which Redis has counted already; each
    /// is a lower bound, so the larger one is the better.
    pub fn seed(&self, key: &str, day: i64, month: i64, day_total: f64, month_total: f64) {
        match self {
            KeyWindows::Local(windows) => windows.raise(key, day, month, day_total, month_total),
            KeyWindows::Redis(windows) => windows.seed(key, day, month, day_total, month_total),
        }
    }
}

impl Windows for KeyWindows {
    fn add(&self, key: &str, day: i64, month: i64, day_amount: f64, month_amount: f64) {
        match self {
            KeyWindows::Local(windows) => windows.add(key, day, month, day_amount, month_amount),
            KeyWindows::Redis(windows) => windows.add(key, day, month, day_amount, month_amount),
        }
    }

    fn totals(&self, key: &str, day: i64, month: i64) -> (f64, f64) {
        match self {
            KeyWindows::Local(windows) => windows.totals(key, day, month),
            KeyWindows::Redis(windows) => windows.totals(key, day, month),
        }
    }
}
