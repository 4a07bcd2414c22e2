//! One account at runtime: its health, its slots, its tokens.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;

use super::cooldown::{
    AccountEffect, CooldownPolicy, CooldownReason, STRIKE_WINDOW, TRANSIENT_STRIKES,
};
use super::credentials::Credentials;
use super::performance::{OutcomeWindow, Performance, PerformanceView};
use super::quota::{Headroom, QuotaSnapshot};
use super::AccountId;
use crate::domain::{AccountKind, AccountSpec, Platform};
use crate::runtime_state::{
    Lease, LeaseSet, Leases, Record, Records, RuntimeState, SharedRecord, Signal,
};

pub struct Account {
    pub id: AccountId,
    pub spec: AccountSpec,
    pub credentials: Credentials,
    /// This account's HTTP client: its own connection pool, through its own proxy. Token
    /// refreshes use it.
    pub client: reqwest::Client,
    /// Sends the relayed requests: directly, or through `client` when a proxy is involved.
    pub sender: crate::upstream::Sender,
    pub endpoints: crate::upstream::Endpoints,
    /// The account's name as the runtime state knows it (sticky bindings point to it).
    pub(super) name: Arc<str>,
    /// Concurrency slots, as leases keyed by the account's name.
    slots: LeaseSet,
    /// Cooldown, disable reason, last use, last error, quota: keyed by the account's name.
    health: Record<Health>,
    /// Told when the account may have become usable (a reset): queued requests look again.
    changed: Signal,
}

#[derive(Default)]
struct Health {
    cooldown_until: Option<Instant>,
    cooldown_reason: Option<CooldownReason>,
    /// Set by a permanent failure (revoked token, deactivated organisation); cleared by a reset.
    disabled: Option<String>,
    last_used: Option<Instant>,
    last_error: Option<String>,
    quota: Option<QuotaSnapshot>,
    /// `quota` as selection reads it.
    headroom: Headroom,
    /// The last health probe (`relay::probe`).
    last_probe: Option<ProbeRecord>,
    /// Transient failures in a row (see [`super::cooldown`]), and when the last one was.
    strikes: u32,
    last_strike: Option<Instant>,
    /// Answers, upstream failures and times to first token of the last minutes
    /// ([`super::performance`]).
    window: OutcomeWindow,
}

/// The part of an account's health every instance sees (a shared state backend): cooldown with
/// its reason and end (wall clock, Unix milliseconds), disable reason, last error, quota, last
/// probe. Last use and strikes stay this instance's.
#[derive(Serialize, serde::Deserialize, Default)]
struct SharedHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooldown_until_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cooldown_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disabled: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<QuotaSnapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_probe: Option<ProbeRecord>,
}

fn reason_of(text: &str) -> Option<CooldownReason> {
    [
        CooldownReason::RateLimited,
        CooldownReason::Overloaded,
        CooldownReason::AuthFailed,
        CooldownReason::PaymentRequired,
        CooldownReason::Transient,
        CooldownReason::Stalled,
    ]
    .into_iter()
    .find(|r| r.as_str() == text)
}

impl SharedRecord for Health {
    fn export(&self) -> String {
        let now = Instant::now();
        let wall = SystemTime::now();
        let until = self.cooldown_until.filter(|u| *u > now).and_then(|u| {
            (wall + (u - now))
                .duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        });
        let shared = SharedHealth {
            cooldown_until_ms: until,
            cooldown_reason: until
                .and(self.cooldown_reason)
                .map(|r| r.as_str().to_owned()),
            disabled: self.disabled.clone(),
            last_error: self.last_error.clone(),
            quota: self.quota.clone(),
            last_probe: self.last_probe.clone(),
        };
        serde_json::to_string(&shared).unwrap_or_default()
    }

    fn import(&mut self, stored: &str) {
        let Ok(shared) = serde_json::from_str::<SharedHealth>(stored) else {
            return;
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let until = shared.cooldown_until_ms.and_then(|ms| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_millis(ms);
            at.duration_since(wall).ok().map(|left| now + left)
        });
        self.cooldown_until = until;
        self.cooldown_reason = until.and(shared.cooldown_reason.as_deref().and_then(reason_of));
        self.disabled = shared.disabled;
        self.last_error = shared.last_error;
        if let Some(quota) = &shared.quota {
            if self.quota.as_ref() != Some(quota) {
                self.headroom = Headroom::of(quota, wall, now);
            }
        }
        self.quota = shared.quota;
        self.last_probe = shared.last_probe;
    }
}

