//! The account pool: which accounts exist, which may serve a request now, and in what order.
//!
//! Accounts come from an [`AccountSource`] (the store's accounts). The pool's runtime state lives
//! behind the interfaces of [`crate::runtime_state`], keyed by account name: each [`Account`]'s
//! health (cooldown, disable reason, last use, last error, quota) is a record read and changed
//! under a short lock never held across an `.await`, its concurrency slots are leases, its
//! sign-in tokens ([`credentials::Credentials`]) a compare-and-set value with a single-flight refresh lock;
//! sticky bindings, the wait queue and the "look again" signal are the pool's. A selected account
//! is held through an [`AccountSlot`], which gives its lease back when dropped — on success,
//! error, client disconnect and panic alike — and wakes requests waiting in the queue.
//!
//! The relay reports outcomes through [`Pool::succeeded`], [`Pool::failed`] and
//! [`Pool::keep_sticky`]; it does not touch health or bindings itself.
//!
//! Order of selection: the conversation's sticky binding ([`sticky`]), then accounts speaking the
//! client's API natively (before those a translating group translates for), then lowest
//! `priority`, then quota (an account over `gateway.quota_reserve_percent` last), then recent
//! outcomes (an account far worse than the other candidates — error rate or time to first token
//! over the last 5 minutes, [`performance`] — after them), then the most room in the tightest
//! usage window (in steps of [`QUOTA_STEP`] points), then lowest load (in flight ÷
//! concurrency), then least recently used; ties at random. A binding to an account over its
//! reserve moves when another account has room; a binding to a demoted account moves, with a
//! probability growing with how bad it is, when a healthy one has room.

mod account;
pub mod cooldown;
pub mod credentials;
pub mod performance;
pub mod quota;
mod source;
pub mod sticky;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::domain::{AccountSpec, Platform, Protocol};
use crate::runtime_state::{Live, RuntimeState, Signal, WaitQueue};

use account::Snapshot;
pub use account::{Account, AccountSlot, AccountView, Availability, LastingState, ProbeRecord};
pub use cooldown::{AccountEffect, CooldownPolicy, CooldownReason};
pub use credentials::TokenState;
pub use performance::{Performance, PerformanceView};
pub use source::AccountSource;
pub use sticky::{StickyKey, StickyTable};

/// Accounts whose tightest window's use is within this many points of each other count as
/// equally used, so load still spreads among them.
pub const QUOTA_STEP: f64 = 10.0;

/// Index of an account in the pool; stable for the life of the process, and used only within
/// it (a request's tried accounts). Runtime state is keyed by the account's name.
pub type AccountId = usize;

/// The pool's rules, from `gateway.*` (`crate::server::pool_policy`).
#[derive(Debug, Clone)]
pub struct PoolPolicy {
    pub cooldowns: CooldownPolicy,
    pub sticky_ttl: Option<Duration>,
    pub sticky_slow_ttft: Option<Duration>,
    pub sticky_slow_strikes: u32,
    pub queue_wait: Duration,
    pub queue_max_waiting: usize,
    /// `gateway.connect_timeout`, for the accounts' direct senders.
    pub connect_timeout: Duration,
    /// `gateway.quota_reserve_percent` (0 = off): an account whose tightest usage window is
    /// above 100 − this is passed over while another has room.
    pub quota_reserve_percent: f64,
}

pub struct Pool {
    /// The accounts now. Replaced as a whole when an account is added, changed or removed at
    /// run time; a request works on the snapshot it took, and in-flight requests keep the
    /// `Arc<Account>` they hold, so a removal never pulls an account from under them.
    accounts: RwLock<Arc<Vec<Arc<Account>>>>,
    next_id: AtomicUsize,
    /// `gateway.*` rules, replaced by a configuration reload (read through [`Pool::policy`]).
    policy: Live<PoolPolicy>,
    /// Where accounts keep their runtime state.
    runtime: RuntimeState,
    sticky: StickyTable,
    /// Told whenever a slot is given back or an account may have become usable, so queued
    /// requests look again.
    changed: Signal,
    queue: WaitQueue,
}

