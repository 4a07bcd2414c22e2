//! The Redis backend (`state.backend: redis`): runtime state shared by every instance that uses
//! the same Redis and `state.redis_prefix`.
//!
//! One multiplexed connection (a [`ConnectionManager`], which reconnects by itself) carries the
//! calls that wait for an answer (taking an account's lease, a key's admission, the refresh
//! lock) and a writer task that sends everything else in pipelines, in order, without a request
//! waiting for it. One pub/sub connection listens on `{prefix}pool`: each message names a signal
//! to wake, or carries the new value of a record, of an account's tokens, of an expiring value
//! or a key's spending totals, which the receiving instance copies into its in-process mirror.
//! Reads come from the mirrors.
//! A second channel, `{prefix}changes`, says that a write moved the shared store's change
//! counter: the instance's follower (`server::follow`) looks at once instead of at its next poll.
//!
//! Redis unreachable: every handle goes on with this instance's own state (its mirror, its own
//! leases), a warning is logged once and [`Shared::is_up`] turns false (the
//! `subrelay_state_backend_up` gauge). When Redis answers again the mirrors are reloaded (values
//! changed here meanwhile are pushed instead) and the leases held here are written back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one call may take before Redis counts as unreachable for it.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Writes queued for the writer task; beyond this they are dropped (and the state resynchronises
/// when Redis keeps up again).
const WRITE_QUEUE: usize = 16_384;
/// How often an unreachable Redis is tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often a waiter for a slot looks again even without a message (a lease of a dead instance
/// expires without one).
pub const POLL_EVERY: Duration = Duration::from_millis(250);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes a lease if fewer than the limit are live: drops expired members first. The clock is
/// Redis's, so instances with skewed clocks agree. Returns 1 if taken, 0 if full.
pub const ACQUIRE_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local limit = tonumber(ARGV[1])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
return 1
";

/// Admits one request of an API key: its request window (a sorted set of admissions scored by
/// their time on Redis's clock, trimmed to the window first) and its concurrency slot, both or
/// neither, so a request that waits for a slot is not counted in the window again each time it
/// looks. KEYS: the window, the key's lease set. ARGV: rpm limit (0: none), window (ms),
/// admission member, mode (`take`: the slot too; `count`: the window only; `peek`: count
/// nothing, only say whether the window is full), lease limit, lease time (ms), lease id.
/// Returns -1 when admitted, -2 when every slot is held (or, `peek`, the window has room), else
/// the ms until the oldest admission leaves the full window.
pub const KEY_ADMIT_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rpm = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = tonumber(oldest[2]) + window - now
    if wait < 0 then wait = 0 end
    return wait
  end
end
if ARGV[4] == 'peek' then
  return -2