/// A health probe's result, as the admin API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProbeRecord {
    /// RFC 3339.
    pub at: String,
    pub ok: bool,
    /// What the upstream answered, or why there was no answer.
    pub detail: String,
}

/// Whether an account may be selected now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    Ready,
    Cooling {
        left: Duration,
        reason: CooldownReason,
    },
    Disabled(String),
}

impl Account {
    /// A fresh account: no cooldown, no slot held, its tokens as `spec` declares them.
    pub(super) fn new(
        id: AccountId,
        spec: AccountSpec,
        client: reqwest::Client,
        connect_timeout: Duration,
        runtime: &RuntimeState,
        changed: &Signal,
    ) -> Result<Self, String> {
        Ok(Self {
            id,
            credentials: Credentials::new(&spec.credential, runtime, &spec.name),
            sender: crate::upstream::Sender::new(spec.proxy.as_ref(), &client, connect_timeout),
            client,
            endpoints: crate::upstream::Endpoints::of(&spec)?,
            name: spec.name.as_str().into(),
            slots: runtime.leases(&format!("account:{}", spec.name), changed),
            health: runtime.record(&spec.name, Health::default()),
            changed: changed.clone(),
            spec,
        })
    }

    /// Whether this account serves `model`: its `models` list (absent = any) or a
    /// `model_map` entry.
    pub fn serves_model(&self, model: &str) -> bool {
        self.spec.model_map.contains_key(model)
            || self
                .spec
                .models
                .as_ref()
                .is_none_or(|models| models.iter().any(|m| m == model))
    }

    /// The model name to send upstream for a client's `model`.
    pub fn upstream_model<'a>(&'a self, model: &'a str) -> &'a str {
        self.spec.model_map.get(model).map_or(model, String::as_str)
    }

    pub fn availability(&self, now: Instant) -> Availability {
        self.health.read(|health| Self::available(health, now))
    }

    /// Availability, last use, the tightest usage window's percent used and the recent
    /// outcomes, under one lock.
    pub(super) fn snapshot(&self, now: Instant) -> Snapshot {
        self.health.read(|health| Snapshot {
            availability: Self::available(health, now),
            last_used: health.last_used,
            used: health.headroom.used(now),
            performance: health.window.summary(now),
        })
    }

    /// The recent outcomes ([`super::performance`]).
    pub fn performance(&self, now: Instant) -> Performance {
        self.health.read(|health| health.window.summary(now))
    }

    /// The tightest usage window's percent used, as selection sees it (0 when unknown).
    pub fn quota_used(&self) -> f64 {
        let now = Instant::now();
        self.health.read(|health| health.headroom.used(now))
    }

    fn available(health: &Health, now: Instant) -> Availability {
        if let Some(reason) = &health.disabled {
            return Availability::Disabled(reason.clone());
        }
        match health.cooldown_until {
            Some(until) if until > now => Availability::Cooling {
                left: until - now,
                reason: health.cooldown_reason.unwrap_or(CooldownReason::Transient),
            },
            _ => Availability::Ready,
        }
    }

    /// Takes the slot across instances too (a shared state backend: one round trip); false when
    /// every slot of the account is held somewhere.
    pub(super) async fn confirm(&self, slot: &AccountSlot) -> bool {
        slot._lease.confirm(self.spec.concurrency).await
    }

    pub(super) fn try_acquire(self: &Arc<Self>) -> Option<AccountSlot> {
        self.slots
            .try_acquire(self.spec.concurrency)
            .map(|lease| AccountSlot {
                account: Arc::clone(self),
                _lease: lease,
                demoted: false,
            })
    }

    pub fn in_flight(&self) -> u32 {
        self.slots.in_flight()
    }

    /// In flight ÷ concurrency; accounts without a limit count as empty.
    pub(super) fn load(&self) -> f64 {
        match self.spec.concurrency {
            0 => 0.0,
            limit => f64::from(self.in_flight()) / f64::from(limit),
        }
    }

    pub(super) fn touch(&self, now: Instant) {
        self.health
            .update_local(|health| health.last_used = Some(now));
    }

    /// Applies what a failed attempt implies for this account.
    pub fn apply(&self, effect: &AccountEffect, error: &str, policy: &CooldownPolicy) {
        self.health
            .update(|health| Self::apply_to(health, effect, error, policy));
    }

