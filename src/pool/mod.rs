//! The account pool: which accounts exist, which may serve a request now, and in what order.
//!
//! Accounts come from an [`AccountSource`] (the config file today; a database implements the
//! same trait later). Each [`Account`] keeps its runtime health (cooldown, disable reason, last
//! use, last error, quota) behind a short lock that is never held across an `.await`, and its
//! sign-in tokens in [`Credentials`]. A selected account is held through an [`AccountSlot`],
//! which gives its concurrency slot back when dropped — on success, error, client disconnect
//! and panic alike — and wakes requests waiting in the queue.
//!
//! Order of selection: the conversation's sticky binding ([`sticky`]), then lowest `priority`,
//! then lowest load (in flight ÷ concurrency), then least recently used; ties at random.

mod account;
pub mod cooldown;
pub mod credentials;
pub mod data_dir;
pub mod quota;
mod source;
mod spec;
pub mod sticky;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use account::{Account, AccountSlot, AccountView, Availability};
pub use cooldown::{AccountEffect, CooldownPolicy, CooldownReason};
pub use credentials::{Credentials, TokenState};
pub use source::{AccountSource, ConfigAccounts};
pub use spec::{AccountCredential, AccountKind, AccountSpec, Platform};
pub use sticky::{StickyKey, StickyTable};

/// Index of an account in the pool; stable for the life of the process.
pub type AccountId = usize;

/// The pool's rules, from `gateway.*`.
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    pub cooldowns: CooldownPolicy,
    pub sticky_ttl: Option<Duration>,
    pub sticky_slow_ttft: Option<Duration>,
    pub sticky_slow_strikes: u32,
    pub queue_wait: Duration,
    pub queue_max_waiting: usize,
}

impl Default for PoolPolicy {
    fn default() -> Self {
        Self::from(&crate::config::GatewayConfig::default())
    }
}

impl From<&crate::config::GatewayConfig> for PoolPolicy {
    fn from(g: &crate::config::GatewayConfig) -> Self {
        Self {
            cooldowns: CooldownPolicy {
                overload: g.overload_cooldown,
                max: g.max_cooldown,
            },
            sticky_ttl: g.sticky_session_ttl,
            sticky_slow_ttft: g.sticky_slow_ttft,
            sticky_slow_strikes: g.sticky_slow_strikes,
            queue_wait: g.queue_wait_timeout,
            queue_max_waiting: g.queue_max_waiting,
        }
    }
}

pub struct Pool {
    accounts: Vec<Arc<Account>>,
    pub policy: PoolPolicy,
    pub sticky: StickyTable,
    /// Notified whenever a slot is given back, so queued requests look again.
    slot_freed: Arc<Notify>,
    waiting: AtomicUsize,
}

/// What a request is looking for.
pub struct Wanted<'a> {
    pub group: &'a str,
    pub platform: Platform,
    /// Only accounts of this kind (Chat Completions needs API keys).
    pub kind: Option<AccountKind>,
    pub model: &'a str,
    /// Accounts this request already tried.
    pub tried: &'a [AccountId],
    /// The conversation's binding key, if it has one.
    pub sticky: Option<&'a StickyKey>,
}

/// What selection found.
pub enum Selection {
    /// An account whose slot is now held by this request.
    Slot(AccountSlot),
    /// No enabled account of the group can serve this model.
    NoAccount,
    /// Every eligible account was already tried by this request.
    Exhausted,
    /// Every untried eligible account is cooling down or disabled; the earliest cooling one
    /// recovers after this long (`None`: all disabled).
    AllCooling { earliest: Option<Duration> },
    /// Every untried eligible account is at its concurrency limit (and waiting is not possible
    /// or took too long).
    AllBusy { queue_full: bool },
}

