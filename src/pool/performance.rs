//! How well each account has answered lately, and whether it is far worse than its peers.
//!
//! Each account's health record carries an [`OutcomeWindow`]: the last [`WINDOW`] (5 min) in
//! [`BUCKETS`] buckets of [`BUCKET`] (10 s), each counting answered attempts, failed ones and a
//! histogram of times to first token (of streamed answers: a JSON answer's first output is its
//! end, which says more about its length than about the account). Recording is O(1) (a bucket that fell out of the window is
//! taken off the running totals when its slot is reused); reading ([`OutcomeWindow::summary`])
//! never writes — it takes off the totals the buckets that left the window since the last
//! record — so selection can read it under a shared lock, and a shared backend can mirror it.
//! Memory is fixed (about 1.4 KiB per account); nothing allocates.
//!
//! Only failures the upstream caused count: a 5xx, a broken or refused connection, a header or
//! first-token timeout, a stalled stream, an unusable answer ([`AccountEffect::is_transient`]).
//! Client errors, 429s with a reset and 529s have rules of their own (cooldowns) and are not
//! counted; neither are health probes.
//!
//! **Far worse than its peers** ([`Performance::judge`]): with at least [`MIN_SAMPLES`]
//! attempts, an error rate of at least [`ERROR_RATIO`] × the peers' median and at least
//! [`ERROR_FLOOR`]; or, with at least [`MIN_SAMPLES`] first tokens, a median time to first
//! token of at least [`TTFT_RATIO`] × the peers' median and at least [`TTFT_FLOOR`]. The peers'
//! median is the lower median over the candidates (the account included) that have enough
//! samples themselves, and there must be two of them: an account alone is never judged. A
//! demoted account is not disabled: selection ranks it after its healthy peers of the same
//! priority (see [`super`]), so it still serves when they are full, cooling or already tried.
//! As it gets no traffic its samples leave the window, and after at most [`WINDOW`] it is
//! judged afresh on new traffic.
//!
//! **Sticky slow-release**: how far past the threshold the account is gives a severity in
//! `0..=1`; a conversation bound to a demoted account is moved (to a healthy peer with room)
//! with probability [`release_probability`], between [`RELEASE_FLOOR`] just past the threshold
//! and 1 at the worst, once per request — so a blip does not throw away a conversation's prompt
//! cache, and a conversation on a clearly bad account leaves soon. A new conversation is not
//! bound to a demoted account.
//!
//! [`AccountEffect::is_transient`]: super::AccountEffect::is_transient

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// What the window covers.
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
/// The length of one bucket.
pub const BUCKET: Duration = Duration::from_secs(10);
/// Buckets in the window.
pub const BUCKETS: usize = (WINDOW.as_secs() / BUCKET.as_secs()) as usize;
/// Attempts (for the error rate) or first tokens (for TTFT) an account needs in the window
/// before it is judged, and a peer before it counts towards the median.
pub const MIN_SAMPLES: u32 = 10;
/// An error rate this many times the peers' median is far worse...
pub const ERROR_RATIO: f64 = 3.0;
/// ...if it is at least this high too.
pub const ERROR_FLOOR: f64 = 0.2;
/// A median time to first token this many times the peers' median is far worse...
pub const TTFT_RATIO: f64 = 3.0;
/// ...if it is at least this long too.
pub const TTFT_FLOOR: Duration = Duration::from_secs(1);
/// The chance per request that a binding to an account just past the threshold moves.
pub const RELEASE_FLOOR: f64 = 0.1;

/// Histogram bins of times to first token: bin 0 is below [`TTFT_BASE_MS`], bin `i` starts at
/// `TTFT_BASE_MS × √2^(i−1)`; the last one is open-ended (from about 72 s).
const TTFT_BINS: usize = 20;
const TTFT_BASE_MS: f64 = 100.0;

/// One bucket's counts; `tick` says which [`BUCKET`] since the window's origin they are for.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    tick: u32,
    ok: u16,
    failed: u16,
    ttft: [u16; TTFT_BINS],
}

/// An account's outcomes over the last [`WINDOW`].
#[derive(Debug, Clone)]
pub struct OutcomeWindow {
    origin: Instant,
    /// The tick of the newest bucket written.
    newest: u32,
    buckets: [Bucket; BUCKETS],
    /// Sums over the buckets of ticks `newest − BUCKETS + 1 ..= newest`.
    ok: u32,
    failed: u32,
    ttft: [u32; TTFT_BINS],
}