    fn apply_to(health: &mut Health, effect: &AccountEffect, error: &str, policy: &CooldownPolicy) {
        health.last_error = Some(error.to_owned());
        if let AccountEffect::Disable(reason) = effect {
            health.disabled = Some((*reason).to_owned());
            return;
        }
        let now = Instant::now();
        if effect.is_transient() {
            // The upstream's fault: it counts against the account's error rate.
            health.window.record_failure(now);
        }
        if effect.is_transient() && !Self::strike(health, now) {
            return;
        }
        if let Some((reason, duration)) = effect.cooldown(policy) {
            let until = now + duration;
            // Keep the later of two cooldowns: a short 5xx pause must not shorten a quota wait.
            if health.cooldown_until.is_none_or(|u| u < until) {
                health.cooldown_until = Some(until);
                health.cooldown_reason = Some(reason);
            }
        }
    }

    /// Counts a transient failure; true when it is one too many and the account must cool.
    fn strike(health: &mut Health, now: Instant) -> bool {
        let in_a_row = health
            .last_strike
            .is_some_and(|at| now.saturating_duration_since(at) <= STRIKE_WINDOW);
        health.strikes = if in_a_row {
            health.strikes.saturating_add(1)
        } else {
            1
        };
        health.last_strike = Some(now);
        health.strikes >= TRANSIENT_STRIKES
    }

    /// Disables the account with a stated reason (a refresh token that was refused, say).
    pub fn disable(&self, reason: impl Into<String>) {
        let reason = reason.into();
        self.health.update(|health| {
            health.last_error = Some(reason.clone());
            health.disabled = Some(reason);
        });
    }

    /// A successful answer (`ttft` after the send, if known): the account is healthy, its
    /// quota is what the answer says, a rate limit it was still marked with is stale, and the
    /// answer counts in its window ([`super::performance`]).
    pub fn note_answer(&self, quota: Option<QuotaSnapshot>, ttft: Option<Duration>) {
        self.health.update(|health| {
            health.window.record_success(Instant::now(), ttft);
            Self::succeed(health, quota);
        });
    }

    /// What a success says, without counting an answer (a quota restored at start).
    pub fn note_success(&self, quota: Option<QuotaSnapshot>) {
        self.health.update(|health| Self::succeed(health, quota));
    }

    fn succeed(health: &mut Health, quota: Option<QuotaSnapshot>) {
        health.last_error = None;
        health.strikes = 0;
        if health.cooldown_reason == Some(CooldownReason::RateLimited) {
            health.cooldown_until = None;
            health.cooldown_reason = None;
        }
        if let Some(quota) = quota {
            health.headroom = Headroom::of(&quota, SystemTime::now(), Instant::now());
            health.quota = Some(quota);
        }
    }

    /// A health probe's result: a pass clears a cooldown for an error and a runtime disable (a
    /// quota wait stays: the probe says nothing about quota); a failure keeps a cooling account
    /// out `extend` longer, never past `cap` from now.
    pub fn note_probe(&self, record: ProbeRecord, extend: Duration, cap: Duration) {
        let now = Instant::now();
        let passed = record.ok;
        self.health.update(|health| {
            health.last_probe = Some(record);
            let for_error = health.cooldown_reason != Some(CooldownReason::RateLimited);
            if passed {
                health.disabled = None;
                health.strikes = 0;
                if for_error {
                    health.cooldown_until = None;
                    health.cooldown_reason = None;
                }
            } else if let Some(until) = health.cooldown_until.filter(|u| *u > now && for_error) {
                health.cooldown_until = Some((until + extend).min(now + cap));
            }
        });
        if passed {
            self.changed.notify();
        }
    }

    /// Clears a cooldown, a runtime disable and the recent outcomes (`subrelay accounts
    /// reset`: a demoted account is back in full preference).
    pub fn reset(&self) {
        self.health.update(|health| {
            health.cooldown_until = None;
            health.cooldown_reason = None;
            health.disabled = None;
            health.last_error = None;
            health.strikes = 0;
            health.window.clear();
        });
        // Usable again: requests waiting for a slot look again.
        self.changed.notify();
    }