/// What a request is looking for.
pub struct Wanted<'a> {
    pub group: &'a str,
    /// Only accounts of this platform; `None` (a group that translates): either.
    pub platform: Option<Platform>,
    /// The upstream APIs that can serve the request, the client's own first: an account must
    /// speak one of them, and accounts speaking the first are preferred (after the sticky
    /// binding) over those the request is translated for.
    pub protocols: &'a [Protocol],
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
    /// `accounts`: each account with the HTTP client (connection pool, proxy) it talks through.
    /// Fails, naming the account, for one whose endpoints do not parse (not validated).
    pub fn new(
        accounts: Vec<(AccountSpec, reqwest::Client)>,
        policy: PoolPolicy,
    ) -> Result<Self, String> {
        Self::with_state(accounts, policy, RuntimeState::default())
    }

    /// A pool whose runtime state lives in `runtime`.
    pub fn with_state(
        accounts: Vec<(AccountSpec, reqwest::Client)>,
        policy: PoolPolicy,
        runtime: RuntimeState,
    ) -> Result<Self, String> {
        let changed = runtime.signal("pool");
        let accounts: Vec<Arc<Account>> = accounts
            .into_iter()
            .enumerate()
            .map(|(id, (spec, client))| {
                Account::new(id, spec, client, policy.connect_timeout, &runtime, &changed)
                    .map(Arc::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            next_id: AtomicUsize::new(accounts.len()),
            accounts: RwLock::new(Arc::new(accounts)),
            sticky: StickyTable::new(&runtime),
            queue: runtime.wait_queue("pool"),
            policy: Live::new(policy),
            changed,
            runtime,
        })
    }

    /// The pool's rules now.
    pub fn policy(&self) -> Arc<PoolPolicy> {
        self.policy.get()
    }

    /// Replaces the pool's rules (a configuration reload): the next selection, outcome and queue
    /// wait use them.
    pub fn set_policy(&self, policy: PoolPolicy) {
        self.policy.set(policy);
    }

    /// The accounts now (a snapshot).
    pub fn accounts(&self) -> Arc<Vec<Arc<Account>>> {
        Arc::clone(&self.accounts.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn find(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts()
            .iter()
            .find(|a| a.spec.name == name)
            .cloned()
    }

    /// Adds an account, or replaces the one of the same name (which keeps its name, so sticky
    /// bindings stay, and starts with fresh health and tokens). Takes effect for the next
    /// selection. Fails, naming the account, for one whose endpoints do not parse.
    pub fn upsert(&self, spec: AccountSpec, client: reqwest::Client) -> Result<(), String> {
        let mut guard = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let mut next: Vec<Arc<Account>> = guard.as_ref().clone();
        let id = next
            .iter()
            .find(|a| a.spec.name == spec.name)
            .map_or_else(|| self.next_id.fetch_add(1, Ordering::AcqRel), |a| a.id);
        let account = Arc::new(Account::new(
            id,
            spec,
            client,
            self.policy().connect_timeout,
            &self.runtime,
            &self.changed,
        )?);
        match next.iter().position(|a| a.id == id) {
            Some(at) => next[at] = account,
            None => next.push(account),
        }
        *guard = Arc::new(next);
        drop(guard);
        // A waiting request may be able to use the new account.
        self.changed.notify();
        Ok(())
    }

    /// Removes an account from selection; requests using it finish normally.
    pub fn remove(&self, name: &str) -> bool {
        let mut guard = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let before = guard.len();
        let next: Vec<Arc<Account>> = guard
            .iter()
            .filter(|a| a.spec.name != name)
            .cloned()
            .collect();
        let removed = next.len() != before;
        *guard = Arc::new(next);
        removed
    }

    /// Enabled accounts of `group` on `platform` (`None`: either) in a snapshot, whatever their
    /// health.
    pub fn members<'a>(
        accounts: &'a [Arc<Account>],
        group: &'a str,
        platform: Option<Platform>,
    ) -> impl Iterator<Item = &'a Arc<Account>> + 'a {
        accounts.iter().filter(move |a| {
            a.spec.enabled
                && platform.is_none_or(|p| a.spec.platform == p)
                && a.spec.groups.iter().any(|g| g == group)
        })
    }

    /// Whether `account` can serve `wanted` (its APIs and model), health aside.
    fn eligible(account: &Account, wanted: &Wanted<'_>) -> bool {
        wanted.protocols.iter().any(|p| account.spec.speaks(*p))
            && account.serves_model(wanted.model)
    }

    /// Requests waiting in the queue now.
    pub fn waiting(&self) -> usize {
        self.queue.waiting()
    }

    /// How long a request may wait in the queue, if it may wait at all now (queueing is on and
    /// fewer than `gateway.queue_max_waiting` wait).
    pub fn queue_room(&self) -> Option<Duration> {
        let wait = self.policy().queue_wait;
        (!wait.is_zero() && self.waiting() < self.policy().queue_max_waiting).then_some(wait)
    }

    /// Whether conversations are bound to accounts (`gateway.sticky_session_ttl`).
    pub fn sticky_enabled(&self) -> bool {
        self.policy().sticky_ttl.is_some()
    }

    /// A successful answer from `account` (with the quota its headers reported, and its first
    /// token `ttft` after the send).
    pub fn succeeded(
        &self,
        account: &Account,
        quota: Option<quota::QuotaSnapshot>,
        ttft: Option<Duration>,
    ) {
        account.note_answer(quota, ttft);
    }

    /// A failed attempt on `account`: its state takes the failure's effect, and the
    /// conversation's binding moves to whichever account serves the request next.
    pub fn failed(
        &self,
        account: &Account,
        effect: &AccountEffect,
        error: &str,
        sticky: Option<&StickyKey>,
    ) {
        account.apply(effect, error, &self.policy().cooldowns);
        if let Some(key) = sticky {
            self.sticky.release(key);
        }
    }

    /// After a success: keeps (or moves) the conversation's binding to `account`, unless its
    /// first token (`ttft` after the send) was slow too many times in a row. An account
    /// selection found far worse than its peers (`demoted`, [`AccountSlot::demoted`]) keeps a
    /// binding it has but gets no new one. Returns whether the binding was released for
    /// slowness.
    pub fn keep_sticky(
        &self,
        key: Option<&StickyKey>,
        account: &Account,
        ttft: Option<Duration>,
        demoted: bool,
    ) -> bool {
        let (Some(key), Some(ttl)) = (key, self.policy().sticky_ttl) else {
            return false;
        };
        if let (Some(limit), Some(ttft)) = (self.policy().sticky_slow_ttft, ttft) {
            let slow = ttft > limit;
            if self
                .sticky
                .note_ttft(key, &account.name, slow, self.policy().sticky_slow_strikes)
            {
                return true;
            }
        }
        if demoted && self.sticky.get(key).as_ref() != Some(&account.name) {
            return false;
        }
        self.sticky.bind(*key, &account.name, ttl);
        false
    }

    /// Like [`Pool::select`], but when every candidate is at its concurrency limit, waits up to
    /// `gateway.queue_wait_timeout` (with at most `gateway.queue_max_waiting` others) for a slot.
    pub async fn acquire(&self, wanted: &Wanted<'_>) -> Selection {
        let policy = self.policy();
        let deadline = Instant::now() + policy.queue_wait;
        let mut queued = None;
        loop {
            // Registered before looking, so a slot freed in between is not missed.
            let freed = self.changed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            match self.select_shared(wanted).await {
                Selection::AllBusy { .. } => {}
                other => return other,
            }
            if queued.is_none() {
                if policy.queue_wait.is_zero() {
                    return Selection::AllBusy { queue_full: false };
                }
                let (ticket, full) = self.queue.join(policy.queue_max_waiting);
                if full {
                    return Selection::AllBusy { queue_full: true };
                }
                queued = Some(ticket);
            }
            // A shared backend's slot of a dead instance comes back by expiry, unannounced.
            let look_again = self
                .runtime
                .poll_every()
                .map_or(deadline, |every| deadline.min(Instant::now() + every));
            if tokio::time::timeout_at(look_again, freed).await.is_err()
                && Instant::now() >= deadline
            {
                return Selection::AllBusy { queue_full: false };
            }
        }
    }

    /// [`Pool::select`], then the slot taken across instances (a shared backend: one round trip;
    /// the local backend's slot is already whole). An account whose slots are all held elsewhere
    /// is passed over; if every candidate is, the pool is busy.
    async fn select_shared(&self, wanted: &Wanted<'_>) -> Selection {
        let mut refused: Vec<AccountId> = Vec::new();
        loop {
            let selection = if refused.is_empty() {
                self.select(wanted)
            } else {
                let tried: Vec<AccountId> = wanted.tried.iter().chain(&refused).copied().collect();
                let narrowed = Wanted {
                    tried: &tried,
                    ..*wanted
                };
                self.select(&narrowed)
            };
            match selection {
                Selection::Slot(slot) => {
                    let account = Arc::clone(slot.account());
                    if account.confirm(&slot).await {
                        return Selection::Slot(slot);
                    }
                    refused.push(account.id);
                }
                _ if !refused.is_empty() => return Selection::AllBusy { queue_full: false },
                other => return other,
            }
        }
    }

    /// Picks the next account for a request without waiting.
    pub fn select(&self, wanted: &Wanted<'_>) -> Selection {
        let now = Instant::now();
        let accounts = self.accounts();
        let mut any_eligible = false;
        let mut earliest: Option<Duration> = None;
        // One pass over the accounts, one health lock each; no sort (this runs per request).
        let mut ready: Vec<Candidate<'_>> = Vec::with_capacity(accounts.len());
        // The conversation's account, looked up once (one lock), not once per candidate.
        let bound_name = wanted.sticky.and_then(|key| self.sticky.get(key));
        for account in Self::members(&accounts, wanted.group, wanted.platform) {
            if !Self::eligible(account, wanted) {
                continue;
            }
            any_eligible = true;
            let Snapshot {
                availability,
                last_used,
                used,
                performance,
            } = account.snapshot(now);
            let bound = bound_name.as_ref() == Some(&account.name);
            if wanted.tried.contains(&account.id) {
                if bound {
                    // It failed for this request: the binding moves to whoever serves it.
                    wanted.sticky.inspect(|key| self.sticky.release(key));
                }
                continue;
            }
            if bound && availability != Availability::Ready {
                // Cooling or disabled: the binding moves to whoever serves this request.
                wanted.sticky.inspect(|key| self.sticky.release(key));
            }
            match availability {
                Availability::Ready => ready.push(Candidate {
                    account,
                    order: Order {
                        bound,
                        native: wanted
                            .protocols
                            .first()
                            .is_some_and(|p| account.spec.speaks(*p)),
                        priority: account.spec.priority,
                        over_reserve: self.over_reserve(used),
                        demoted: false,
                        quota_step: (used.clamp(0.0, 100.0) / QUOTA_STEP) as u8,
                        load: account.load(),
                        last_used,
                    },
                    performance,
                    severity: 0.0,
                }),
                Availability::Cooling { left, .. } => {
                    earliest = Some(earliest.map_or(left, |e| e.min(left)));
                }
                Availability::Disabled(_) => {}
            }
        }
        if !any_eligible {
            return Selection::NoAccount;
        }
        if ready.is_empty() {
            return if earliest.is_none() && Self::all_tried(&accounts, wanted) {
                Selection::Exhausted
            } else {
                Selection::AllCooling { earliest }
            };
        }
        Self::judge(&mut ready);
        self.leave_bound_over_reserve(&mut ready, wanted);
        let mut rng = rand::thread_rng();
        self.leave_bound_demoted(&mut ready, wanted, &mut rng);
        while !ready.is_empty() {
            // The best by order; among equals a uniformly random one (reservoir sampling).
            let mut best = 0;
            let mut ties = 1u32;
            for i in 1..ready.len() {
                match ready[i].order.cmp(&ready[best].order) {
                    std::cmp::Ordering::Less => {
                        best = i;
                        ties = 1;
                    }
                    std::cmp::Ordering::Equal => {
                        ties += 1;
                        if rng.gen_range(0..ties) == 0 {
                            best = i;
                        }
                    }
                    std::cmp::Ordering::Greater => {}
                }
            }
            let Candidate { account, order, .. } = ready.swap_remove(best);
            if let Some(mut slot) = account.try_acquire() {
                account.touch(now);
                slot.demoted = order.demoted;
                return Selection::Slot(slot);
            }
            if order.bound {
                // Full: the binding moves to whichever account serves this request.
                wanted.sticky.inspect(|key| self.sticky.release(key));
            }
        }
        Selection::AllBusy { queue_full: false }
    }

    /// Whether an account not yet tried could serve `wanted` now with quota room: ready, not
    /// past `gateway.quota_reserve_percent` (nor 100 %). Slots are not counted: a full account
    /// is worth waiting for. For `groups[].model_fallback`.
    pub fn has_room(&self, wanted: &Wanted<'_>) -> bool {
        let now = Instant::now();
        Self::members(&self.accounts(), wanted.group, wanted.platform)
            .filter(|a| Self::eligible(a, wanted) && !wanted.tried.contains(&a.id))
            .any(|a| {
                let Snapshot {
                    availability, used, ..
                } = a.snapshot(now);
                availability == Availability::Ready && !self.over_reserve(used)
            })
    }

    /// Whether an account whose tightest window is `used` percent used is past the reserve
    /// (`gateway.quota_reserve_percent`); at 100 % it is, reserve or not.
    fn over_reserve(&self, used: f64) -> bool {
        used >= 100.0
            || (self.policy().quota_reserve_percent > 0.0
                && used > 100.0 - self.policy().quota_reserve_percent)
    }

    /// A conversation bound to an account over its reserve moves when an account of the same
    /// or a better priority has room; otherwise the binding stays.
    fn leave_bound_over_reserve(&self, ready: &mut [Candidate<'_>], wanted: &Wanted<'_>) {
        let Some(at) = ready
            .iter()
            .position(|c| c.order.bound && c.order.over_reserve)
        else {
            return;
        };
        let priority = ready[at].order.priority;
        if ready
            .iter()
            .any(|c| !c.order.over_reserve && c.order.priority <= priority)
        {
            ready[at].order.bound = false;
            wanted.sticky.inspect(|key| self.sticky.release(key));
        }
    }

    /// Marks the candidates far worse than the others ([`performance`]). Nothing to do (and
    /// nothing read) with fewer than two candidates.
    fn judge(ready: &mut [Candidate<'_>]) {
        if ready.len() < 2 {
            return;
        }
        let peers = performance::Peers::of(ready, |c| &c.performance);
        if peers == performance::Peers::default() {
            return;
        }
        for candidate in ready.iter_mut() {
            if let Some(demotion) = candidate.performance.judge(&peers) {
                candidate.order.demoted = true;
                candidate.severity = demotion.severity;
            }
        }
    }

    /// The sticky slow-release: a conversation bound to a demoted account moves, when a healthy
    /// account of the same or a better priority has room, with a probability growing with how
    /// bad the account is ([`performance::release_probability`]) — so a blip does not throw
    /// its prompt cache away.
    fn leave_bound_demoted(
        &self,
        ready: &mut [Candidate<'_>],
        wanted: &Wanted<'_>,
        rng: &mut impl Rng,
    ) {
        let Some(at) = ready.iter().position(|c| c.order.bound && c.order.demoted) else {
            return;
        };
        let priority = ready[at].order.priority;
        let healthy = ready
            .iter()
            .any(|c| !c.order.demoted && !c.order.over_reserve && c.order.priority <= priority);
        if healthy && rng.gen_bool(performance::release_probability(ready[at].severity)) {
            ready[at].order.bound = false;
            wanted.sticky.inspect(|key| self.sticky.release(key));
        }
    }

    /// Every account as people see it (the admin API, the dashboard, the metrics), each
    /// account's recent outcomes judged against the enabled accounts of its groups (demoted
    /// when far worse than the peers of any of them).
    pub fn views(&self) -> Vec<AccountView> {
        let now = Instant::now();
        let accounts = self.accounts();
        let performances: Vec<Performance> = accounts.iter().map(|a| a.performance(now)).collect();
        let mut groups: Vec<(&str, performance::Peers)> = Vec::new();
        for group in accounts
            .iter()
            .filter(|a| a.spec.enabled)
            .flat_map(|a| &a.spec.groups)
        {
            if groups.iter().any(|(g, _)| g == group) {
                continue;
            }
            let mut members: Vec<&Performance> = accounts
                .iter()
                .zip(&performances)
                .filter(|(a, _)| a.spec.enabled && a.spec.groups.contains(group))
                .map(|(_, p)| p)
                .collect();
            groups.push((group, performance::Peers::of(&mut members, |p| p)));
        }
        accounts
            .iter()
            .zip(&performances)
            .map(|(account, perf)| {
                let demotion = groups
                    .iter()
                    .filter(|(g, _)| {
                        account.spec.enabled && account.spec.groups.iter().any(|m| m == g)
                    })
                    .filter_map(|(_, peers)| perf.judge(peers))
                    .max_by(|a, b| a.severity.total_cmp(&b.severity));
                account.view(PerformanceView::of(perf, demotion))
            })
            .collect()
    }

    /// One account as people see it (see [`Pool::views`]).
    pub fn view(&self, account: &Account) -> AccountView {
        self.views()
            .into_iter()
            .find(|v| v.name == account.spec.name)
            .unwrap_or_else(|| {
                account.view(PerformanceView::of(
                    &account.performance(Instant::now()),
                    None,
                ))
            })
    }

    /// Whether every eligible account was tried by this request.
    fn all_tried(accounts: &[Arc<Account>], wanted: &Wanted<'_>) -> bool {
        Self::members(accounts, wanted.group, wanted.platform)
            .filter(|a| Self::eligible(a, wanted))
            .all(|a| wanted.tried.contains(&a.id))
    }
}

/// A ready account, with where it stands.
struct Candidate<'a> {
    account: &'a Arc<Account>,
    order: Order,
    performance: Performance,
    /// How far past the demotion threshold (`0..=1`), when demoted.
    severity: f64,
}

/// Selection order: the sticky binding, then speaking the client's API natively, then lowest
/// priority, not over the quota reserve, not demoted, most quota room (in steps), lowest load,
/// least recently used.
#[derive(Debug, Clone, Copy)]
struct Order {
    bound: bool,
    native: bool,
    priority: i32,
    over_reserve: bool,
    /// Far worse than the other candidates lately ([`performance`]).
    demoted: bool,
    /// The tightest window's use ÷ [`QUOTA_STEP`].
    quota_step: u8,
    load: f64,
    last_used: Option<Instant>,
}

impl Order {
    fn cmp(&self, other: &Order) -> std::cmp::Ordering {
        other
            .bound
            .cmp(&self.bound)
            .then(other.native.cmp(&self.native))
            .then(self.priority.cmp(&other.priority))
            .then(self.over_reserve.cmp(&other.over_reserve))
            .then(self.demoted.cmp(&other.demoted))
            .then(self.quota_step.cmp(&other.quota_step))
            .then(self.load.total_cmp(&other.load))
            .then(self.last_used.cmp(&other.last_used))
    }
}

#[cfg(test)]
mod tests;