impl Default for OutcomeWindow {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

/// What the window says about an account now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Performance {
    /// Attempts that ended (answered or failed by the upstream's fault).
    pub attempts: u32,
    pub failed: u32,
    /// Answers whose time to first token is known (counted from [`MIN_SAMPLES`] answers on:
    /// fewer are not judged).
    pub ttft_samples: u32,
    /// The median time to first token (the middle of its histogram bin, about ±20 %).
    pub ttft_p50: Option<Duration>,
}

/// The medians an account is judged against.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Peers {
    pub error_rate: Option<f64>,
    pub ttft: Option<Duration>,
}

/// Why an account is demoted, and how badly (`0..=1`, 0 just at the threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demotion {
    pub reason: DemotionReason,
    pub severity: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DemotionReason {
    ErrorRate,
    Ttft,
}

// === impl OutcomeWindow ===

impl OutcomeWindow {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            newest: 0,
            buckets: [Bucket::default(); BUCKETS],
            ok: 0,
            failed: 0,
            ttft: [0; TTFT_BINS],
        }
    }

    fn tick(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.origin).as_secs();
        u32::try_from(secs / BUCKET.as_secs()).unwrap_or(u32::MAX)
    }

    /// An answer, with its time to first token if known.
    pub fn record_success(&mut self, now: Instant, ttft: Option<Duration>) {
        let at = self.advance(now);
        let bucket = &mut self.buckets[at];
        // A bucket's count saturates (65 535 in 10 s); the totals follow it, so taking the
        // bucket off them later stays exact.
        if bucket.ok < u16::MAX {
            bucket.ok += 1;
            self.ok += 1;
        }
        if let Some(bin) = ttft.map(bin_of) {
            if bucket.ttft[bin] < u16::MAX {
                bucket.ttft[bin] += 1;
                self.ttft[bin] += 1;
            }
        }
    }

    /// A failure the upstream caused.
    pub fn record_failure(&mut self, now: Instant) {
        let at = self.advance(now);
        let bucket = &mut self.buckets[at];
        if bucket.failed < u16::MAX {
            bucket.failed += 1;
            self.failed += 1;
        }
    }

    /// Forgets everything (an account reset by hand starts with a clean record).
    pub fn clear(&mut self) {
        *self = Self::new(self.origin);
    }

    /// Moves the window up to `now` and returns the index of its bucket: each bucket slot
    /// reused is taken off the totals first (at most [`BUCKETS`] of them, however long the
    /// account was idle).
    fn advance(&mut self, now: Instant) -> usize {
        let tick = self.tick(now);
        if tick > self.newest {
            let steps = (tick - self.newest).min(BUCKETS as u32);
            for t in tick + 1 - steps..=tick {
                let slot = &mut self.buckets[t as usize % BUCKETS];
                self.ok -= u32::from(slot.ok);
                self.failed -= u32::from(slot.failed);
                for (total, n) in self.ttft.iter_mut().zip(slot.ttft) {
                    *total -= u32::from(n);
                }
                *slot = Bucket {
                    tick: t,
                    ..Bucket::default()
                };
            }
            self.newest = tick;
        }
        // A time before the newest bucket (not expected: the clock is monotonic) counts there.
        self.newest as usize % BUCKETS
    }

    /// The buckets of the totals that are out of the window at `now` (oldest first).
    fn expired(&self, now: Instant) -> impl Iterator<Item = &Bucket> + '_ {
        let lag = self.tick(now).saturating_sub(self.newest);
        let lag = lag.min(BUCKETS as u32);
        // Ticks newest − BUCKETS + 1 ..= newest − BUCKETS + lag, those that exist.
        let first = (self.newest + 1).saturating_sub(BUCKETS as u32);
        let last = self
            .newest
            .saturating_add(lag + 1)
            .saturating_sub(BUCKETS as u32);
        (first..last).filter_map(move |t| {
            let bucket = &self.buckets[t as usize % BUCKETS];
            (bucket.tick == t).then_some(bucket)
        })
    }

    /// The window's counts at `now`, without changing it.
    pub fn summary(&self, now: Instant) -> Performance {
        let (mut ok, mut failed) = (self.ok, self.failed);
        for bucket in self.expired(now) {
            ok -= u32::from(bucket.ok);
            failed -= u32::from(bucket.failed);
        }
        let mut performance = Performance {
            attempts: ok + failed,
            failed,
            ..Performance::default()
        };
        if ok < MIN_SAMPLES {
            // Too few answers to judge their first tokens: the histogram is not read.
            return performance;
        }
        let bins = self.live_ttft(now);
        let samples: u32 = bins.iter().sum();
        performance.ttft_samples = samples;
        // The lower median: the bin holding the ⌈n/2⌉th sample.
        let half = samples.div_ceil(2);
        let mut seen = 0;
        for (bin, n) in bins.iter().enumerate() {
            seen += n;
            if samples > 0 && seen >= half {
                performance.ttft_p50 = Some(middle_of(bin));
                break;
            }
        }
        performance
    }

    fn live_ttft(&self, now: Instant) -> [u32; TTFT_BINS] {
        let mut bins = self.ttft;
        for bucket in self.expired(now) {
            for (total, n) in bins.iter_mut().zip(bucket.ttft) {
                *total -= u32::from(n);
            }
        }
        bins
    }
}