    /// What of the account's health outlives a restart (`store::account_state` keeps it).
    pub fn lasting_state(&self) -> LastingState {
        let (availability, quota) = self.health.read(|health| {
            (
                Self::available(health, Instant::now()),
                health.quota.clone(),
            )
        });
        let mut lasting = LastingState {
            quota,
            ..LastingState::default()
        };
        if !self.spec.enabled {
            // "Disabled in config" is the config's own flag, not runtime state.
            return lasting;
        }
        match availability {
            Availability::Disabled(reason) => lasting.disabled_reason = Some(reason),
            Availability::Cooling {
                left,
                reason: CooldownReason::RateLimited,
            } => lasting.rate_limited_until = Some(SystemTime::now() + left),
            _ => {}
        }
        lasting
    }

    /// The account's state for people: the admin API and `subrelay accounts`. `performance`
    /// is judged against its peers by the pool ([`super::Pool::views`]).
    pub(super) fn view(&self, performance: PerformanceView) -> AccountView {
        let now = Instant::now();
        let wall = SystemTime::now();
        let availability = self.availability(now);
        let (last_error, quota, last_probe) = self.health.read(|health| {
            (
                health.last_error.clone(),
                health.quota.clone(),
                health.last_probe.clone(),
            )
        });
        let (state, cooldown_until, cooldown_reason, disabled_reason) = match &availability {
            _ if !self.spec.enabled => (
                "disabled",
                None,
                None,
                Some("disabled in config".to_owned()),
            ),
            Availability::Disabled(reason) => ("disabled", None, None, Some(reason.clone())),
            Availability::Cooling { left, reason } => (
                "cooling",
                Some(humantime::format_rfc3339_seconds(wall + *left).to_string()),
                Some(reason.as_str()),
                None,
            ),
            Availability::Ready
                if self.spec.concurrency > 0 && self.in_flight() >= self.spec.concurrency =>
            {
                ("busy", None, None, None)
            }
            Availability::Ready => ("available", None, None, None),
        };
        AccountView {
            name: self.spec.name.clone(),
            platform: self.spec.platform,
            kind: self.spec.kind,
            state: state.to_owned(),
            cooldown_until,
            cooldown_reason: cooldown_reason.map(str::to_owned),
            disabled_reason,
            in_flight: self.in_flight(),
            concurrency: self.spec.concurrency,
            last_error,
            token_expires_at: self
                .credentials
                .expires_at()
                .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            quota,
            last_probe,
            groups: self.spec.groups.clone(),
            priority: self.spec.priority,
            performance,
        }
    }
}

/// What selection reads of an account's health, under one lock.
pub(super) struct Snapshot {
    pub availability: Availability,
    pub last_used: Option<Instant>,
    /// The tightest usage window's percent used.
    pub used: f64,
    pub performance: Performance,
}

/// What of an account's health is kept across restarts: a runtime disable with its reason, a
/// rate limit until its reset, the last quota snapshot. Other cooldowns are short and not kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LastingState {
    pub disabled_reason: Option<String>,
    pub rate_limited_until: Option<SystemTime>,
    pub quota: Option<QuotaSnapshot>,
}

/// An account as the admin API shows it. Never carries a credential.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AccountView {
    pub name: String,
    pub platform: Platform,
    #[serde(rename = "type")]
    pub kind: AccountKind,
    /// `available`, `busy`, `cooling` or `disabled`.
    pub state: String,
    pub cooldown_until: Option<String>,
    pub cooldown_reason: Option<String>,
    pub disabled_reason: Option<String>,
    pub in_flight: u32,
    /// 0 = unlimited.
    pub concurrency: u32,
    pub last_error: Option<String>,
    pub token_expires_at: Option<String>,
    pub quota: Option<QuotaSnapshot>,
    /// The last health probe (`gateway.probe_interval`, `subrelay accounts test`).
    #[serde(default)]
    pub last_probe: Option<ProbeRecord>,
    pub groups: Vec<String>,
    pub priority: i32,
    /// The last 5 minutes: attempts, success rate, median time to first token, and whether the
    /// account is far worse than the others of its groups (then ranked after them).
    #[serde(default)]
    pub performance: PerformanceView,
}

/// A request's hold on one account. Dropping it gives the concurrency slot (its lease) back and
/// wakes the queue.
pub struct AccountSlot {
    account: Arc<Account>,
    _lease: Lease,
    /// Whether selection found the account far worse than the other candidates.
    pub(super) demoted: bool,
}

impl AccountSlot {
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }

    /// Whether selection found the account far worse than the other candidates (a new
    /// conversation is then not bound to it: [`super::Pool::keep_sticky`]).
    pub fn demoted(&self) -> bool {
        self.demoted
    }
}
