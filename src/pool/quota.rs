//! What the upstream says about an account's quota, read from the headers of every answer.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::{Deserialize, Serialize};

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
    (snapshot.primary.is_some() || snapshot.secondary.is_some()).then_some(snapshot)
}
