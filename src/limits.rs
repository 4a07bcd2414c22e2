//! Per-key limits checked before a request reaches an account: allowed models, spending per UTC
//! day and calendar month, requests per minute, and the key's concurrency slot. (Disabled and
//! expired keys are refused earlier, by authentication.)
//!
//! The counts are runtime state ([`KeyWindows`], keyed by key name) so the check costs no
//! database round trip: spending (kept only for keys with a spending limit) is seeded from the
//! store at start, and when a key gains a limit, and grows as the usage sink prices each record;
//! the rpm window holds the last minute's admissions. With the local backend the counts are per
//! process; with Redis (`state.backend: redis`) every instance shares them:
//! the rpm window and the key's slot are taken together in one script call ([`Limits::admit`]),
//! and spending is read from this instance's mirror of the totals kept in Redis.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::http::auth::ApiKey;
use crate::http::refusal::{Refusal, SpendPeriod};
use crate::runtime_state::calendar::{day_of, month_of, month_start_ms, DAY_MS};
use crate::runtime_state::{Admission, KeyWindows, Lease, Live, RuntimeState, Windows};
use crate::store::{now_ms, KeyRecord, Store};

const MINUTE: Duration = Duration::from_secs(60);

pub struct Limits {
    /// Admissions of the last minute and spending of this day and month, per key name.
    windows: KeyWindows,
    /// To refuse a model without a price to a key with a spending limit: its requests would cost
    /// 0 and never reach the limit.
    prices: std::sync::Arc<Live<crate::pricing::PriceTable>>,
    /// The keys with a spending limit, as last seen: only their spending is counted (the usage
    /// sink skips the others), so a key that gains a limit is seeded from the store first.
    limited: std::sync::Mutex<HashSet<String>>,
}

/// A key's admission ([`Limits::admit`]).
pub enum Admitted {
    /// Counted in the rpm window (if the key has one), holding the key's slot (if it has a
    /// concurrency limit).
    Now(Option<Lease>),
    /// Every slot of the key is held: nothing was counted; wait with [`Limits::admit_waiting`].
    Busy,
}

impl Default for Limits {
    fn default() -> Self {
        Self::seeded(Vec::new(), Vec::new())
    }
}

impl Limits {
    /// Seeds spending from the store: totals per key since the month began and the day began.
    pub fn seeded(month: Vec<(String, f64)>, day: Vec<(String, f64)>) -> Self {
        Self::seeded_in(&RuntimeState::default(), month, day)
    }

    /// [`Limits::seeded`], with the counts kept in `runtime` (with Redis, the larger of the
    /// store's total and Redis's counts: see [`KeyWindows::seed`]).
    pub fn seeded_in(
        runtime: &RuntimeState,
        month: Vec<(String, f64)>,
        day: Vec<(String, f64)>,
    ) -> Self {
        let now = now_ms();
        let (today, this_month) = (day_of(now), month_of(now));
        let windows = runtime.key_windows();
        let mut totals: HashMap<String, (f64, f64)> = HashMap::new();
        for (key, usd) in month {
            totals.entry(key).or_default().1 += usd;
        }
        for (key, usd) in day {
            totals.entry(key).or_default().0 += usd;
        }
        for (key, (day_usd, month_usd)) in totals {
            windows.seed(&key, today, this_month, day_usd, month_usd);
        }
        Self {
            windows,
            prices: Default::default(),
            limited: Default::default(),
        }
    }

    /// The keys at start: those with a spending limit are seeded with their spending of this
    /// day and month as the store holds it (`day`, `month`: every key's, [`period_starts`]).
    /// Keys without a limit count nothing, so they are left out (with Redis, no script each).
    pub fn limited_at_start(
        &self,
        keys: &[KeyRecord],
        day: &[(String, f64)],
        month: &[(String, f64)],
    ) {
        let limited: HashSet<String> = keys
            .iter()
            .filter(|k| spend_limited(k))
            .map(|k| k.name.clone())
            .collect();
        self.seed(limited.iter(), day, month);
        *lock(&self.limited) = limited;
    }

    /// Takes every key's limits after the keys were reloaded: the keys that gained a spending
    /// limit since are seeded from the store (spending of keys without a limit is not counted).
    pub async fn follow_keys(&self, keys: &[KeyRecord], store: &dyn Store) {
        let fresh: Vec<String> = {
            let mut limited = lock(&self.limited);
            let now: HashSet<String> = keys
                .iter()
                .filter(|k| spend_limited(k))
                .map(|k| k.name.clone())
                .collect();
            let fresh = now.difference(&limited).cloned().collect();
            *limited = now;
            fresh
        };
        self.seed_from_store(fresh, store).await;
    }