end
if ARGV[4] == 'take' then
  local ttl = tonumber(ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  local limit = tonumber(ARGV[5])
  if limit > 0 and redis.call('ZCARD', KEYS[2]) >= limit then
    return -2
  end
  redis.call('ZADD', KEYS[2], now + ttl, ARGV[7])
  redis.call('PEXPIRE', KEYS[2], ttl * 2)
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
return -1
";

/// A key's spending totals of one UTC day and one month (strings holding USD, changed by
/// `INCRBYFLOAT`), and the totals published on the pool channel so every instance's mirror
/// takes them. KEYS: the day's total, the month's. ARGV: mode (`add` the amounts, `max`: raise
/// the totals to at least them, `get`: change nothing), day amount, month amount, the day's and
/// the month's expiry (Unix ms), channel, instance, key name, day id, month id.
pub const SPEND_LUA: &str = r"
local function apply(k, amount, at)
  local v
  if ARGV[1] == 'add' then
    v = tonumber(redis.call('INCRBYFLOAT', k, amount))
  else
    v = tonumber(redis.call('GET', k) or '0') or 0
    if ARGV[1] == 'max' and tonumber(amount) > v then
      v = tonumber(amount)
      redis.call('SET', k, amount)
    end
  end
  if ARGV[1] ~= 'get' then
    redis.call('PEXPIREAT', k, at)
  end
  return v
end
local d = apply(KEYS[1], ARGV[2], ARGV[4])
local m = apply(KEYS[2], ARGV[3], ARGV[5])
local note = {k = ARGV[8], d = tonumber(ARGV[9]), m = tonumber(ARGV[10]), dv = d, mv = m}
redis.call('PUBLISH', ARGV[6], cjson.encode({i = ARGV[7], sp = note}))
return 1
";

/// Pushes the expiry of the given leases one lease time forward. ARGV[2] `xx`: only leases still
/// there (renewal); `add`: put back missing ones too (after Redis came back empty).
pub const RENEW_LUA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 3, #ARGV do
  if ARGV[2] == 'xx' then
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  end
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return 1
";

/// Stores ARGV[2] (JSON with its `gen`) if the stored value's `gen` is ARGV[1] (absent: 0).
/// Returns -1 when stored, else the generation found.
pub const CAS_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
local gen = 0
if cur then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and decoded.gen then gen = tonumber(decoded.gen) end
end
if gen ~= tonumber(ARGV[1]) then
  return gen
end
redis.call('SET', KEYS[1], ARGV[2])
return -1
";

/// Deletes the lock only if this owner still holds it.
pub const UNLOCK_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// One message on the pool channel.
#[derive(Serialize, Deserialize, Default)]
struct Message {
    /// The sending instance (it ignores its own messages).
    i: String,
    /// A signal to wake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<String>,
    /// A mirrored key (record, tokens) and its new value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    m: Option<String>,
    /// An expiring map's kind, and the value's key in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    k: Option<String>,
    /// The value (absent: removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<String>,
    /// Milliseconds the expiring value lives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<u64>,
    /// A key's spending totals after a change (sent by [`SPEND_LUA`]; taken by every instance,
    /// the sender too: the totals include the other instances' spending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sp: Option<SpendNote>,
}

/// A key's spending totals as Redis holds them now.
#[derive(Serialize, Deserialize)]
struct SpendNote {
    /// The key's name.
    k: String,
    /// The day and the month (ids of `calendar`), and their totals (USD).
    d: i64,
    m: i64,
    dv: f64,
    mv: f64,
}

/// A value mirrored from one Redis key: a record, an account's tokens.
pub trait Mirror: Send + Sync {
    /// What Redis holds (`None`: nothing); the mirror takes it, unless its own value is newer.
    fn load(&self, stored: Option<&str>);
    /// A value changed here while Redis was unreachable: it is pushed on resynchronisation.
    fn dirty(&self) -> Option<String>;
}

/// Spending totals mirrored by messages.
pub trait SpendMirror: Send + Sync {
    /// Redis holds these totals of `key` now.
    fn raise(&self, key: &str, day: i64, month: i64, day_total: f64, month_total: f64);
    /// Redis answers again (or the subscription began): push what this instance counted.
    fn push(&self);
}

/// An expiring map mirrored by messages.
pub trait MapMirror: Send + Sync {
    /// `ttl` `None`: the value keeps its expiry.
    fn apply(&self, key: &str, value: Option<&str>, ttl: Option<Duration>);
}

/// What [`Shared::admit_key`] found.
pub enum KeyAnswer {
    Admitted,
    /// Every slot of the key is held (or, peeking, the window has room).
    Busy,
    /// The window is full until the oldest admission leaves it.
    OverRate(Duration),
}

/// The shared backend's connections, mirrors and tasks.
pub struct Shared {
    prefix: String,
    channel: String,
    /// `{prefix}changes`: a store write moved the change counter (`server::follow` looks now).
    changes_channel: String,
    changes: Arc<Notify>,
    sealer: Arc<dyn super::Seal>,
    instance: String,
    lease_ttl: Duration,
    conn: ConnectionManager,
    client: redis::Client,
    up: AtomicBool,
    writes: mpsc::Sender<Batch>,
    signals: Mutex<HashMap<String, Weak<Notify>>>,
    mirrors: Mutex<HashMap<String, Vec<Weak<dyn Mirror>>>>,
    maps: Mutex<HashMap<String, Weak<dyn MapMirror>>>,
    lease_sets: Mutex<Vec<Weak<super::shared_handles::LeaseSet>>>,
    spend: Mutex<Vec<Weak<dyn SpendMirror>>>,
    /// Round trips of calls a request waits for, and pipelines sent (for tests and benchmarks).
    round_trips: AtomicU64,
    pipelines: AtomicU64,
    acquire: redis::Script,
    key_admit: redis::Script,
    /// Numbers this instance's window admissions (members `{instance}:{n}`).
    admissions: AtomicU64,
}

impl Shared {
    /// Connects lazily (a Redis down at start is like one that goes down later) and starts the
    /// writer, the subscriber and the lease renewer on `tasks`; they stop with `shutdown`.
    pub fn start(
        url: &str,
        prefix: &str,
        lease_ttl: Duration,
        sealer: Arc<dyn super::Seal>,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> Result<Arc<Self>, String> {
        let client = redis::Client::open(url).map_err(|e| format!("state.redis_url: {e}"))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| format!("state.redis_url: {e}"))?;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let instance: String = {
            use rand::Rng;
            let n: u64 = rand::thread_rng().gen();
            format!("{n:016x}")
        };
        let shared = Arc::new(Self {
            channel: format!("{prefix}pool"),
            changes_channel: format!("{prefix}changes"),
            changes: Arc::new(Notify::new()),
            sealer,
            prefix: prefix.to_owned(),
            instance,
            lease_ttl,
            conn,
            client,
            up: AtomicBool::new(true),
            writes,
            signals: Mutex::default(),
            mirrors: Mutex::default(),
            maps: Mutex::default(),
            lease_sets: Mutex::default(),
            spend: Mutex::default(),
            round_trips: AtomicU64::new(0),
            pipelines: AtomicU64::new(0),
            acquire: redis::Script::new(ACQUIRE_LUA),
            key_admit: redis::Script::new(KEY_ADMIT_LUA),
            admissions: AtomicU64::new(0),
        });
        tasks.spawn(write_loop(Arc::clone(&shared), queue, shutdown.clone()));
        tasks.spawn(subscribe_loop(Arc::clone(&shared), shutdown.clone()));
        tasks.spawn(renew_loop(Arc::clone(&shared), shutdown.clone()));
        Ok(shared)
    }

    pub fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    pub fn sealer(&self) -> &dyn super::Seal {
        &*self.sealer
    }

    /// Publishes on `{prefix}changes` (by the writer, after what this instance queued before).
    pub fn publish_store_change(&self) {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.changes_channel).arg(&self.instance);
        self.send(vec![cmd]);
    }

    /// Woken (one stored permit) by every message on `{prefix}changes`, and after each
    /// (re)subscription, when messages may have been missed.
    pub fn store_changes(&self) -> Arc<Notify> {
        Arc::clone(&self.changes)
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// (round trips requests waited for, pipelines sent in the background).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.round_trips.load(Ordering::Relaxed),
            self.pipelines.load(Ordering::Relaxed),
        )
    }

    fn went_down(&self, why: &dyn std::fmt::Display) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                "runtime state: Redis is unreachable ({why}); this instance goes on with its own state (cooldowns, slots, bindings are no longer shared) until Redis answers again"
            );
        }
    }

    fn came_back(self: &Arc<Self>) -> bool {
        let was_down = !self.up.swap(true, Ordering::AcqRel);
        if was_down {
            tracing::warn!("runtime state: Redis answers again; the state is shared again");
        }
        was_down
    }

    /// Queues commands for the writer (in order, one pipeline per batch).
    pub fn send(&self, cmds: Vec<redis::Cmd>) {
        self.send_noting(cmds, None);
    }

    /// Queues commands; `lost` is set if they do not reach Redis (the value is pushed again when
    /// Redis is back).
    pub fn send_noting(&self, cmds: Vec<redis::Cmd>, lost: Option<&Arc<AtomicBool>>) {
        if cmds.is_empty() {
            return;
        }
        let batch = Batch {
            cmds,
            lost: lost.cloned(),
        };
        if let Err(e) = self.writes.try_send(batch) {
            let batch = match e {
                mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => b,
            };
            if let Some(lost) = batch.lost {
                lost.store(true, Ordering::Release);
            }
            if self.is_up() {
                self.went_down(&"the write queue is full");
            }
        }
    }

    /// A `PUBLISH` of a message.
    fn publish(&self, message: &Message) -> redis::Cmd {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel)
            .arg(serde_json::to_string(message).unwrap_or_default());
        cmd
    }

    /// Wakes the waiters of `signal` on every other instance.
    pub fn publish_signal(&self, signal: &str) -> redis::Cmd {
        self.publish(&Message {
            i: self.instance.clone(),
            s: Some(signal.to_owned()),
            ..Default::default()
        })
    }

    /// Stores a mirrored value and tells the other instances.
    pub fn write_mirror(&self, key: &str, value: &str) {
        self.write_mirror_noting(key, value, None);
    }

    pub fn write_mirror_noting(&self, key: &str, value: &str, lost: Option<&Arc<AtomicBool>>) {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value);
        let publish = self.publish(&Message {
            i: self.instance.clone(),
            m: Some(key.to_owned()),
            v: Some(value.to_owned()),
            ..Default::default()
        });
        self.send_noting(vec![set, publish], lost);
    }

    /// Stores `value` (with generation `gen`) if the stored one is `gen - 1`, and tells the other
    /// instances.
    pub fn cas_mirror(&self, key: &str, expected: u64, value: &str, lost: &Arc<AtomicBool>) {
        let mut cas = redis::cmd("EVAL");
        cas.arg(CAS_LUA).arg(1).arg(key).arg(expected).arg(value);
        let publish = self.publish(&Message {
            i: self.instance.clone(),
            m: Some(key.to_owned()),
            v: Some(value.to_owned()),
            ..Default::default()
        });
        self.send_noting(vec![cas, publish], Some(lost));
    }

    /// Stores (or removes) an expiring value and tells the other instances.
    pub fn write_expiring(
        &self,
        kind: &str,
        key: &str,
        value: Option<&str>,
        ttl: Option<Duration>,
    ) {
        let redis_key = self.key(&format!("{kind}:{key}"));
        let ms = ttl.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let mut cmd;
        match value {
            Some(value) => {
                cmd = redis::cmd("SET");
                cmd.arg(&redis_key).arg(value);
                match ms {
                    Some(ms) => cmd.arg("PX").arg(ms),
                    None => cmd.arg("KEEPTTL"),
                };
            }
            None => {
                cmd = redis::cmd("DEL");
                cmd.arg(&redis_key);
            }
        }
        let publish = self.publish(&Message {
            i: self.instance.clone(),
            e: Some(kind.to_owned()),
            k: Some(key.to_owned()),
            v: value.map(str::to_owned),
            t: ms,
            ..Default::default()
        });
        self.send(vec![cmd, publish]);
    }

    /// Reads an expiring value and its time left (a round trip; for lookups off the hot path that
    /// missed the mirror).
    pub async fn read_expiring(&self, kind: &str, key: &str) -> Option<(String, Duration)> {
        if !self.is_up() {
            return None;
        }
        let redis_key = self.key(&format!("{kind}:{key}"));
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(&redis_key).cmd("PTTL").arg(&redis_key);
        let result: Result<redis::RedisResult<(Option<String>, i64)>, _> =
            tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(&mut conn)).await;
        match result {
            Ok(Ok((Some(value), ttl))) if ttl > 0 => {
                Some((value, Duration::from_millis(ttl.unsigned_abs())))
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                self.note_error(&e);
                None
            }
            Err(_) => {
                self.went_down(&"a read timed out");
                None
            }
        }
    }

    fn note_error(&self, e: &redis::RedisError) {
        if connection_lost(e) {
            self.went_down(e);
        } else {
            tracing::warn!("runtime state: a Redis command failed: {e}");
        }
    }

    /// Takes a lease in `key` if fewer than `limit` are live (0: no limit). `None`: Redis did
    /// not answer (the caller goes on with its own state).
    pub async fn acquire_lease(&self, key: &str, limit: u32, id: &str) -> Option<bool> {
        if !self.is_up() {
            return None;
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let ttl = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = self.acquire.key(key);
        invocation.arg(limit).arg(ttl).arg(id);
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(taken)) => Some(taken == 1),
            Ok(Err(e)) => {
                self.note_error(&e);
                None
            }
            Err(_) => {
                self.went_down(&"taking a lease timed out");
                None
            }
        }
    }

    /// Admits one request of an API key ([`KEY_ADMIT_LUA`]): counts it in the request window
    /// `window_key` (of `window`; `rpm` 0: none) and, with `lease` (the lease set, its limit, the
    /// lease id), takes the slot, both or neither; `peek`: only whether the window is full.
    /// `None`: Redis did not answer (the caller goes on with its own state).
    pub async fn admit_key(
        &self,
        window_key: &str,
        rpm: u32,
        window: Duration,
        lease: Option<(&str, u32, &str)>,
        peek: bool,
    ) -> Option<KeyAnswer> {
        if !self.is_up() {
            return None;
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let n = self.admissions.fetch_add(1, Ordering::Relaxed);
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        let ttl = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let (lease_key, limit, id) = lease.unwrap_or((window_key, 0, ""));
        let mode = match (peek, lease.is_some()) {
            (true, _) => "peek",
            (false, true) => "take",
            (false, false) => "count",
        };
        let mut invocation = self.key_admit.key(window_key);
        invocation
            .key(lease_key)
            .arg(rpm)
            .arg(window_ms)
            .arg(format!("{}:{n}", self.instance))
            .arg(mode)
            .arg(limit)
            .arg(ttl)
            .arg(id);
        match tokio::time::timeout(CALL_TIMEOUT, invocation.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(-1)) => Some(KeyAnswer::Admitted),
            Ok(Ok(wait)) if wait < 0 => Some(KeyAnswer::Busy),
            Ok(Ok(wait)) => Some(KeyAnswer::OverRate(Duration::from_millis(
                u64::try_from(wait).unwrap_or(0),
            ))),
            Ok(Err(e)) => {
                self.note_error(&e);
                None
            }
            Err(_) => {
                self.went_down(&"admitting a key timed out");
                None
            }
        }
    }

    /// Changes (or reads) a key's spending totals in Redis through the writer (no waiting) and
    /// publishes the totals Redis then holds ([`SPEND_LUA`]): `mode` `add`, `max` or `get`.
    pub fn spend(&self, key: &str, day: i64, month: i64, mode: &str, amounts: (f64, f64)) {
        use super::calendar::{day_label, month_label, month_start_ms, DAY_MS};
        // Kept a day past the period's end.
        let day_ends = (day + 1) * DAY_MS + DAY_MS;
        let month_ends = month_start_ms(month + 1) + DAY_MS;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SPEND_LUA)
            .arg(2)
            .arg(self.key(&format!("spend:{key}:d:{}", day_label(day))))
            .arg(self.key(&format!("spend:{key}:m:{}", month_label(month))))
            .arg(mode)
            .arg(amounts.0.to_string())
            .arg(amounts.1.to_string())
            .arg(day_ends)
            .arg(month_ends)
            .arg(&self.channel)
            .arg(&self.instance)
            .arg(key)
            .arg(day)
            .arg(month);
        self.send(vec![cmd]);
    }

    /// Tries to take the lock `key` for `owner` (`SET NX PX`). `None`: Redis did not answer.
    pub async fn try_lock(&self, key: &str, owner: &str, ttl: Duration) -> Option<bool> {
        if !self.is_up() {
            return None;
        }
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let result: Result<redis::RedisResult<Option<String>>, _> =
            tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn)).await;
        match result {
            Ok(Ok(set)) => Some(set.is_some()),
            Ok(Err(e)) => {
                self.note_error(&e);
                None
            }
            Err(_) => {
                self.went_down(&"taking a lock timed out");
                None
            }
        }
    }

    /// Releases the lock `key` if `owner` still holds it (compare-and-delete).
    pub fn unlock(&self, key: &str, owner: &str) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(UNLOCK_LUA).arg(1).arg(key).arg(owner);
        self.send(vec![cmd]);
    }

    /// Reads one mirrored key now and loads it into its mirrors (a round trip).
    pub async fn reload(&self, key: &str) {
        if !self.is_up() {
            return;
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(key);
        let result: Result<redis::RedisResult<Option<String>>, _> =
            tokio::time::timeout(CALL_TIMEOUT, cmd.query_async(&mut conn)).await;
        match result {
            Ok(Ok(value)) => self.load_mirrors(key, value.as_deref()),
            Ok(Err(e)) => self.note_error(&e),
            Err(_) => self.went_down(&"a read timed out"),
        }
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let ping: Result<redis::RedisResult<String>, _> =
            tokio::time::timeout(CALL_TIMEOUT, redis::cmd("PING").query_async(&mut conn)).await;
        matches!(ping, Ok(Ok(_)))
    }

    pub fn register_signal(&self, name: &str, notify: &Arc<Notify>) {
        let mut signals = lock(&self.signals);
        signals.retain(|_, n| n.strong_count() > 0);
        signals.insert(name.to_owned(), Arc::downgrade(notify));
    }

    /// Registers a mirror of `key`; its value is loaded in the background.
    pub fn register_mirror(self: &Arc<Self>, key: &str, mirror: Weak<dyn Mirror>) {
        {
            let mut mirrors = lock(&self.mirrors);
            let list = mirrors.entry(key.to_owned()).or_default();
            list.retain(|m| m.strong_count() > 0);
            list.push(mirror);
        }
        let mut get = redis::cmd("GET");
        get.arg(key);
        // Loaded by the writer: in order with this instance's writes to the same key.
        self.send(vec![get]);
    }

    pub fn register_map(&self, kind: &str, map: Weak<dyn MapMirror>) {
        lock(&self.maps).insert(kind.to_owned(), map);
    }

    pub fn register_spend(&self, mirror: Weak<dyn SpendMirror>) {
        let mut list = lock(&self.spend);
        list.retain(|m| m.strong_count() > 0);
        list.push(mirror);
    }

    fn spend_mirrors(&self) -> Vec<Arc<dyn SpendMirror>> {
        lock(&self.spend).iter().filter_map(Weak::upgrade).collect()
    }

    pub fn register_leases(&self, set: Weak<super::shared_handles::LeaseSet>) {
        let mut sets = lock(&self.lease_sets);
        sets.retain(|s| s.strong_count() > 0);
        sets.push(set);
    }

    fn load_mirrors(&self, key: &str, value: Option<&str>) {
        let mirrors: Vec<Arc<dyn Mirror>> = lock(&self.mirrors)
            .get(key)
            .map(|list| list.iter().filter_map(Weak::upgrade).collect())
            .unwrap_or_default();
        for mirror in mirrors {
            mirror.load(value);
        }
    }

    fn on_message(&self, payload: &str) {
        let Ok(message) = serde_json::from_str::<Message>(payload) else {
            return;
        };
        if let Some(note) = &message.sp {
            for mirror in self.spend_mirrors() {
                mirror.raise(&note.k, note.d, note.m, note.dv, note.mv);
            }
        }
        if message.i == self.instance {
            return;
        }
        if let Some(signal) = &message.s {
            let notify = lock(&self.signals).get(signal).and_then(Weak::upgrade);
            if let Some(notify) = notify {
                notify.notify_waiters();
            }
        }
        if let Some(key) = &message.m {
            self.load_mirrors(key, message.v.as_deref());
        }
        if let (Some(kind), Some(key)) = (&message.e, &message.k) {
            let map = lock(&self.maps).get(kind).and_then(Weak::upgrade);
            if let Some(map) = map {
                map.apply(
                    key,
                    message.v.as_deref(),
                    message.t.map(Duration::from_millis),
                );
            }
        }
    }

    /// After Redis came back (or at the first subscription): mirrors reloaded (or pushed when
    /// changed here meanwhile), leases held here written back, waiters woken.
    async fn resync(self: &Arc<Self>) {
        let mirrors: Vec<(String, Vec<Arc<dyn Mirror>>)> = lock(&self.mirrors)
            .iter()
            .map(|(key, list)| (key.clone(), list.iter().filter_map(Weak::upgrade).collect()))
            .collect();
        for (key, list) in mirrors {
            if let Some(value) = list.iter().find_map(|m| m.dirty()) {
                self.write_mirror(&key, &value);
            } else {
                self.reload(&key).await;
            }
        }
        self.renew_all("add");
        for mirror in self.spend_mirrors() {
            mirror.push();
        }
        let signals: Vec<Arc<Notify>> = lock(&self.signals)
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for notify in signals {
            notify.notify_waiters();
        }
        // A store change published while not subscribed is looked for now.
        self.changes.notify_one();
    }

    /// One pipeline renewing every lease held here.
    fn renew_all(&self, mode: &str) {
        let sets: Vec<Arc<super::shared_handles::LeaseSet>> = lock(&self.lease_sets)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let ttl = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut cmds = Vec::new();
        for set in sets {
            let ids = set.held_ids();
            if ids.is_empty() {
                continue;
            }
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RENEW_LUA).arg(1).arg(set.key()).arg(ttl).arg(mode);
            for id in ids {
                cmd.arg(id);
            }
            cmds.push(cmd);
        }
        self.send(cmds);
    }
}

