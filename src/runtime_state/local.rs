//! The in-memory backend: runtime state in this process, behind short `std::sync::Mutex`es that
//! are never held across an `.await` (the refresh lock is the one async lock, on purpose).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Locks plain data: a panic elsewhere cannot leave it half-updated in a way that matters.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

// === leases ===

/// The leases of one name: ids with their expiry (`None`: until dropped).
pub struct LeaseSet {
    name: Box<str>,
    ttl: Option<Duration>,
    held: Mutex<Held>,
    /// `held.leases.len()`, readable without the lock (selection reads every candidate's load).
    count: AtomicU32,
    freed: Arc<Notify>,
}

#[derive(Default)]
struct Held {
    next_id: u64,
    /// Few entries (at most the concurrency limit); the capacity is kept, so steady state does
    /// not allocate.
    leases: Vec<(u64, Option<Instant>)>,
}

impl Held {
    fn drop_expired(&mut self, now: Instant) {
        self.leases
            .retain(|(_, until)| until.is_none_or(|u| u > now));
    }

    fn len(&self) -> u32 {
        u32::try_from(self.leases.len()).unwrap_or(u32::MAX)
    }
}

impl LeaseSet {
    pub fn new(name: &str, ttl: Option<Duration>, freed: Arc<Notify>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            ttl,
            held: Mutex::default(),
            count: AtomicU32::new(0),
            freed,
        })
    }

    pub fn try_acquire(this: &Arc<Self>, limit: u32) -> Option<Lease> {
        // Reading the clock only for leases that expire: local ones never do in production.
        let now = this.ttl.map(|_| Instant::now());
        let until = now.zip(this.ttl).map(|(now, ttl)| now + ttl);
        let mut held = lock(&this.held);
        if let Some(now) = now {
            held.drop_expired(now);
        }
        if limit != 0 && held.leases.len() >= limit as usize {
            return None;
        }
        let id = held.next_id;
        held.next_id += 1;
        held.leases.push((id, until));
        this.count.store(held.len(), Ordering::Release);
        drop(held);
        Some(Lease {
            set: Arc::clone(this),
            id,
        })
    }

    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    pub fn in_flight(&self) -> u32 {
        if self.ttl.is_none() {
            return self.count.load(Ordering::Acquire);
        }
        let mut held = lock(&self.held);
        held.drop_expired(Instant::now());
        self.count.store(held.len(), Ordering::Release);
        held.len()
    }
}

impl std::fmt::Debug for LeaseSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSet")
            .field("name", &self.name)
            .finish()
    }
}

/// One held lease.
pub struct Lease {
    set: Arc<LeaseSet>,
    id: u64,
}

impl Lease {
    /// This lease's id within its set.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn renew(&self) {
        let Some(ttl) = self.set.ttl else {
            return;
        };
        let mut held = lock(&self.set.held);
        if let Some(lease) = held.leases.iter_mut().find(|(id, _)| *id == self.id) {
            lease.1 = Some(Instant::now() + ttl);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = lock(&self.set.held);
        if let Some(at) = held.leases.iter().position(|(id, _)| *id == self.id) {
            held.leases.swap_remove(at);
        }
        self.set.count.store(held.len(), Ordering::Release);
        drop(held);
        self.set.freed.notify_waiters();
    }
}

// === records ===

pub struct Record<T>(Mutex<T>);

impl<T> Record<T> {
    pub fn new(initial: T) -> Self {
        Self(Mutex::new(initial))
    }

    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&lock(&self.0))
    }

    pub fn update<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.0))
    }
}

// === expiring values ===

/// Beyond this many values, expired ones are swept on the next insert.
const SWEEP_ABOVE: usize = 4096;

/// Values with their expiry; a value is `None` only between an update that removed it and the
/// removal of its entry.
pub struct ExpiringMap<K, V>(Mutex<HashMap<K, (Option<V>, Instant)>>);

impl<K, V> Default for ExpiringMap<K, V> {
    fn default() -> Self {
        Self(Mutex::new(HashMap::new()))
    }
}

impl<K: Eq + Hash + Clone, V> ExpiringMap<K, V> {
    pub fn update<R>(
        &self,
        key: &K,
        ttl: Option<Duration>,
        f: impl FnOnce(&mut Option<V>) -> R,
    ) -> R {
        let now = Instant::now();
        let mut map = lock(&self.0);
        // In place when the key is there (one hash: this runs per request for sticky bindings).
        if let Some((value, expires)) = map.get_mut(key) {
            if *expires <= now {
                *value = None;
            }
            let result = f(value);
            if value.is_none() {
                map.remove(key);
            } else if let Some(ttl) = ttl {
                *expires = now + ttl;
            }
            return result;
        }
        let mut value = None;
        let result = f(&mut value);
        if let (Some(value), Some(ttl)) = (value, ttl) {
            if map.len() >= SWEEP_ABOVE {
                map.retain(|_, (_, e)| *e > now);
            }
            map.insert(key.clone(), (Some(value), now + ttl));
        }
        result
    }

