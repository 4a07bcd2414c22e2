//! Per-key limits checked before a request reaches an account: allowed models, spending per UTC
//! day and calendar month, requests per minute. (Disabled and expired keys are refused earlier,
//! by authentication.)
//!
//! The counts are runtime state ([`KeyWindows`], keyed by key name) so the check costs no
//! database round trip: spending is seeded from the store at start and grows as the usage sink
//! prices each record; the rpm window holds the last minute's admissions. With the local backend
//! the counts are per process; with Redis (`state.backend: redis`) the rpm window is shared by
//! every instance (spending is still counted per instance).

use std::time::Duration;

use tokio::time::Instant;

use crate::http::auth::ApiKey;
use crate::http::refusal::{Refusal, SpendPeriod};
use crate::runtime_state::{KeyWindows, Live, RuntimeState, Windows};
use crate::store::now_ms;

const MINUTE: Duration = Duration::from_secs(60);
const DAY_MS: i64 = 86_400_000;

pub struct Limits {
    /// Admissions of the last minute and spending of this day and month, per key name.
    windows: KeyWindows,
    /// To refuse a model without a price to a key with a spending limit: its requests would cost
    /// 0 and never reach the limit.
    prices: std::sync::Arc<Live<crate::pricing::PriceTable>>,
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

    /// [`Limits::seeded`], with the counts kept in `runtime`.
    pub fn seeded_in(
        runtime: &RuntimeState,
        month: Vec<(String, f64)>,
        day: Vec<(String, f64)>,
    ) -> Self {
        let now = now_ms();
        let (today, this_month) = (day_of(now), month_of(now));
        let windows = runtime.key_windows();
        for (key, usd) in month {
            windows.add(&key, today, this_month, 0.0, usd);
        }
        for (key, usd) in day {
            windows.add(&key, today, this_month, usd, 0.0);
        }
        Self {
            windows,
            prices: Default::default(),
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

    /// Whether this key may send this request now. Counts it against the rpm window when it may
    /// (with a shared backend, the window every instance shares: one round trip for a key with
    /// an rpm limit).
    pub async fn check(&self, key: &ApiKey, model: &str) -> Result<(), Refusal> {
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
        self.check_spend(key)?;
        self.admit_rpm(key).await
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

    async fn admit_rpm(&self, key: &ApiKey) -> Result<(), Refusal> {
        let limit = key.limits.rpm_limit;
        if limit == 0 {
            return Ok(());
        }
        if let Err(wait) = self
            .windows
            .admit_shared(&key.name, limit, MINUTE, Instant::now())
            .await
        {
            return Err(Refusal::RpmLimit { limit, wait });
        }
        Ok(())
    }
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

fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Months since year 0 (`year * 12 + month - 1`) of a unix time in ms.
fn month_of(ms: i64) -> i64 {
    let (year, month, _) = civil_from_days(day_of(ms));
    year * 12 + i64::from(month) - 1
}

fn month_start_ms(month_index: i64) -> i64 {
    let (year, month) = (month_index.div_euclid(12), month_index.rem_euclid(12) + 1);
    days_from_civil(year, month, 1) * DAY_MS
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

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(1),
        u32::try_from(day).unwrap_or(1),
    )
}

/// The inverse: (year, month 1–12, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_arithmetic_matches_known_dates() {
        // 2024-02-29 is day 19782; 2026-11-26 is day 20783.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(days_from_civil(2026, 11, 26), 20_783);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        let dec = days_from_civil(2025, 12, 31) * DAY_MS;
        assert_eq!(
            month_start_ms(month_of(dec) + 1),
            days_from_civil(2026, 1, 1) * DAY_MS
        );
    }
}