/// The histogram bin of a time to first token.
fn bin_of(ttft: Duration) -> usize {
    let ms = ttft.as_secs_f64() * 1000.0;
    if ms < TTFT_BASE_MS {
        return 0;
    }
    // Bin i ≥ 1 covers [base·√2^(i−1), base·√2^i).
    let i = (2.0 * (ms / TTFT_BASE_MS).log2()).floor() as usize + 1;
    i.min(TTFT_BINS - 1)
}

/// The value a bin stands for: its geometric middle (half the base for bin 0).
fn middle_of(bin: usize) -> Duration {
    let ms = match bin {
        0 => TTFT_BASE_MS / 2.0,
        i => TTFT_BASE_MS * 2f64.powf((i as f64 - 0.5) / 2.0),
    };
    Duration::from_secs_f64(ms / 1000.0)
}

// === impl Performance ===

impl Performance {
    /// Failed ÷ attempts, once there are any.
    pub fn error_rate(&self) -> Option<f64> {
        (self.attempts > 0).then(|| f64::from(self.failed) / f64::from(self.attempts))
    }

    /// Whether this account is far worse than `peers`, and how badly.
    pub fn judge(&self, peers: &Peers) -> Option<Demotion> {
        let by_errors = peers
            .error_rate
            .filter(|_| self.attempts >= MIN_SAMPLES)
            .zip(self.error_rate())
            .and_then(|(median, rate)| {
                let threshold = (ERROR_RATIO * median).max(ERROR_FLOOR);
                (rate >= threshold).then(|| Demotion {
                    reason: DemotionReason::ErrorRate,
                    severity: if threshold < 1.0 {
                        ((rate - threshold) / (1.0 - threshold)).clamp(0.0, 1.0)
                    } else {
                        1.0
                    },
                })
            });
        let by_ttft = peers
            .ttft
            .filter(|_| self.ttft_samples >= MIN_SAMPLES)
            .zip(self.ttft_p50)
            .and_then(|(median, p50)| {
                let threshold = median.mul_f64(TTFT_RATIO).max(TTFT_FLOOR);
                (p50 >= threshold).then(|| Demotion {
                    reason: DemotionReason::Ttft,
                    severity: (1.0 - threshold.as_secs_f64() / p50.as_secs_f64()).clamp(0.0, 1.0),
                })
            });
        match (by_errors, by_ttft) {
            (Some(e), Some(t)) => Some(if t.severity > e.severity { t } else { e }),
            (e, t) => e.or(t),
        }
    }
}

/// The chance that a request moves a conversation off an account demoted with `severity`.
pub fn release_probability(severity: f64) -> f64 {
    RELEASE_FLOOR + (1.0 - RELEASE_FLOOR) * severity.clamp(0.0, 1.0)
}

// === impl Peers ===

impl Peers {
    /// The lower medians over `items` with enough samples (at least two of them, or none).
    /// Reorders `items` (selection's candidate list, whose order does not matter) instead of
    /// copying them: no allocation.
    pub fn of<T>(items: &mut [T], performance: impl Fn(&T) -> &Performance) -> Peers {
        let judged = partition(items, |t| performance(t).attempts >= MIN_SAMPLES);
        let error_rate = lower_median(&mut items[..judged], |t| {
            performance(t).error_rate().unwrap_or(0.0)
        });
        let judged = partition(items, |t| {
            performance(t).ttft_samples >= MIN_SAMPLES && performance(t).ttft_p50.is_some()
        });
        let ttft = lower_median(&mut items[..judged], |t| {
            performance(t).ttft_p50.map_or(0.0, |d| d.as_secs_f64())
        })
        .map(Duration::from_secs_f64);
        Peers { error_rate, ttft }
    }
}