    /// [`Limits::follow_keys`] for one key created or changed.
    pub async fn follow_key(&self, key: &KeyRecord, store: &dyn Store) {
        let fresh = {
            let mut limited = lock(&self.limited);
            if spend_limited(key) {
                limited.insert(key.name.clone())
            } else {
                limited.remove(&key.name);
                false
            }
        };
        if fresh {
            self.seed_from_store(vec![key.name.clone()], store).await;
        }
    }

    /// Raises the counts of `keys` to their spending in `day` and `month` (rows of key name and
    /// USD since the day's and the month's start).
    fn seed<'a>(
        &self,
        keys: impl Iterator<Item = &'a String>,
        day: &[(String, f64)],
        month: &[(String, f64)],
    ) {
        let now = now_ms();
        let total = |rows: &[(String, f64)], key: &str| {
            rows.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, usd)| usd)
                .sum::<f64>()
        };
        for key in keys {
            let (day_usd, month_usd) = (total(day, key), total(month, key));
            self.windows
                .seed(key, day_of(now), month_of(now), day_usd, month_usd);
        }
    }

    /// The keys' spending of this day and month as the store holds it (every instance's rows
    /// once written), raised into the counts. A store that does not answer leaves the keys
    /// unseeded, to be tried at the next reload of the keys.
    async fn seed_from_store(&self, keys: Vec<String>, store: &dyn Store) {
        if keys.is_empty() {
            return;
        }
        let (day_start, month_start) = period_starts(now_ms());
        let totals = async {
            Ok::<_, crate::store::StoreError>((
                store.spend_since(day_start).await?,
                store.spend_since(month_start).await?,
            ))
        };
        match totals.await {
            Ok((day, month)) => self.seed(keys.iter(), &day, &month),
            Err(e) => {
                tracing::warn!("cannot read spending from the store for keys that gained a spending limit ({e}); tried again at the next change of the keys");
                let mut limited = lock(&self.limited);
                for key in &keys {
                    limited.remove(key);
                }
            }
        }
    }

    /// The price table spending is counted with (the shipped prices and the config's `prices:`),
    /// replaced by a configuration reload.
    pub fn with_prices(mut self, prices: std::sync::Arc<Live<crate::pricing::PriceTable>>) -> Self {
        self.prices = prices;
        self
    }

    /// Counts a priced request against its key.
    pub fn add_spend(&self, key: &str, usd: f64) {
        if usd <= 0.0 {
            return;
        }
        let now = now_ms();
        self.windows.add(key, day_of(now), month_of(now), usd, usd);
    }

    /// Whether this key may send a request for this model: allowed models and spending (no
    /// round trip; the rpm window and the slot are [`Limits::admit`]'s).
    pub fn check(&self, key: &ApiKey, model: &str) -> Result<(), Refusal> {
        let limits = &key.limits;
        if let Some(allowed) = &limits.allowed_models {
            if !allowed.iter().any(|m| m == model) {
                return Err(Refusal::ModelNotAllowed {
                    model: model.to_owned(),
                    allowed: allowed.clone(),
                });
            }
        }
        let spend_limited =
            limits.daily_spend_limit.is_some() || limits.monthly_spend_limit.is_some();
        if spend_limited && self.prices.get().price(model).is_none() {
            return Err(Refusal::ModelUnpriced {
                model: model.to_owned(),
            });
        }
        self.check_spend(key)
    }

    /// Admits one request of `key`: counts it in the rpm window and takes the key's
    /// concurrency slot, both or neither (with a shared backend, one script call for a key with
    /// either limit; none for a key without). Over the rpm limit: refused. Every slot held:
    /// [`Admitted::Busy`], nothing counted.
    pub async fn admit(&self, key: &ApiKey) -> Result<Admitted, Refusal> {
        let rpm = key.limits.rpm_limit;
        let slots = key.slots.as_deref().map(|s| s.parts());
        match self.windows.admit_key(&key.name, rpm, MINUTE, slots).await {
            Admission::Admitted(lease) => Ok(Admitted::Now(lease)),
            Admission::Busy => Ok(Admitted::Busy),
            Admission::OverRate(wait) => Err(Refusal::RpmLimit { limit: rpm, wait }),
        }
    }

    /// [`Limits::admit`], waiting while every slot of the key is held (each look again asks
    /// for the rpm window too, counted only when the slot is taken). The caller bounds the wait.
    pub async fn admit_waiting(&self, key: &ApiKey) -> Result<Option<Lease>, Refusal> {
        let rpm = key.limits.rpm_limit;
        let slots = key.slots.as_deref().map(|s| s.parts());
        self.windows
            .admit_key_waiting(&key.name, rpm, MINUTE, slots)
            .await
            .map_err(|wait| Refusal::RpmLimit { limit: rpm, wait })
    }

    fn check_spend(&self, key: &ApiKey) -> Result<(), Refusal> {
        let (daily, monthly) = (key.limits.daily_spend_limit, key.limits.monthly_spend_limit);
        if daily.is_none() && monthly.is_none() {
            return Ok(());
        }
        let now = now_ms();
        let (day_usd, month_usd) = self.windows.totals(&key.name, day_of(now), month_of(now));
        if let Some(limit) = daily.filter(|l| day_usd >= *l) {
            let reset = (day_of(now) + 1) * DAY_MS;
            return Err(over_spend(SpendPeriod::Daily, limit, day_usd, reset - now));
        }
        if let Some(limit) = monthly.filter(|l| month_usd >= *l) {
            let reset = month_start_ms(month_of(now) + 1);
            return Err(over_spend(
                SpendPeriod::Monthly,
                limit,
                month_usd,
                reset - now,
            ));
        }
        Ok(())
    }
}

