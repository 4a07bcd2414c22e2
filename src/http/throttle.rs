//! Throttling failed admin authentications (a wrong admin token on the admin API, a wrong
//! token at the dashboard's sign-in), per client address.
//!
//! The first [`FREE_FAILURES`] failures of an address cost nothing (typos). Each failure after
//! them locks the address out for twice as long as the one before, from [`FIRST_LOCK`] up to
//! [`MAX_LOCK`]; while locked out, every admin authentication from it, right or wrong, gets 429
//! with `Retry-After` without the token being looked at. The server never sleeps on a request:
//! the lock-out is the delay. An address without a failure for [`FORGET_AFTER`] starts afresh,
//! and so does one that signs in. Failures are logged at most once per [`LOG_EVERY`] per
//! address, with their count. IPv6 addresses count per /64 (one host's usual allocation).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::http::refusal::Refusal;

/// Failures of an address before the lock-outs start.
pub const FREE_FAILURES: u32 = 5;
/// The first lock-out; each next failure doubles it.
pub const FIRST_LOCK: Duration = Duration::from_secs(1);
/// The longest lock-out.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// An address whose last failure is this old is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// At most one log line per address per this.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond, the one that failed longest ago is forgotten first.
const MAX_ADDRESSES: usize = 10_000;

/// Failed admin authentications by client address.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<IpAddr, Record>>);

struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Instant,
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// What to log after a failure.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Failures since the previous line about this address.
    pub failures: u64,
    /// How long the address is now locked out (zero while its failures are still free).
    pub locked_for: Duration,
}

/// The lock-out after an address's `failures`-th failure.
pub fn lock_after(failures: u32) -> Duration {
    if failures <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES - 1).min(31);
    FIRST_LOCK
        .checked_mul(1u32 << doublings)
        .unwrap_or(MAX_LOCK)
        .min(MAX_LOCK)
}

/// IPv4 as is; IPv6 by its /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

impl Throttle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Err(wait)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.map().get(&bucket(ip)) {
            Some(record) if record.locked_until > now => Err(record.locked_until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failure of `ip`; answers a line to log when one is due.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<LogLine> {
        let mut map = self.map();
        let key = bucket(ip);
        if !map.contains_key(&key) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, r| now.duration_since(r.last_failure) < FORGET_AFTER);
            if map.len() >= MAX_ADDRESSES {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, r)| r.last_failure)
                    .map(|(ip, _)| *ip);
                if let Some(oldest) = oldest {
                    map.remove(&oldest);
                }
            }
        }
        let record = map.entry(key).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: now,
            unlogged: 0,
            logged_at: None,
        });
        if now.duration_since(record.last_failure) >= FORGET_AFTER {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let locked_for = lock_after(record.failures);
        record.locked_until = now + locked_for;
        record.unlogged += 1;
        let due = record
            .logged_at
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY);
        if !due {
            return None;
        }
        record.logged_at = Some(now);
        Some(LogLine {
            failures: std::mem::take(&mut record.unlogged),
            locked_for,
        })
    }

    /// A right token from `ip`: its failures are forgiven.
    pub fn succeeded(&self, ip: IpAddr) {
        let mut map = self.map();
        if !map.is_empty() {
            map.remove(&bucket(ip));
        }
    }
}

/// Before a token is compared: 429 (with `Retry-After`) while `ip` is locked out.
pub fn gate(throttle: &Throttle, ip: IpAddr) -> Result<(), Refusal> {
    throttle
        .check(ip, Instant::now())
        .map_err(|wait| Refusal::AdminThrottled { wait })
}

/// After a wrong token from `ip` (`what`: where it was given): counted, and logged when due.
pub fn record_failure(throttle: &Throttle, ip: IpAddr, what: &str) {
    if let Some(line) = throttle.failed(ip, Instant::now()) {
        tracing::warn!(
            client = %ip,
            failures = line.failures,
            "admin: {} failed authentication(s) ({what}) from {ip} since the last such line; locked out for {} s",
            line.failures,
            line.locked_for.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_lock_out_doubles_after_the_free_failures_up_to_the_cap() {
        let schedule: Vec<u64> = (1..=18).map(|n| lock_after(n).as_secs()).collect();
        assert_eq!(
            schedule,
            [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
        );
        assert_eq!(lock_after(u32::MAX), MAX_LOCK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_locked_out_address_waits_and_others_do_not() {
        let throttle = Throttle::default();
        let attacker = ip("203.0.113.5");
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.check(attacker, Instant::now()), Ok(()));
            throttle.failed(attacker, Instant::now());
        }
        assert_eq!(
            throttle.check(attacker, Instant::now()),
            Ok(()),
            "free so far"
        );
        throttle.failed(attacker, Instant::now());
        assert_eq!(throttle.check(attacker, Instant::now()), Err(FIRST_LOCK));
        assert_eq!(throttle.check(ip("198.51.100.1"), Instant::now()), Ok(()));
        tokio::time::advance(FIRST_LOCK).await;
        assert_eq!(throttle.check(attacker, Instant::now()), Ok(()));
        throttle.failed(attacker, Instant::now());
        assert_eq!(
            throttle.check(attacker, Instant::now()),
            Err(2 * FIRST_LOCK)
        );
        // Forgotten after an hour without failures: free again.
        tokio::time::advance(FORGET_AFTER).await;
        throttle.failed(attacker, Instant::now());
        assert_eq!(throttle.check(attacker, Instant::now()), Ok(()));
        // A success forgives at once.
        for _ in 0..10 {
            throttle.failed(attacker, Instant::now());
        }
        assert!(throttle.check(attacker, Instant::now()).is_err());
        throttle.succeeded(attacker);
        assert_eq!(throttle.check(attacker, Instant::now()), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_are_logged_once_per_window_with_their_count() {
        let throttle = Throttle::default();
        let attacker = ip("203.0.113.5");
        let mut lines = Vec::new();
        for _ in 0..1000 {
            lines.extend(throttle.failed(attacker, Instant::now()));
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // 100 s of failures: a line at once, one 60 s later with the count since.
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].failures, 1);
        assert_eq!(lines[1].failures, 600);
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let throttle = Throttle::default();
        let now = Instant::now();
        for i in 0..=FREE_FAILURES {
            throttle.failed(ip(&format!("2001:db8:1:2::{i}")), now);
        }
        assert!(throttle.check(ip("2001:db8:1:2::ffff"), now).is_err());
        assert!(throttle.check(ip("2001:db8:1:3::1"), now).is_ok());
    }
}