/// Moves the items for which `keep` holds to the front; returns how many there are.
fn partition<T>(items: &mut [T], keep: impl Fn(&T) -> bool) -> usize {
    let mut front = 0;
    for i in 0..items.len() {
        if keep(&items[i]) {
            items.swap(front, i);
            front += 1;
        }
    }
    front
}

/// The lower median of `value` over `items` (at least two), reordering them.
fn lower_median<T>(items: &mut [T], value: impl Fn(&T) -> f64) -> Option<f64> {
    if items.len() < 2 {
        return None;
    }
    let middle = (items.len() - 1) / 2;
    let (_, median, _) = items.select_nth_unstable_by(middle, |a, b| value(a).total_cmp(&value(b)));
    Some(value(median))
}

/// The window as the admin API and the dashboard show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerformanceView {
    /// Attempts in the last 5 minutes (answered, or failed by the upstream's fault).
    pub attempts: u32,
    /// Answered ÷ attempts; `None` without attempts.
    pub success_rate: Option<f64>,
    /// Median time to first token (about ±20 %), once there are enough answers.
    pub ttft_p50_ms: Option<u64>,
    /// Far worse than the other accounts of its groups: ranked after them (not disabled).
    pub demoted: bool,
    /// `error_rate` or `ttft`, when demoted.
    pub demoted_for: Option<DemotionReason>,
}