/// Commands the writer sends together, and the flag to raise if they are lost.
pub struct Batch {
    cmds: Vec<redis::Cmd>,
    lost: Option<Arc<AtomicBool>>,
}

/// Sends queued commands, each batch in one pipeline, in order.
async fn write_loop(
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
) {
    let mut conn = shared.conn.clone();
    loop {
        let first = tokio::select! {
            batch = queue.recv() => batch,
            () = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut cmds = first.cmds;
        let mut lost: Vec<Arc<AtomicBool>> = first.lost.into_iter().collect();
        while cmds.len() < 1024 {
            match queue.try_recv() {
                Ok(more) => {
                    cmds.extend(more.cmds);
                    lost.extend(more.lost);
                }
                Err(_) => break,
            }
        }
        flush(&shared, &mut conn, cmds, &lost).await;
    }
    // Shutting down: what is queued (lease releases, last writes) still goes out, briefly.
    let mut rest = Vec::new();
    while let Ok(more) = queue.try_recv() {
        rest.extend(more.cmds);
    }
    if shared.is_up() && !rest.is_empty() {
        flush(&shared, &mut conn, rest, &[]).await;
    }
}

async fn flush(
    shared: &Arc<Shared>,
    conn: &mut ConnectionManager,
    batch: Vec<redis::Cmd>,
    lost: &[Arc<AtomicBool>],
) {
    if !shared.is_up() || !send_pipeline(shared, conn, batch).await {
        // Values changed here are pushed again when Redis answers (lease releases and bindings
        // are not: leases expire, bindings are re-made).
        for flag in lost {
            flag.store(true, Ordering::Release);
        }
    }
}

/// One pipeline, tried again once after a broken connection (the manager reconnects); false if
/// it did not go through.
async fn send_pipeline(
    shared: &Arc<Shared>,
    conn: &mut ConnectionManager,
    batch: Vec<redis::Cmd>,
) -> bool {
    let gets: Vec<Option<String>> = batch
        .iter()
        .map(|cmd| {
            let mut args = cmd.args_iter();
            match (args.next(), args.next()) {
                (Some(redis::Arg::Simple(b"GET")), Some(redis::Arg::Simple(key))) => {
                    Some(String::from_utf8_lossy(key).into_owned())
                }
                _ => None,
            }
        })
        .collect();
    let mut pipe = redis::pipe();
    for cmd in batch {
        pipe.add_command(cmd);
    }
    for attempt in 0..2 {
        shared.pipelines.fetch_add(1, Ordering::Relaxed);
        let result: Result<redis::RedisResult<Vec<redis::Value>>, _> =
            tokio::time::timeout(CALL_TIMEOUT, pipe.query_async(conn)).await;
        match result {
            Ok(Ok(values)) => {
                for (key, value) in gets.iter().zip(values) {
                    if let Some(key) = key {
                        let text: Option<String> = redis::from_redis_value(value).ok().flatten();
                        shared.load_mirrors(key, text.as_deref());
                    }
                }
                return true;
            }
            Ok(Err(e)) if attempt == 0 && connection_lost(&e) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => {
                shared.note_error(&e);
                // A command error (not the connection): the others went through.
                return !connection_lost(&e);
            }
            Err(_) => {
                shared.went_down(&"a write timed out");
                return false;
            }
        }
    }
    false
}

fn connection_lost(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

/// Listens on the pool channel; (re)subscribes, resynchronising each time, until shutdown.
async fn subscribe_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let connected = tokio::time::timeout(CALL_TIMEOUT * 2, async {
            let mut pubsub = shared.client.get_async_pubsub().await?;
            pubsub.subscribe(&shared.channel).await?;
            pubsub.subscribe(&shared.changes_channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                shared.went_down(&e);
                retry_pause(&shutdown).await;
                continue;
            }
            Err(_) => {
                shared.went_down(&"connecting timed out");
                retry_pause(&shutdown).await;
                continue;
            }
        };
        // Whatever was missed while not subscribed is read back now.
        shared.came_back();
        shared.resync().await;
        let mut messages = pubsub.into_on_message();
        let mut check = tokio::time::interval(RETRY_EVERY);
        loop {
            tokio::select! {
                _ = check.tick() => {
                    // A call failed while the subscription stayed: look whether Redis answers.
                    if !shared.is_up() && shared.ping().await {
                        shared.came_back();
                        shared.resync().await;
                    }
                }
                message = messages.next() => match message {
                    Some(message) => {
                        if message.get_channel_name() == shared.changes_channel {
                            shared.changes.notify_one();
                        } else if let Ok(payload) = message.get_payload::<String>() {
                            shared.on_message(&payload);
                        }
                    }
                    None => {
                        shared.went_down(&"the subscription was closed");
                        break;
                    }
                },
                () = shutdown.cancelled() => return,
            }
        }
    }
}

async fn retry_pause(shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(RETRY_EVERY) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Renews every lease held here each third of the lease time; pings Redis meanwhile so a silent
/// outage is noticed even without traffic.
async fn renew_loop(shared: Arc<Shared>, shutdown: CancellationToken) {
    let every = (shared.lease_ttl / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        shared.renew_all("xx");
    }
}
