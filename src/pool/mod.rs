//! The account pool: which accounts exist, which may serve a request now, and in what order.
//!
//! Accounts come from an [`AccountSource`] (the config file today; a database implements the
//! same trait later). Each [`Account`] keeps its runtime health (cooldown, last use, last error)
//! behind a short-lived lock that is never held across an `.await`. A selected account is held
//! through an [`AccountSlot`], which gives its concurrency slot back when dropped — on success,
//! error, client disconnect and panic alike.

pub mod cooldown;
mod source;
mod spec;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::seq::SliceRandom;
use tokio::time::Instant;

pub use cooldown::{AccountEffect, CooldownReason};
pub use source::{AccountSource, ConfigAccounts};
pub use spec::{AccountCredential, AccountKind, AccountSpec, Platform};

/// Index of an account in the pool; stable for the life of the process.
pub type AccountId = usize;

pub struct Pool {
    accounts: Vec<Arc<Account>>,
}

pub struct Account {
    pub id: AccountId,
    pub spec: AccountSpec,
    in_flight: AtomicU32,
    health: Mutex<Health>,
}

#[derive(Default)]
struct Health {
    cooldown_until: Option<Instant>,
    cooldown_reason: Option<CooldownReason>,
    last_used: Option<Instant>,
    last_error: Option<String>,
}

/// What selection found.
pub enum Selection {
    /// An account whose slot is now held by this request.
    Slot(AccountSlot),
    /// No enabled account of the group can serve this model.
    NoAccount,
    /// Every eligible account was already tried by this request.
    Exhausted,
    /// Every untried eligible account is cooling down; the earliest recovers after this long.
    AllCooling { earliest: Duration },
    /// Every untried eligible account is at its concurrency limit.
    AllBusy,
}

impl Pool {
    pub fn new(specs: Vec<AccountSpec>) -> Self {
        let accounts = specs
            .into_iter()
            .enumerate()
            .map(|(id, spec)| {
                Arc::new(Account {
                    id,
                    spec,
                    in_flight: AtomicU32::new(0),
                    health: Mutex::new(Health::default()),
                })
            })
            .collect();
        Self { accounts }
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    /// Enabled accounts of `group` on `platform`, whatever their health.
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

    /// Picks the next account for a request: eligible, untried, not cooling, with a free slot;
    /// lowest priority first, then least recently used, ties broken at random.
    pub fn select(
        &self,
        group: &str,
        platform: Platform,
        model: &str,
        tried: &[AccountId],
    ) -> Selection {
        let now = Instant::now();
        let mut eligible: Vec<&Arc<Account>> = self
            .members(group, platform)
            .filter(|a| a.serves_model(model))
            .collect();
        if eligible.is_empty() {
            return Selection::NoAccount;
        }
        eligible.retain(|a| !tried.contains(&a.id));
        if eligible.is_empty() {
            return Selection::Exhausted;
        }
        let mut earliest: Option<Duration> = None;
        let mut ready: Vec<(&Arc<Account>, Option<Instant>)> = Vec::with_capacity(eligible.len());
        for account in eligible {
            let health = account.health();
            match health.cooldown_until {
                Some(until) if until > now => {
                    let left = until - now;
                    earliest = Some(earliest.map_or(left, |e| e.min(left)));
                }
                _ => ready.push((account, health.last_used)),
            }
        }
        if ready.is_empty() {
            return Selection::AllCooling {
                earliest: earliest.unwrap_or_default(),
            };
        }
        // Shuffle first: the sort is stable, so equal accounts keep a random order.
        ready.shuffle(&mut rand::thread_rng());
        ready.sort_by_key(|(a, last_used)| (a.spec.priority, *last_used));
        for (account, _) in ready {
            if let Some(slot) = account.try_acquire() {
                account.health().last_used = Some(now);
                return Selection::Slot(slot);
            }
        }
        Selection::AllBusy
    }

    pub fn find(&self, name: &str) -> Option<&Arc<Account>> {
        self.accounts.iter().find(|a| a.spec.name == name)
    }
}

impl Account {
    fn health(&self) -> MutexGuard<'_, Health> {
        // A panic while holding this lock cannot leave the plain-data health half-updated in a
        // way that matters, so a poisoned lock is simply taken over.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn serves_model(&self, model: &str) -> bool {
        self.spec
            .models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }

    fn try_acquire(self: &Arc<Self>) -> Option<AccountSlot> {
        let limit = self.spec.concurrency;
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (limit == 0 || n < limit).then_some(n + 1)
            });
        taken.ok().map(|_| AccountSlot {
            account: Arc::clone(self),
        })
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Applies what a failed attempt implies for this account.
    pub fn apply(&self, effect: &AccountEffect, error: &str) {
        let mut health = self.health();
        health.last_error = Some(error.to_owned());
        if let Some((reason, duration)) = effect.cooldown() {
            let until = Instant::now() + duration;
            // Keep the later of two cooldowns: a short 5xx pause must not shorten a quota wait.
            if health.cooldown_until.is_none_or(|u| u < until) {
                health.cooldown_until = Some(until);
                health.cooldown_reason = Some(reason);
            }
        }
    }

    /// A successful answer: the account is healthy again.
    pub fn note_success(&self) {
        let mut health = self.health();
        health.last_error = None;
    }

    /// Time left in the current cooldown, if any, and why.
    pub fn cooldown(&self) -> Option<(Duration, CooldownReason)> {
        let health = self.health();
        let until = health.cooldown_until?;
        let now = Instant::now();
        (until > now).then(|| {
            (
                until - now,
                health.cooldown_reason.unwrap_or(CooldownReason::Transient),
            )
        })
    }

    pub fn last_error(&self) -> Option<String> {
        self.health().last_error.clone()
    }
}

/// A request's hold on one account. Dropping it gives the concurrency slot back.
pub struct AccountSlot {
    account: Arc<Account>,
}

impl AccountSlot {
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }
}

impl Drop for AccountSlot {
    fn drop(&mut self) {
        self.account.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests;