impl PerformanceView {
    pub fn of(performance: &Performance, demotion: Option<Demotion>) -> Self {
        Self {
            attempts: performance.attempts,
            success_rate: performance.error_rate().map(|r| 1.0 - r),
            ttft_p50_ms: performance
                .ttft_p50
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            demoted: demotion.is_some(),
            demoted_for: demotion.map(|d| d.reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Option<Duration> = Some(Duration::from_millis(300));

    fn window_with(ok: u32, failed: u32, ttft: Option<Duration>) -> OutcomeWindow {
        let now = Instant::now();
        let mut w = OutcomeWindow::new(now);
        for _ in 0..ok {
            w.record_success(now, ttft);
        }
        for _ in 0..failed {
            w.record_failure(now);
        }
        w
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_leave_the_window_after_five_minutes_one_by_one() {
        let mut w = OutcomeWindow::new(Instant::now());
        for _ in 0..6 {
            w.record_success(Instant::now(), FAST);
            w.record_failure(Instant::now());
            tokio::time::advance(BUCKET).await;
        }
        // Six buckets of one answer and one failure, the newest 10 s old.
        assert_eq!(w.summary(Instant::now()).attempts, 12);
        // The first bucket leaves at 5 min from its start, then one per 10 s; reading changes
        // nothing.
        tokio::time::advance(WINDOW - 6 * BUCKET).await;
        assert_eq!(w.summary(Instant::now()).attempts, 10);
        tokio::time::advance(BUCKET * 2).await;
        assert_eq!(w.summary(Instant::now()).attempts, 6);
        // Writing moves the window the same way.
        w.record_failure(Instant::now());
        let now = w.summary(Instant::now());
        assert_eq!((now.attempts, now.failed), (7, 4));
        tokio::time::advance(WINDOW).await;
        assert_eq!(w.summary(Instant::now()), Performance::default());
        w.record_success(Instant::now(), None);
        assert_eq!(
            w.summary(Instant::now()).attempts,
            1,
            "the old totals are gone"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_account_longer_than_the_window_starts_empty() {
        let mut w = window_with(50, 50, FAST);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(w.summary(Instant::now()), Performance::default());
        w.record_failure(Instant::now());
        assert_eq!(w.summary(Instant::now()).failed, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_median_first_token_is_read_from_the_histogram() {
        let now = Instant::now();
        let mut w = OutcomeWindow::new(now);
        for _ in 0..6 {
            w.record_success(now, Some(Duration::from_millis(200)));
        }
        for _ in 0..5 {
            w.record_success(now, Some(Duration::from_secs(60)));
        }
        let p50 = w.summary(now).ttft_p50.unwrap();
        assert!(
            p50 > Duration::from_millis(160) && p50 < Duration::from_millis(250),
            "{p50:?}: six fast, five very slow: the fast ones are the median"
        );
        assert_eq!(w.summary(now).ttft_samples, 11);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_rate_three_times_the_median_and_over_twenty_percent_demotes() {
        let now = Instant::now();
        let good = window_with(19, 1, FAST).summary(now); // 5 %
        let fair = window_with(17, 3, FAST).summary(now); // 15 %
        let bad = window_with(14, 6, FAST).summary(now); // 30 %
        let mut all = [good, fair, bad];
        let peers = Peers::of(&mut all, |p| p);
        assert_eq!(peers.error_rate, Some(0.15));
        // 30 % < 3 × 15 %: not far worse.
        assert_eq!(bad.judge(&peers), None);
        let mut all = [good, good, bad];
        let peers = Peers::of(&mut all, |p| p);
        let demotion = bad.judge(&peers).unwrap();
        assert_eq!(demotion.reason, DemotionReason::ErrorRate);
        // The threshold is the 20 % floor (3 × 5 % is less): 30 % is 1/8 of the way to 100 %.
        assert!((demotion.severity - 0.125).abs() < 1e-9, "{demotion:?}");
        // 15 % is three times a median of 0 but under the 20 % floor.
        let mut all = [window_with(20, 0, FAST).summary(now), fair];
        let peers = Peers::of(&mut all, |p| p);
        assert_eq!(fair.judge(&peers), None);
        // All failing: the worst severity.
        let dead = window_with(0, 20, None).summary(now);
        let mut all = [good, dead];
        assert_eq!(
            dead.judge(&Peers::of(&mut all, |p| p)).unwrap().severity,
            1.0
        );
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_samples_are_not_judged_nor_count_as_peers() {
        let now = Instant::now();
        let good = window_with(20, 0, FAST).summary(now);
        let few_bad = window_with(4, 5, FAST).summary(now); // 9 attempts
        let mut all = [good, few_bad];
        let peers = Peers::of(&mut all, |p| p);
        assert_eq!(
            peers,
            Peers::default(),
            "one account with enough is no peer group"
        );
        assert_eq!(few_bad.judge(&peers), None);
        let mut all = [good, good, few_bad];
        let peers = Peers::of(&mut all, |p| p);
        assert_eq!(peers.error_rate, Some(0.0));
        assert_eq!(few_bad.judge(&peers), None, "9 attempts are too few");
        let bad = window_with(5, 5, FAST).summary(now);
        assert!(bad.judge(&peers).is_some(), "10 are enough");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_token_three_times_the_median_and_over_a_second_demotes() {
        let now = Instant::now();
        let fast = window_with(12, 0, Some(Duration::from_millis(150))).summary(now);
        let slowish = window_with(12, 0, Some(Duration::from_millis(900))).summary(now);
        let slow = window_with(12, 0, Some(Duration::from_secs(3))).summary(now);
        let mut all = [fast, fast, slowish];
        let peers = Peers::of(&mut all, |p| p);
        assert_eq!(
            slowish.judge(&peers),
            None,
            "over 3 × the median but under a second"
        );
        let mut all = [fast, fast, slow];
        let peers = Peers::of(&mut all, |p| p);
        let demotion = slow.judge(&peers).unwrap();
        assert_eq!(demotion.reason, DemotionReason::Ttft);
        assert!(
            demotion.severity > 0.4 && demotion.severity < 0.8,
            "{demotion:?}"
        );
        // The same account among peers as slow as it: not far worse.
        let mut all = [slow, slow, fast];
        assert_eq!(slow.judge(&Peers::of(&mut all, |p| p)), None);
    }

    #[test]
    fn a_binding_moves_more_often_the_worse_the_account() {
        assert_eq!(release_probability(0.0), RELEASE_FLOOR);
        assert!(release_probability(0.5) > release_probability(0.1));
        assert_eq!(release_probability(1.0), 1.0);
    }

    #[test]
    fn bins_cover_the_range_in_steps_of_the_square_root_of_two() {
        assert_eq!(bin_of(Duration::from_millis(50)), 0);
        assert_eq!(bin_of(Duration::from_millis(100)), 1);
        assert_eq!(bin_of(Duration::from_millis(141)), 1);
        assert_eq!(bin_of(Duration::from_millis(142)), 2);
        assert_eq!(bin_of(Duration::from_secs(3600)), TTFT_BINS - 1);
        for bin in 1..TTFT_BINS - 1 {
            assert_eq!(bin_of(middle_of(bin)), bin);
        }
    }
}