impl Pool {
    pub fn new(specs: Vec<AccountSpec>, policy: PoolPolicy) -> Self {
        let slot_freed = Arc::new(Notify::new());
        let accounts = specs
            .into_iter()
            .enumerate()
            .map(|(id, spec)| Arc::new(Account::new(id, spec, Arc::clone(&slot_freed))))
            .collect();
        Self {
            accounts,
            sticky: StickyTable::default(),
            policy,
            slot_freed,
            waiting: AtomicUsize::new(0),
        }
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.spec.name == name)
    }

    /// Enabled (in config) accounts of `group` on `platform`, whatever their health.
    pub fn members<'a>(
        &'a self,
        group: &'a str,
        platform: Platform,
    ) -> impl Iterator<Item = &'a Arc<Account>> + 'a {
        self.accounts.iter().filter(move |a| {
            a.spec.enabled
                && a.spec.platform == platform
                && a.spec.groups.iter().any(|g| g == group)
        })
    }

    /// Requests waiting in the queue now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Like [`Pool::select`], but when every candidate is at its concurrency limit, waits up to
    /// `gateway.queue_wait_timeout` (with at most `gateway.queue_max_waiting` others) for a slot.
    pub async fn acquire(&self, wanted: &Wanted<'_>) -> Selection {
        let deadline = Instant::now() + self.policy.queue_wait;
        let mut queued: Option<QueueTicket<'_>> = None;
        loop {
            // Registered before looking, so a slot freed in between is not missed.
            let freed = self.slot_freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            match self.select(wanted) {
                Selection::AllBusy { .. } => {}
                other => return other,
            }
            if queued.is_none() {
                if self.policy.queue_wait.is_zero() {
                    return Selection::AllBusy { queue_full: false };
                }
                let before = self.waiting.fetch_add(1, Ordering::AcqRel);
                let ticket = QueueTicket(&self.waiting);
                if before >= self.policy.queue_max_waiting {
                    return Selection::AllBusy { queue_full: true };
                }
                queued = Some(ticket);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Selection::AllBusy { queue_full: false };
            }
        }
    }

    /// Picks the next account for a request without waiting.
    pub fn select(&self, wanted: &Wanted<'_>) -> Selection {
        let now = Instant::now();
        let eligible: Vec<&Arc<Account>> = self
            .members(wanted.group, wanted.platform)
            .filter(|a| wanted.kind.is_none_or(|k| a.spec.kind == k))
            .filter(|a| a.serves_model(wanted.model))
            .collect();
        if eligible.is_empty() {
            return Selection::NoAccount;
        }

        // The conversation's own account first, while it can serve.
        if let Some(key) = wanted.sticky {
            if let Some(bound) = self.sticky.get(key, now) {
                let usable = eligible.iter().find(|a| {
                    a.id == bound
                        && !wanted.tried.contains(&a.id)
                        && matches!(a.availability(now), Availability::Ready)
                });
                match usable.and_then(|a| a.try_acquire()) {
                    Some(slot) => {
                        slot.account().touch(now);
                        return Selection::Slot(slot);
                    }
                    // Failed, cooling, disabled or full: the binding moves to whichever
                    // account serves this request.
                    None => self.sticky.release(key),
                }
            }
        }

        let untried: Vec<&Arc<Account>> = eligible
            .into_iter()
            .filter(|a| !wanted.tried.contains(&a.id))
            .collect();
        if untried.is_empty() {
            return Selection::Exhausted;
        }
        let mut earliest: Option<Duration> = None;
        let mut ready: Vec<(&Arc<Account>, Option<Instant>)> = Vec::with_capacity(untried.len());
        for account in untried {
            match account.availability(now) {
                Availability::Ready => ready.push((account, account.last_used())),
                Availability::Cooling { left, .. } => {
                    earliest = Some(earliest.map_or(left, |e| e.min(left)));
                }
                Availability::Disabled(_) => {}
            }
        }
        if ready.is_empty() {
            return Selection::AllCooling { earliest };
        }
        // Shuffle first: the sort is stable, so equal accounts keep a random order.
        ready.shuffle(&mut rand::thread_rng());
        ready.sort_by(|(a, a_used), (b, b_used)| {
            a.spec
                .priority
                .cmp(&b.spec.priority)
                .then(a.load().total_cmp(&b.load()))
                .then(a_used.cmp(b_used))
        });
        for (account, _) in ready {
            if let Some(slot) = account.try_acquire() {
                account.touch(now);
                return Selection::Slot(slot);
            }
        }
        Selection::AllBusy { queue_full: false }
    }
}

/// A place in the queue; leaving it (by any path) frees the place.
struct QueueTicket<'a>(&'a AtomicUsize);

impl Drop for QueueTicket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