    pub fn take(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        lock(&self.0)
            .remove(key)
            .filter(|(_, expires)| *expires > now)
            .and_then(|(value, _)| value)
    }

    pub fn remove(&self, key: &K) {
        lock(&self.0).remove(key);
    }

    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

// === versioned values ===

pub struct VersionedCell<T>(Mutex<(T, u64)>);

impl<T: Clone> VersionedCell<T> {
    pub fn new(initial: T) -> Self {
        Self(Mutex::new((initial, 0)))
    }

    pub fn load(&self) -> (T, u64) {
        lock(&self.0).clone()
    }

    pub fn read<R>(&self, f: impl FnOnce(&T, u64) -> R) -> R {
        let cell = lock(&self.0);
        f(&cell.0, cell.1)
    }

    /// Takes a value of generation `generation` written elsewhere, unless this one is newer.
    pub fn replace_if_newer(&self, generation: u64, value: T) {
        let mut cell = lock(&self.0);
        if generation >= cell.1 {
            *cell = (value, generation);
        }
    }

    pub fn compare_and_set(&self, expected: u64, value: T) -> Result<u64, u64> {
        let mut cell = lock(&self.0);
        if cell.1 != expected {
            return Err(cell.1);
        }
        *cell = (value, expected + 1);
        Ok(expected + 1)
    }
}

// === single flight ===

#[derive(Default)]
pub struct RefreshLock(tokio::sync::Mutex<()>);

impl RefreshLock {
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.0.lock().await
    }
}

// === wait queue ===

#[derive(Default)]
pub struct WaitQueue(AtomicUsize);

/// Leaving the queue by any path frees the place.
pub struct QueueTicket<'a>(&'a AtomicUsize);

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WaitQueue {
    pub fn join(&self, max: usize) -> (QueueTicket<'_>, bool) {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        (QueueTicket(&self.0), before >= max)
    }

    pub fn waiting(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

// === per-key windows and totals ===

#[derive(Default)]
pub struct KeyWindows {
    /// Admission times within the window, per key name.
    windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    totals: Mutex<HashMap<String, Totals>>,
}

/// A key's totals in its current day and month.
#[derive(Default, Clone, Copy)]
struct Totals {
    day: i64,
    day_total: f64,
    month: i64,
    month_total: f64,
}

impl Totals {
    /// Forgets totals of a day or month that ended.
    fn roll(&mut self, day: i64, month: i64) {
        if self.day != day {
            self.day = day;
            self.day_total = 0.0;
        }
        if self.month != month {
            self.month = month;
            self.month_total = 0.0;
        }
    }
}

impl KeyWindows {
    pub fn admit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        self.look(key, limit, window, now, true)
    }

    /// Whether [`KeyWindows::admit`] would admit now; counts nothing.
    pub fn peek(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Duration> {
        self.look(key, limit, window, now, false)
    }

    fn look(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Instant,
        count: bool,
    ) -> Result<(), Duration> {
        let mut windows = lock(&self.windows);
        // The key is almost always there already: look it up before copying its name.
        let times = match windows.get_mut(key) {
            Some(times) => times,
            None => windows.entry(key.to_owned()).or_default(),
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            times.pop_front();
        }
        if times.len() >= limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err(window.saturating_sub(now.duration_since(oldest)));
        }
        if count {
            times.push_back(now);
        }
        Ok(())
    }

    pub fn add(&self, key: &str, day: i64, month: i64, day_amount: f64, month_amount: f64) {
        let mut totals = lock(&self.totals);
        let entry = match totals.get_mut(key) {
            Some(entry) => entry,
            None => totals.entry(key.to_owned()).or_default(),
        };
        entry.roll(day, month);
        entry.day_total += day_amount;
        entry.month_total += month_amount;
    }

    /// Raises `key`'s totals of the periods `day` and `month` to at least the given ones (a
    /// total of an older period than the one held is ignored; a newer period replaces it).
    pub fn raise(&self, key: &str, day: i64, month: i64, day_total: f64, month_total: f64) {
        let mut totals = lock(&self.totals);
        let entry = totals.entry(key.to_owned()).or_default();
        if day > entry.day {
            entry.day = day;
            entry.day_total = 0.0;
        }
        if day == entry.day {
            entry.day_total = entry.day_total.max(day_total);
        }
        if month > entry.month {
            entry.month = month;
            entry.month_total = 0.0;
        }
        if month == entry.month {
            entry.month_total = entry.month_total.max(month_total);
        }
    }

    pub fn totals(&self, key: &str, day: i64, month: i64) -> (f64, f64) {
        let mut current = lock(&self.totals).get(key).copied().unwrap_or_default();
        current.roll(day, month);
        (current.day_total, current.month_total)
    }

    /// Every key's totals: (key, day, month, day total, month total).
    pub fn all_totals(&self) -> Vec<(String, i64, i64, f64, f64)> {
        lock(&self.totals)
            .iter()
            .map(|(key, t)| (key.clone(), t.day, t.month, t.day_total, t.month_total))
            .collect()
    }
}
