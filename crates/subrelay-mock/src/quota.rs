//! Usage windows that move with use, as sign-in accounts report them.
//!
//! A credential given a [`Quota`] ([`crate::MockUpstream::set_quota`]) answers every API call
//! with its two windows in the headers of its platform (`x-codex-{primary,secondary}-*` on the
//! OpenAI routes, `anthropic-ratelimit-unified-{5h,7d}-*` on Anthropic's), each answered call
//! using `per_call` points of the 5 h window and `weekly_per_call` of the 7 d one. Once a window
//! is at 100 % the calls are refused with a 429 carrying the same headers, until the test sets
//! a new quota. Token counting (`/v1/messages/count_tokens`) is free: it reports and never uses.

use std::time::{Duration, SystemTime};

use crate::errors::Dialect;

/// One credential's usage windows.
#[derive(Clone, Debug, PartialEq)]
pub struct Quota {
    /// Percent of the ~5 h window used.
    pub five_hour: f64,
    /// Percent of the ~7 d window used.
    pub weekly: f64,
    /// Points of the 5 h window each answered call uses.
    pub per_call: f64,
    /// Points of the 7 d window each answered call uses.
    pub weekly_per_call: f64,
    /// The 5 h window's reset, this long after each answer (it is reported, not acted on).
    pub five_hour_reset_after: Duration,
    /// The 7 d window's reset, likewise.
    pub weekly_reset_after: Duration,
}

impl Default for Quota {
    fn default() -> Self {
        Self {
            five_hour: 0.0,
            weekly: 0.0,
            per_call: 1.0,
            weekly_per_call: 0.1,
            five_hour_reset_after: Duration::from_secs(5 * 3600),
            weekly_reset_after: Duration::from_secs(7 * 86_400),
        }
    }
}

impl Quota {
    /// Whether a window is used up.
    pub fn exhausted(&self) -> bool {
        self.five_hour >= 100.0 || self.weekly >= 100.0
    }

    /// Uses one call's share (unless `free` or already exhausted); returns the windows to report
    /// and whether the call is refused.
    pub(crate) fn spend(&mut self, free: bool) -> (Quota, bool) {
        if self.exhausted() {
            return (self.clone(), true);
        }
        if !free {
            self.five_hour = (self.five_hour + self.per_call).min(100.0);
            self.weekly = (self.weekly + self.weekly_per_call).min(100.0);
        }
        (self.clone(), false)
    }

    /// The headers reporting these windows, in `dialect`'s names.
    pub(crate) fn headers(&self, dialect: Dialect, refused: bool) -> Vec<(String, String)> {
        let pair = |name: &str, value: String| (name.to_owned(), value);
        match dialect {
            Dialect::OpenAi => vec![
                pair(
                    "x-codex-primary-used-percent",
                    format!("{}", self.five_hour),
                ),
                pair("x-codex-primary-window-minutes", "300".to_owned()),
                pair(
                    "x-codex-primary-reset-after-seconds",
                    self.five_hour_reset_after.as_secs().to_string(),
                ),
                pair("x-codex-secondary-used-percent", format!("{}", self.weekly)),
                pair("x-codex-secondary-window-minutes", "10080".to_owned()),
                pair(
                    "x-codex-secondary-reset-after-seconds",
                    self.weekly_reset_after.as_secs().to_string(),
                ),
            ],
            Dialect::Anthropic => {
                let at = |after: Duration| {
                    (SystemTime::now() + after)
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs()
                        .to_string()
                };
                vec![
                    pair(
                        "anthropic-ratelimit-unified-5h-utilization",
                        format!("{}", self.five_hour / 100.0),
                    ),
                    pair(
                        "anthropic-ratelimit-unified-5h-reset",
                        at(self.five_hour_reset_after),
                    ),
                    pair(
                        "anthropic-ratelimit-unified-7d-utilization",
                        format!("{}", self.weekly / 100.0),
                    ),
                    pair(
                        "anthropic-ratelimit-unified-7d-reset",
                        at(self.weekly_reset_after),
                    ),
                    pair(
                        "anthropic-ratelimit-unified-status",
                        if refused { "rejected" } else { "allowed" }.to_owned(),
                    ),
                ]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_use_the_windows_until_one_is_full_then_are_refused() {
        let mut q = Quota {
            five_hour: 98.0,
            per_call: 1.5,
            ..Quota::default()
        };
        assert_eq!(q.spend(false).0.five_hour, 99.5);
        assert_eq!(q.spend(true).0.five_hour, 99.5, "free calls use nothing");
        let (seen, refused) = q.spend(false);
        assert!(!refused);
        assert_eq!(seen.five_hour, 100.0);
        assert!(q.spend(false).1, "a full window refuses");
        assert_eq!(q.five_hour, 100.0);
    }
}