fn spend_limited(key: &KeyRecord) -> bool {
    key.daily_spend_limit.is_some() || key.monthly_spend_limit.is_some()
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `wait_ms`: until the window resets (at least a second is asked for).
fn over_spend(period: SpendPeriod, limit: f64, spent: f64, wait_ms: i64) -> Refusal {
    Refusal::SpendingLimit {
        period,
        limit,
        spent,
        wait: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0).max(1000)),
    }
}

impl crate::store::usage_writer::SpendMeter for Limits {
    fn add_spend(&self, key: &str, usd: f64) {
        Limits::add_spend(self, key, usd);
    }
}

/// Unix ms of the start of the current UTC day and month, for seeding spending.
pub fn period_starts(now: i64) -> (i64, i64) {
    (day_of(now) * DAY_MS, month_start_ms(month_of(now)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Source, UsageRow};

    fn key(daily_spend_limit: Option<f64>) -> KeyRecord {
        KeyRecord {
            name: "k".into(),
            key_hash: "h".into(),
            prefix: "sk".into(),
            suffix: "x".into(),
            group: "default".into(),
            enabled: true,
            expires_at: None,
            concurrency: 0,
            rpm_limit: 0,
            daily_spend_limit,
            monthly_spend_limit: None,
            allowed_models: None,
            source: Source::Admin,
            created_at: 0,
        }
    }

    fn row(id: &str, cost_usd: f64) -> UsageRow {
        UsageRow {
            request_id: id.into(),
            at_ms: now_ms(),
            key: "k".into(),
            account: None,
            endpoint: "responses".into(),
            model: "gpt-5".into(),
            client_model: None,
            stream: false,
            status: 200,
            success: true,
            input_tokens: 1,
            cached_input_tokens: 0,
            cache_creation_tokens: 0,
            output_tokens: 1,
            reasoning_tokens: 0,
            cost_usd,
            priced: true,
            duration_ms: 1,
            ttft_ms: None,
            attempts: 1,
            client_disconnected: false,
            transport: "http".into(),
        }
    }

    fn today(limits: &Limits) -> f64 {
        let now = now_ms();
        limits.windows.totals("k", day_of(now), month_of(now)).0
    }

    /// A key that gains a spending limit starts from what the store holds (its spending was not
    /// counted while it had none); a key without one is not seeded (the control).
    #[tokio::test]
    async fn a_key_that_gains_a_spending_limit_is_seeded_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .insert_usage(&[row("req_1", 1.5), row("req_2", 0.5)])
            .await
            .unwrap();
        let limits = Limits::default();
        limits.limited_at_start(&[key(None)], &[], &[]);

        limits.follow_keys(&[key(None)], &store).await;
        assert_eq!(today(&limits), 0.0, "no limit: nothing counted or seeded");

        limits.follow_keys(&[key(Some(10.0))], &store).await;
        assert!((today(&limits) - 2.0).abs() < 1e-9, "{}", today(&limits));

        // Dropping the limit and giving it again through the admin API seeds again (as a
        // floor: the count is not doubled).
        limits.follow_key(&key(None), &store).await;
        store.insert_usage(&[row("req_3", 1.0)]).await.unwrap();
        limits.follow_key(&key(Some(10.0)), &store).await;
        assert!((today(&limits) - 3.0).abs() < 1e-9, "{}", today(&limits));
    }
}
