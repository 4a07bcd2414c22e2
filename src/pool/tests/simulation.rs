//! A day of synthetic traffic on five sign-in accounts with different quota left: today's order
//! (load, then last use; the quota reports ignored) against quota-aware selection, on the real
//! [`Pool`] under paused time. Ignored (it prints a table, it asserts little):
//! `cargo test --lib pool::tests::simulation -- --ignored --nocapture`. The table is in
//! docs/QUOTA.md.

use std::time::{Duration, SystemTime};

use super::*;

const HOUR: Duration = Duration::from_secs(3600);
const FIVE_HOURS: Duration = Duration::from_secs(5 * 3600);
/// Points of the 5 h and the 7 d window one request uses.
const COST_5H: f64 = 0.4;
const COST_7D: f64 = 0.05;

/// One simulated upstream account.
struct Upstream {
    name: &'static str,
    five_hour: f64,
    weekly: f64,
    five_hour_resets: Instant,
    weekly_resets: Instant,
}

impl Upstream {
    fn roll(&mut self, now: Instant) {
        while now >= self.five_hour_resets {
            self.five_hour = 0.0;
            self.five_hour_resets += FIVE_HOURS;
        }
    }

    fn full(&self) -> bool {
        self.five_hour >= 100.0 || self.weekly >= 100.0
    }

    /// Until the exhausted window resets (the later one if both are).
    fn reset_in(&self, now: Instant) -> Duration {
        let mut at = now;
        if self.five_hour >= 100.0 {
            at = at.max(self.five_hour_resets);
        }
        if self.weekly >= 100.0 {
            at = at.max(self.weekly_resets);
        }
        at - now
    }

    fn snapshot(&self, now: Instant) -> quota::QuotaSnapshot {
        let wall = SystemTime::now();
        let window = |used: f64, resets: Instant, minutes: u64| quota::QuotaWindow {
            used_percent: used,
            window_minutes: Some(minutes),
            resets_at: Some(humantime::format_rfc3339_seconds(wall + (resets - now)).to_string()),
        };
        quota::QuotaSnapshot {
            primary: Some(window(self.five_hour, self.five_hour_resets, 300)),
            secondary: Some(window(self.weekly, self.weekly_resets, 10_080)),
        }
    }

    fn headroom(&self) -> f64 {
        100.0 - self.five_hour.max(self.weekly)
    }
}

