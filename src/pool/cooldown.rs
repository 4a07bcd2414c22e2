//! What a failure means for an account, and for how long it rests.
//!
//! The relay never decides durations itself: a failed attempt carries an [`AccountEffect`]
//! and the pool turns it into a cooldown. Rate-limit resets come from the upstream's own
//! headers (Codex usage windows, `Retry-After`); everything else has a fixed, short pause, and
//! every cooldown is capped so that an account is never locked away for days by one answer.
//!
//! Transient failures (a 5xx, a broken connection, a stalled stream) are strikes, not verdicts:
//! one of them says little about the account, and cooling the only usable account of a pool on
//! the first would answer every client 503 for the pause. The account cools on the
//! [`TRANSIENT_STRIKES`]th in a row, each within [`STRIKE_WINDOW`] of the one before; a success
//! clears them. Once the strikes reached the threshold, each further one before a success (or
//! the window's end) cools again at once: an account that comes back still failing is not given
//! three fresh chances every pause.

use std::time::{Duration, SystemTime};

use http::HeaderMap;

/// A 429 that says nothing about when it ends.
pub const DEFAULT_RATE_LIMIT_COOLDOWN: Duration = Duration::from_secs(60);
/// A 401/403: the credential was refused; a person must act (a sign-in account is refreshed
/// first: `store::tokens`).
pub const AUTH_COOLDOWN: Duration = Duration::from_secs(10 * 60);
/// A 402: billing or a deactivated workspace.
pub const PAYMENT_COOLDOWN: Duration = Duration::from_secs(60 * 60);
/// A 5xx, a timeout or a broken connection: short, so one bad answer does not empty the pool.
pub const TRANSIENT_COOLDOWN: Duration = Duration::from_secs(10);
/// A stream that went silent longer than `gateway.stream_data_interval_timeout`.
pub const STALLED_COOLDOWN: Duration = Duration::from_secs(30);
/// Transient failures in a row that cool an account.
pub const TRANSIENT_STRIKES: u32 = 3;
/// Strikes further apart than this are not "in a row": the count starts again.
pub const STRIKE_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CooldownReason {
    RateLimited,
    Overloaded,
    AuthFailed,
    PaymentRequired,
    Transient,
    Stalled,
}

impl CooldownReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CooldownReason::RateLimited => "rate_limited",
            CooldownReason::Overloaded => "overloaded",
            CooldownReason::AuthFailed => "auth_failed",
            CooldownReason::PaymentRequired => "payment_required",
            CooldownReason::Transient => "upstream_error",
            CooldownReason::Stalled => "stalled",
        }
    }
}

/// The configurable part of cooldowns (`gateway.overload_cooldown`, `gateway.max_cooldown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownPolicy {
    pub overload: Duration,
    /// No single failure rests an account longer than this.
    pub max: Duration,
}

/// What a failed attempt implies for the account that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountEffect {
    /// Nothing: the failure was the request's own (a 400), not the account's.
    None,
    /// Rate-limited until the given reset, if the upstream said.
    RateLimited(Option<Duration>),
    Overloaded,
    AuthFailed,
    PaymentRequired,
    Transient,
    Stalled,
    /// A permanent failure (revoked key, deactivated organisation): no cooldown would heal it.
    Disable(&'static str),
}

impl AccountEffect {
    /// Whether this failure is a strike towards a cooldown rather than a cooldown at once.
    pub fn is_transient(&self) -> bool {
        matches!(self, AccountEffect::Transient | AccountEffect::Stalled)
    }

    pub fn cooldown(&self, policy: &CooldownPolicy) -> Option<(CooldownReason, Duration)> {
        let (reason, duration) = match *self {
            AccountEffect::None | AccountEffect::Disable(_) => return None,
            AccountEffect::RateLimited(reset) => (
                CooldownReason::RateLimited,
                reset.unwrap_or(DEFAULT_RATE_LIMIT_COOLDOWN),
            ),
            AccountEffect::Overloaded => (CooldownReason::Overloaded, policy.overload),
            AccountEffect::AuthFailed => (CooldownReason::AuthFailed, AUTH_COOLDOWN),
            AccountEffect::PaymentRequired => (CooldownReason::PaymentRequired, PAYMENT_COOLDOWN),
            AccountEffect::Transient => (CooldownReason::Transient, TRANSIENT_COOLDOWN),
            AccountEffect::Stalled => (CooldownReason::Stalled, STALLED_COOLDOWN),
        };
        Some((reason, duration.min(policy.max)))
    }
}

/// When a rate-limited account recovers, from the answer's headers.
///
/// The Codex backend reports two usage windows (`x-codex-primary-*`, about 5 h, and
/// `x-codex-secondary-*`, about 7 d). The account is limited until the reset of the window
/// that is exhausted (≥ 100 % used); if none says so, until the later of the known resets.
/// `Retry-After` (seconds or an HTTP date) is the fallback.
pub fn rate_limit_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let windows: Vec<(Option<f64>, Duration)> = ["primary", "secondary"]
        .iter()
        .filter_map(|w| {
            let reset = header_f64(headers, &format!("x-codex-{w}-reset-after-seconds"))?;
            let used = header_f64(headers, &format!("x-codex-{w}-used-percent"));
            Some((used, Duration::try_from_secs_f64(reset.max(0.0)).ok()?))
        })
        .collect();
    let exhausted = windows
        .iter()
        .filter(|(used, _)| used.is_some_and(|u| u >= 100.0))
        .map(|(_, reset)| *reset)
        .max();
    let from_windows = exhausted.or_else(|| windows.iter().map(|(_, reset)| *reset).max());
    from_windows.or_else(|| retry_after(headers, now))
}

