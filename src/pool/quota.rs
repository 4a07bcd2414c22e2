//! What the upstream says about an account's quota, read from the headers of every answer.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// One usage window (Codex reports a ~5 h and a ~7 d one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaWindow {
    pub used_percent: f64,
    pub window_minutes: Option<u64>,
    /// RFC 3339.
    pub resets_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaSnapshot {
    /// The shorter window (about 5 h).
    pub primary: Option<QuotaWindow>,
    /// The longer window (about 7 d).
    pub secondary: Option<QuotaWindow>,
}

/// Reads `x-codex-{primary,secondary}-{used-percent,window-minutes,reset-after-seconds}`.
pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Option<QuotaSnapshot> {
    // Static names: formatting them per request was 2% of the relay's instructions.
    let window = |[used, minutes, reset]: [&str; 3]| -> Option<QuotaWindow> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let used_percent = get(used)?;
        Some(QuotaWindow {
            used_percent,
            window_minutes: get(minutes).map(|m| m.max(0.0) as u64),
            resets_at: get(reset)
                .and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
                .map(|d| humantime::format_rfc3339_seconds(now + d).to_string()),
        })
    };
    let snapshot = QuotaSnapshot {
        primary: window([
            "x-codex-primary-used-percent",
            "x-codex-primary-window-minutes",
            "x-codex-primary-reset-after-seconds",
        ]),
        secondary: window([
            "x-codex-secondary-used-percent",
            "x-codex-secondary-window-minutes",
            "x-codex-secondary-reset-after-seconds",
        ]),
    };
    if snapshot.primary.is_some() || snapshot.secondary.is_some() {
        return Some(snapshot);
    }
    anthropic(headers)
}

/// Reads `anthropic-ratelimit-unified-{5h,7d}-{utilization,reset}` (a used fraction, 0–1, and
/// the window's end in unix seconds) of Anthropic sign-in accounts.
fn anthropic(headers: &HeaderMap) -> Option<QuotaSnapshot> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    let window = |[used, reset]: [&str; 2], minutes: u64| -> Option<QuotaWindow> {
        let fraction = get(used)?;
        Some(QuotaWindow {
            used_percent: fraction * 100.0,
            window_minutes: Some(minutes),
            resets_at: get(reset)
                .filter(|s| s.is_finite() && *s >= 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .map(|d| humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + d).to_string()),
        })
    };
    let snapshot = QuotaSnapshot {
        primary: window(
            [
                "anthropic-ratelimit-unified-5h-utilization",
                "anthropic-ratelimit-unified-5h-reset",
            ],
            300,
        ),
        secondary: window(
            [
                "anthropic-ratelimit-unified-7d-utilization",
                "anthropic-ratelimit-unified-7d-reset",
            ],
            10_080,
        ),
    };
    (snapshot.primary.is_some() || snapshot.secondary.is_some()).then_some(snapshot)
}

/// An account's usage windows as selection reads them: how much of each is used and when it
/// resets (on the pool's clock). Built once per answer, read on every selection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Headroom {
    windows: [Option<(f64, Option<Instant>)>; 2],
}

impl Headroom {
    /// `snapshot` as read at `wall` (the wall clock) and `now` (the pool's clock).
    pub fn of(snapshot: &QuotaSnapshot, wall: SystemTime, now: Instant) -> Self {
        let window = |w: &Option<QuotaWindow>| {
            w.as_ref().map(|w| {
                let resets = w
                    .resets_at
                    .as_deref()
                    .and_then(|at| humantime::parse_rfc3339(at).ok())
                    .map(|at| now + at.duration_since(wall).unwrap_or_default());
                (w.used_percent, resets)
            })
        };
        Self {
            windows: [window(&snapshot.primary), window(&snapshot.secondary)],
        }
    }

    /// The tightest window's use in percent at `now`; a window past its reset counts as empty,
    /// and an account that reported nothing as 0.
    pub fn used(&self, now: Instant) -> f64 {
        self.windows
            .iter()
            .flatten()
            .filter(|(_, resets)| resets.is_none_or(|at| at > now))
            .map(|(used, _)| *used)
            .fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn anthropic_unified_windows_are_read_as_percent_with_their_reset() {
        let h = headers(&[
            ("anthropic-ratelimit-unified-5h-utilization", "0.42"),
            ("anthropic-ratelimit-unified-5h-reset", "1790000000"),
            ("anthropic-ratelimit-unified-7d-utilization", "0.3"),
        ]);
        let q = from_headers(&h, SystemTime::now()).unwrap();
        let primary = q.primary.unwrap();
        assert!((primary.used_percent - 42.0).abs() < 1e-9);
        assert_eq!(primary.window_minutes, Some(300));
        assert_eq!(primary.resets_at.as_deref(), Some("2026-09-21T14:13:20Z"));
        let secondary = q.secondary.unwrap();
        assert!((secondary.used_percent - 30.0).abs() < 1e-9);
        assert_eq!(secondary.resets_at, None);
        assert_eq!(from_headers(&HeaderMap::new(), SystemTime::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_tightest_window_counts_until_it_resets() {
        let wall = SystemTime::now();
        let at = |secs: u64| {
            Some(humantime::format_rfc3339_seconds(wall + Duration::from_secs(secs)).to_string())
        };
        let snapshot = QuotaSnapshot {
            primary: Some(QuotaWindow {
                used_percent: 90.0,
                window_minutes: Some(300),
                resets_at: at(600),
            }),
            secondary: Some(QuotaWindow {
                used_percent: 40.0,
                window_minutes: Some(10_080),
                resets_at: at(86_400),
            }),
        };
        let now = Instant::now();
        let headroom = Headroom::of(&snapshot, wall, now);
        assert_eq!(headroom.used(now), 90.0);
        tokio::time::advance(Duration::from_secs(601)).await;
        assert_eq!(
            headroom.used(Instant::now()),
            40.0,
            "the 5 h window has reset"
        );
        assert_eq!(Headroom::default().used(now), 0.0, "nothing reported");
    }
}