#[derive(Debug, Default)]
struct Tally {
    requests: u32,
    refused: u32,
    refusals_429: u32,
    /// Minutes in which some account had no room left.
    minutes_with_one_used_up: u32,
    /// The most-exhausted account's headroom, summed per minute (for the mean).
    lowest_headroom_sum: f64,
    lowest_headroom_ever: f64,
    weekly_left: Vec<(&'static str, f64)>,
}

/// Requests in minute `m` of the day: 1 a minute at night, up to 5 in the afternoon.
fn demand(m: u32) -> f64 {
    let hour = f64::from(m) / 60.0;
    let day = if (8.0..22.0).contains(&hour) {
        (std::f64::consts::PI * (hour - 8.0) / 14.0).sin()
    } else {
        0.0
    };
    1.0 + 4.0 * day
}

async fn run_day(quota_aware: bool, reserve: f64) -> Tally {
    let start = Instant::now();
    let specs: Vec<AccountSpec> = ["s1", "s2", "s3", "s4", "s5"]
        .iter()
        .map(|n| spec(n, 0, 0))
        .collect();
    let p = Pool::new(
        with_clients(specs),
        PoolPolicy {
            quota_reserve_percent: reserve,
            ..default_policy()
        },
    )
    .unwrap();
    // (5 h used, 7 d used, first 5 h reset in minutes)
    let initial = [
        (5.0, 20.0, 240),
        (30.0, 35.0, 60),
        (55.0, 50.0, 150),
        (75.0, 65.0, 180),
        (90.0, 80.0, 30),
    ];
    let mut upstreams: Vec<Upstream> = ["s1", "s2", "s3", "s4", "s5"]
        .iter()
        .zip(initial)
        .map(|(name, (five_hour, weekly, first))| Upstream {
            name,
            five_hour,
            weekly,
            five_hour_resets: start + Duration::from_secs(60 * first),
            weekly_resets: start + 4 * 24 * HOUR,
        })
        .collect();
    let mut tally = Tally {
        lowest_headroom_ever: 100.0,
        ..Tally::default()
    };
    let mut owed = 0.0;
    for minute in 0..24 * 60 {
        owed += demand(minute);
        let now_requests = owed.floor();
        owed -= now_requests;
        let n = now_requests as u32;
        for i in 0..n {
            let at = start
                + Duration::from_secs(60 * u64::from(minute))
                + Duration::from_millis(u64::from(60_000 / n.max(1) * i));
            tokio::time::advance(at.saturating_duration_since(Instant::now())).await;
            let now = Instant::now();
            for u in &mut upstreams {
                u.roll(now);
            }
            tally.requests += 1;
            let mut tried = Vec::new();
            loop {
                let Selection::Slot(slot) = p.select(&wanted(&tried, None)) else {
                    tally.refused += 1;
                    break;
                };
                let account = Arc::clone(slot.account());
                let u = upstreams
                    .iter_mut()
                    .find(|u| u.name == account.spec.name)
                    .unwrap();
                if u.full() {
                    tally.refusals_429 += 1;
                    let effect = AccountEffect::RateLimited(Some(u.reset_in(now)));
                    p.failed(&account, &effect, "429", None);
                    tried.push(account.id);
                    continue;
                }
                u.five_hour = (u.five_hour + COST_5H).min(100.0);
                u.weekly = (u.weekly + COST_7D).min(100.0);
                p.succeeded(&account, quota_aware.then(|| u.snapshot(now)), None);
                break;
            }
        }
        let lowest = upstreams
            .iter()
            .map(Upstream::headroom)
            .fold(100.0, f64::min);
        tally.lowest_headroom_sum += lowest;
        tally.lowest_headroom_ever = tally.lowest_headroom_ever.min(lowest);
        if lowest <= 0.0 {
            tally.minutes_with_one_used_up += 1;
        }
    }
    tally.weekly_left = upstreams
        .iter()
        .map(|u| (u.name, 100.0 - u.weekly))
        .collect();
    tally
}

#[tokio::test(start_paused = true)]
async fn a_day_of_traffic_today_against_quota_aware_selection() {
    println!("| selection | requests | refused | 429 answers | minutes with an account used up | most-exhausted account's headroom, mean / lowest | 7 d window left at the end (s1…s5) |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut results = Vec::new();
    for (label, aware, reserve) in [
        ("today (load, last use)", false, 0.0),
        ("quota-aware", true, 0.0),
        ("quota-aware, reserve 5 %", true, 5.0),
    ] {
        let t = run_day(aware, reserve).await;
        let weekly: Vec<String> = t
            .weekly_left
            .iter()
            .map(|(_, left)| format!("{left:.0}"))
            .collect();
        println!(
            "| {label} | {} | {} | {} | {} | {:.1} / {:.1} | {} |",
            t.requests,
            t.refused,
            t.refusals_429,
            t.minutes_with_one_used_up,
            t.lowest_headroom_sum / (24.0 * 60.0),
            t.lowest_headroom_ever,
            weekly.join(" / ")
        );
        assert!(t.requests > 0);
        results.push((t.refused, t.refusals_429, t.minutes_with_one_used_up));
    }
    // The claim of docs/QUOTA.md (the table is printed with --nocapture): quota-aware selection
    // refuses no more, meets fewer 429s and has an account used up for fewer minutes than today.
    let today = results[0];
    for aware in &results[1..] {
        assert!(aware.0 <= today.0, "refused: {aware:?} vs today {today:?}");
        assert!(
            aware.1 < today.1,
            "429 answers: {aware:?} vs today {today:?}"
        );
        assert!(
            aware.2 < today.2,
            "minutes used up: {aware:?} vs today {today:?}"
        );
    }
}