/// When a rate-limited Anthropic account recovers: the reset of the rejected window
/// (`anthropic-ratelimit-unified-5h-*` / `-7d-*`, unix seconds), else the unified reset, else the
/// later of the window resets. `None` without any reset header: then the 429 is not a limit of
/// the account.
pub fn anthropic_reset(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let at = |name: &str| -> Option<Duration> {
        let secs = header_f64(headers, name)?;
        let when = std::time::UNIX_EPOCH + Duration::try_from_secs_f64(secs.max(0.0)).ok()?;
        Some(when.duration_since(now).unwrap_or_default())
    };
    let rejected = |window: &str| {
        headers
            .get(format!("anthropic-ratelimit-unified-{window}-status"))
            .is_some_and(|v| v.as_bytes() == b"rejected")
    };
    let windows: Vec<(bool, Duration)> = ["5h", "7d"]
        .iter()
        .filter_map(|w| {
            Some((
                rejected(w),
                at(&format!("anthropic-ratelimit-unified-{w}-reset"))?,
            ))
        })
        .collect();
    windows
        .iter()
        .filter(|(rejected, _)| *rejected)
        .map(|(_, d)| *d)
        .max()
        .or_else(|| at("anthropic-ratelimit-unified-reset"))
        .or_else(|| windows.iter().map(|(_, d)| *d).max())
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(secs.max(0.0)).ok();
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    #[test]
    fn exhausted_window_decides() {
        let h = headers(&[
            ("x-codex-primary-used-percent", "100"),
            ("x-codex-primary-reset-after-seconds", "1200"),
            ("x-codex-secondary-used-percent", "40"),
            ("x-codex-secondary-reset-after-seconds", "90000"),
            ("retry-after", "5"),
        ]);
        assert_eq!(
            rate_limit_reset(&h, SystemTime::now()),
            Some(Duration::from_secs(1200))
        );
    }

    #[test]
    fn without_exhausted_window_the_later_reset_wins() {
        let h = headers(&[
            ("x-codex-primary-used-percent", "80"),
            ("x-codex-primary-reset-after-seconds", "1200"),
            ("x-codex-secondary-reset-after-seconds", "90000"),
        ]);
        assert_eq!(
            rate_limit_reset(&h, SystemTime::now()),
            Some(Duration::from_secs(90000))
        );
    }

    #[test]
    fn retry_after_is_the_fallback_in_seconds_or_date() {
        let now = SystemTime::now();
        assert_eq!(
            rate_limit_reset(&headers(&[("retry-after", "30")]), now),
            Some(Duration::from_secs(30))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(120));
        let got = rate_limit_reset(&headers(&[("retry-after", &date)]), now).unwrap();
        assert!(got <= Duration::from_secs(120) && got >= Duration::from_secs(118));
        assert_eq!(rate_limit_reset(&HeaderMap::new(), now), None);
    }

    #[test]
    fn anthropic_unified_resets() {
        let now = SystemTime::now();
        let unix = |d: u64| {
            (now + Duration::from_secs(d))
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                .to_string()
        };
        let h = headers(&[
            ("anthropic-ratelimit-unified-5h-status", "allowed"),
            ("anthropic-ratelimit-unified-5h-reset", &unix(3000)),
            ("anthropic-ratelimit-unified-7d-status", "rejected"),
            ("anthropic-ratelimit-unified-7d-reset", &unix(90000)),
            ("anthropic-ratelimit-unified-reset", &unix(3000)),
        ]);
        let got = anthropic_reset(&h, now).unwrap();
        assert!(got > Duration::from_secs(89990) && got <= Duration::from_secs(90000));
        let h = headers(&[("anthropic-ratelimit-unified-reset", &unix(600))]);
        assert!(anthropic_reset(&h, now).unwrap() <= Duration::from_secs(600));
        assert_eq!(anthropic_reset(&HeaderMap::new(), now), None);
    }

    #[test]
    fn every_effect_is_capped_and_a_request_error_cools_nothing() {
        let policy = CooldownPolicy {
            overload: Duration::from_secs(600),
            max: Duration::from_secs(6 * 3600),
        };
        assert_eq!(AccountEffect::None.cooldown(&policy), None);
        assert_eq!(AccountEffect::Disable("revoked").cooldown(&policy), None);
        let long = AccountEffect::RateLimited(Some(Duration::from_secs(10 * 86400)));
        assert_eq!(long.cooldown(&policy).unwrap().1, policy.max);
        assert_eq!(
            AccountEffect::RateLimited(None)
                .cooldown(&policy)
                .unwrap()
                .1,
            DEFAULT_RATE_LIMIT_COOLDOWN
        );
        assert_eq!(
            AccountEffect::Overloaded.cooldown(&policy).unwrap(),
            (CooldownReason::Overloaded, policy.overload)
        );
    }
}
