//! Selection order, sticky bindings, slots, the queue and cooldowns, under paused time.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::time::Duration;

use super::*;
use crate::domain::{AccountCredential, AccountKind, Secret};

mod simulation;

fn spec(name: &str, priority: i32, concurrency: u32) -> AccountSpec {
    AccountSpec {
        name: name.into(),
        platform: Platform::OpenAi,
        kind: AccountKind::ApiKey,
        credential: AccountCredential::ApiKey {
            api_key: Secret::new(format!("key-{name}")),
        },
        base_url: "http://127.0.0.1:9/v1".into(),
        priority,
        concurrency,
        groups: vec!["default".into()],
        enabled: true,
        models: None,
        model_map: Default::default(),
        proxy: None,
        protocols: None,
    }
}

fn with_clients(specs: Vec<AccountSpec>) -> Vec<(AccountSpec, reqwest::Client)> {
    specs
        .into_iter()
        .map(|s| (s, reqwest::Client::new()))
        .collect()
}

/// The pool's rules under the config's defaults.
fn default_policy() -> PoolPolicy {
    crate::server::pool_policy(&crate::config::GatewayConfig::default())
}

fn pool(specs: Vec<AccountSpec>) -> Pool {
    Pool::new(with_clients(specs), default_policy()).unwrap()
}

fn wanted<'a>(tried: &'a [AccountId], sticky: Option<&'a StickyKey>) -> Wanted<'a> {
    Wanted {
        group: "default",
        platform: Some(Platform::OpenAi),
        protocols: &[Protocol::Responses],
        model: "gpt-5",
        tried,
        sticky,
    }
}

fn pick(pool: &Pool, tried: &[AccountId]) -> Option<AccountSlot> {
    match pool.select(&wanted(tried, None)) {
        Selection::Slot(slot) => Some(slot),
        _ => None,
    }
}

fn name(slot: &AccountSlot) -> String {
    slot.account().spec.name.clone()
}

fn id(pool: &Pool, name: &str) -> AccountId {
    pool.find(name).unwrap().id
}

#[tokio::test(start_paused = true)]
async fn lower_priority_first_then_lower_load_then_least_recently_used() {
    let p = pool(vec![spec("b", 1, 4), spec("a", 0, 0), spec("c", 1, 4)]);
    assert_eq!(name(&pick(&p, &[]).unwrap()), "a");
    let a = id(&p, "a");
    // b and c share priority 1: the one with fewer requests in flight goes first.
    let held = pick(&p, &[a]).unwrap();
    let other = pick(&p, &[a]).unwrap();
    assert_ne!(
        name(&held),
        name(&other),
        "load spreads across equal accounts"
    );
    drop(other);
    // Same load again; least recently used decides.
    tokio::time::advance(Duration::from_millis(1)).await;
    drop(held);
    let first = name(&pick(&p, &[a]).unwrap());
    tokio::time::advance(Duration::from_millis(1)).await;
    let second = name(&pick(&p, &[a]).unwrap());
    assert_ne!(first, second);
}

#[tokio::test(start_paused = true)]
async fn ties_are_spread_at_random() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        let fresh = pool(vec![spec("a", 0, 0), spec("b", 0, 0)]);
        seen.insert(name(&pick(&fresh, &[]).unwrap()));
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn tried_accounts_are_skipped_and_exhaustion_is_reported() {
    let p = pool(vec![spec("a", 0, 0)]);
    let a = id(&p, "a");
    assert!(matches!(
        p.select(&wanted(&[a], None)),
        Selection::Exhausted
    ));
    let other = Wanted {
        group: "other-group",
        ..wanted(&[], None)
    };
    assert!(matches!(p.select(&other), Selection::NoAccount));
}

#[tokio::test(start_paused = true)]
async fn slots_are_given_back_when_dropped_even_on_panic() {
    let p = Arc::new(pool(vec![spec("a", 0, 1)]));
    let slot = pick(&p, &[]).unwrap();
    assert!(matches!(
        p.select(&wanted(&[], None)),
        Selection::AllBusy { .. }
    ));
    drop(slot);
    assert_eq!(p.accounts()[0].in_flight(), 0);
    let p2 = Arc::clone(&p);
    let panicked = tokio::spawn(async move {
        let _slot = pick(&p2, &[]).unwrap();
        panic!("relay bug");
    })
    .await;
    assert!(panicked.is_err());
    assert_eq!(p.accounts()[0].in_flight(), 0);
    assert!(pick(&p, &[]).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_full_pool_queues_until_a_slot_frees_then_times_out() {
    let p = Arc::new(pool(vec![spec("a", 0, 1)]));
    let held = pick(&p, &[]).unwrap();
    let waiter = {
        let p = Arc::clone(&p);
        tokio::spawn(
            async move { matches!(p.acquire(&wanted(&[], None)).await, Selection::Slot(_)) },
        )
    };
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(p.waiting(), 1);
    drop(held);
    assert!(waiter.await.unwrap(), "the freed slot went to the waiter");
    assert_eq!(p.waiting(), 0);

    // Nobody frees the slot: 30 s (the default queue wait) later the waiter gives up.
    let _held = pick(&p, &[]).unwrap();
    let start = tokio::time::Instant::now();
    let got = p.acquire(&wanted(&[], None)).await;
    assert!(matches!(got, Selection::AllBusy { queue_full: false }));
    assert_eq!(start.elapsed(), Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let policy = PoolPolicy {
        queue_max_waiting: 1,
        ..default_policy()
    };
    let p = Arc::new(Pool::new(with_clients(vec![spec("a", 0, 1)]), policy).unwrap());
    let _held = pick(&p, &[]).unwrap();
    let first = {
        let p = Arc::clone(&p);
        tokio::spawn(async move { p.acquire(&wanted(&[], None)).await })
    };
    tokio::task::yield_now().await;
    assert_eq!(p.waiting(), 1);
    let start = tokio::time::Instant::now();
    assert!(matches!(
        p.acquire(&wanted(&[], None)).await,
        Selection::AllBusy { queue_full: true }
    ));
    assert_eq!(start.elapsed(), Duration::ZERO);
    first.abort();
}

#[tokio::test(start_paused = true)]
async fn cooldowns_skip_the_account_and_heal_after_their_time() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 1, 0)]);
    let policy = p.policy().cooldowns;
    let a = p.find("a").unwrap();
    a.apply(
        &AccountEffect::RateLimited(Some(Duration::from_secs(120))),
        "429",
        &policy,
    );
    assert_eq!(name(&pick(&p, &[]).unwrap()), "b");
    let b = p.find("b").unwrap();
    b.apply(&AccountEffect::Overloaded, "529", &policy);
    match p.select(&wanted(&[], None)) {
        Selection::AllCooling { earliest } => assert_eq!(earliest, Some(Duration::from_secs(120))),
        _ => panic!("expected every account cooling"),
    }
    tokio::time::advance(Duration::from_secs(121)).await;
    assert_eq!(name(&pick(&p, &[]).unwrap()), "a");
    // A short pause never shortens a longer one (three transient failures: a cooldown of 10 s).
    for _ in 0..cooldown::TRANSIENT_STRIKES {
        b.apply(&AccountEffect::Transient, "502", &policy);
    }
    assert!(matches!(
        b.availability(tokio::time::Instant::now()),
        Availability::Cooling {
            reason: CooldownReason::Overloaded,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn cooldowns_are_capped_by_max_cooldown() {
    let policy = PoolPolicy {
        cooldowns: CooldownPolicy {
            overload: Duration::from_secs(600),
            max: Duration::from_secs(3600),
        },
        ..default_policy()
    };
    let p = Pool::new(with_clients(vec![spec("a", 0, 0)]), policy).unwrap();
    let a = p.find("a").unwrap();
    // A weekly window reset (7 d) would lock the account away; the cap brings it back in 1 h.
    a.apply(
        &AccountEffect::RateLimited(Some(Duration::from_secs(7 * 86400))),
        "429",
        &p.policy().cooldowns,
    );
    tokio::time::advance(Duration::from_secs(3599)).await;
    assert!(pick(&p, &[]).is_none());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(pick(&p, &[]).is_some());
}

#[tokio::test(start_paused = true)]
async fn a_success_clears_a_stale_rate_limit_and_records_the_quota() {
    let p = pool(vec![spec("a", 0, 0)]);
    let a = p.find("a").unwrap();
    a.apply(
        &AccountEffect::RateLimited(None),
        "429",
        &p.policy().cooldowns,
    );
    let quota = quota::QuotaSnapshot {
        primary: Some(quota::QuotaWindow {
            used_percent: 12.0,
            window_minutes: Some(300),
            resets_at: None,
        }),
        secondary: None,
    };
    a.note_success(Some(quota.clone()));
    assert_eq!(
        a.availability(tokio::time::Instant::now()),
        Availability::Ready
    );
    assert_eq!(p.view(&a).quota, Some(quota));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_disables_with_its_reason_until_reset() {
    let p = pool(vec![spec("a", 0, 0)]);
    let a = p.find("a").unwrap();
    a.apply(
        &AccountEffect::Disable("API key revoked"),
        "401",
        &p.policy().cooldowns,
    );
    tokio::time::advance(Duration::from_secs(30 * 86400)).await;
    assert!(matches!(
        p.select(&wanted(&[], None)),
        Selection::AllCooling { earliest: None }
    ));
    let view = p.view(&a);
    assert_eq!(view.state, "disabled");
    assert_eq!(view.disabled_reason.as_deref(), Some("API key revoked"));
    a.reset();
    assert!(pick(&p, &[]).is_some());
}

#[tokio::test(start_paused = true)]
async fn model_lists_model_maps_and_disabled_accounts_filter_candidates() {
    let mut only_mini = spec("mini", 0, 0);
    only_mini.models = Some(vec!["gpt-5-mini".into()]);
    only_mini
        .model_map
        .insert("fast".into(), "gpt-5-mini".into());
    let mut off = spec("off", 0, 0);
    off.enabled = false;
    let p = pool(vec![only_mini, off, spec("any", 5, 0)]);
    let pick_model = |model: &str| match p.select(&Wanted {
        model,
        ..wanted(&[], None)
    }) {
        Selection::Slot(s) => name(&s),
        _ => "none".into(),
    };
    assert_eq!(pick_model("gpt-5-mini"), "mini");
    assert_eq!(pick_model("fast"), "mini");
    assert_eq!(pick_model("gpt-5"), "any");
    assert_eq!(p.find("mini").unwrap().upstream_model("fast"), "gpt-5-mini");
}

#[tokio::test(start_paused = true)]
async fn a_sticky_binding_wins_over_priority_and_moves_when_its_account_cools() {
    let p = pool(vec![spec("first", 0, 0), spec("second", 1, 0)]);
    let key = StickyKey::new(b"key-a", "conversation-1");
    let second = id(&p, "second");
    p.sticky
        .bind(key, &"second".into(), Duration::from_secs(3600));
    let got = p.select(&wanted(&[], Some(&key)));
    assert!(matches!(got, Selection::Slot(ref s) if s.account().id == second));
    // Cooling: the binding is released and the normal order applies.
    p.find("second")
        .unwrap()
        .apply(&AccountEffect::AuthFailed, "401", &p.policy().cooldowns);
    let got = p.select(&wanted(&[], Some(&key)));
    assert!(matches!(got, Selection::Slot(ref s) if s.account().spec.name == "first"));
    assert_eq!(p.sticky.get(&key), None);
}

#[tokio::test(start_paused = true)]
async fn sticky_bindings_expire_and_are_per_api_key() {
    let p = pool(vec![spec("first", 0, 0), spec("second", 1, 0)]);
    let mine = StickyKey::new(b"key-a", "same-conversation-id");
    let theirs = StickyKey::new(b"key-b", "same-conversation-id");
    assert_ne!(mine, theirs);
    p.sticky
        .bind(mine, &"second".into(), Duration::from_secs(60));
    let got = p.select(&wanted(&[], Some(&theirs)));
    assert!(matches!(got, Selection::Slot(ref s) if s.account().spec.name == "first"));
    tokio::time::advance(Duration::from_secs(61)).await;
    let got = p.select(&wanted(&[], Some(&mine)));
    assert!(matches!(got, Selection::Slot(ref s) if s.account().spec.name == "first"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_bound_account_loses_the_binding_after_n_strikes() {
    let table = StickyTable::default();
    let key = StickyKey::new(b"k", "c");
    table.bind(key, &"c".into(), Duration::from_secs(3600));
    assert!(!table.note_ttft(&key, "c", true, 3));
    assert!(
        !table.note_ttft(&key, "c", false, 3),
        "a fast answer resets the count"
    );
    assert!(!table.note_ttft(&key, "c", true, 3));
    assert!(!table.note_ttft(&key, "c", true, 3));
    assert!(table.note_ttft(&key, "c", true, 3));
    assert_eq!(table.get(&key), None);
}

#[tokio::test(start_paused = true)]
async fn accounts_join_change_and_leave_at_runtime() {
    let p = pool(vec![spec("a", 0, 0)]);
    let a = id(&p, "a");
    p.upsert(spec("b", 1, 0), reqwest::Client::new()).unwrap();
    assert_eq!(name(&pick(&p, &[a]).unwrap()), "b");
    // Replacing keeps the id and the name (sticky bindings stay) and takes the new settings.
    let b = id(&p, "b");
    let mut changed = spec("b", 1, 0);
    changed.enabled = false;
    p.upsert(changed, reqwest::Client::new()).unwrap();
    assert_eq!(id(&p, "b"), b);
    assert!(matches!(
        p.select(&wanted(&[a], None)),
        Selection::Exhausted
    ));
    // A request that holds the removed account keeps it until it is done.
    let held = pick(&p, &[]).unwrap();
    assert!(p.remove("a"));
    assert_eq!(held.account().spec.name, "a");
    assert!(p.find("a").is_none());
    assert_eq!(p.accounts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn each_failure_rests_the_account_for_its_own_duration() {
    let cases = [
        (
            AccountEffect::AuthFailed,
            CooldownReason::AuthFailed,
            Duration::from_secs(10 * 60),
        ),
        (
            AccountEffect::PaymentRequired,
            CooldownReason::PaymentRequired,
            Duration::from_secs(60 * 60),
        ),
        (
            AccountEffect::Transient,
            CooldownReason::Transient,
            Duration::from_secs(10),
        ),
        (
            AccountEffect::Stalled,
            CooldownReason::Stalled,
            Duration::from_secs(30),
        ),
        (
            AccountEffect::RateLimited(None),
            CooldownReason::RateLimited,
            Duration::from_secs(60),
        ),
    ];
    for (effect, reason, duration) in cases {
        let p = pool(vec![spec("a", 0, 0)]);
        let a = p.find("a").unwrap();
        // A transient failure cools on the strike that makes it too many in a row.
        let times = if effect.is_transient() {
            cooldown::TRANSIENT_STRIKES
        } else {
            1
        };
        for _ in 0..times {
            a.apply(&effect, "failed", &p.policy().cooldowns);
        }
        match a.availability(tokio::time::Instant::now()) {
            Availability::Cooling { reason: got, left } => {
                assert_eq!((got, left), (reason, duration), "{effect:?}");
            }
            _ => panic!("{effect:?}: expected a cooldown"),
        }
        tokio::time::advance(duration - Duration::from_secs(1)).await;
        assert!(pick(&p, &[]).is_none(), "{effect:?}: still cooling");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            pick(&p, &[]).is_some(),
            "{effect:?}: healed after {duration:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_binding_used_again_lives_its_ttl_from_the_last_use() {
    let table = StickyTable::default();
    let used = StickyKey::new(b"k", "used");
    let idle = StickyKey::new(b"k", "idle");
    let ttl = Duration::from_secs(60);
    let one: std::sync::Arc<str> = "one".into();
    table.bind(used, &one, ttl);
    table.bind(idle, &one, ttl);
    tokio::time::advance(Duration::from_secs(40)).await;
    // A success on the bound account binds again (`keep_sticky`), which refreshes the TTL.
    table.bind(used, &one, ttl);
    tokio::time::advance(Duration::from_secs(40)).await;
    assert_eq!(
        table.get(&used),
        Some(one),
        "refreshed at 40 s: alive at 80 s"
    );
    assert_eq!(
        table.get(&idle),
        None,
        "control: not refreshed, gone at 80 s"
    );
    tokio::time::advance(Duration::from_secs(21)).await;
    assert_eq!(table.get(&used), None);
}

#[tokio::test(start_paused = true)]
async fn the_relay_reports_outcomes_through_the_pool() {
    let policy = PoolPolicy {
        sticky_ttl: Some(Duration::from_secs(3600)),
        sticky_slow_ttft: Some(Duration::from_secs(5)),
        sticky_slow_strikes: 2,
        ..default_policy()
    };
    let p = Pool::new(
        with_clients(vec![spec("first", 0, 0), spec("second", 1, 0)]),
        policy,
    )
    .unwrap();
    let key = StickyKey::new(b"k", "c");
    let second = p.find("second").unwrap();
    assert!(!p.keep_sticky(Some(&key), &second, Some(Duration::from_secs(1)), false));
    assert_eq!(p.sticky.get(&key).as_deref(), Some("second"), "bound");
    assert!(!p.keep_sticky(Some(&key), &second, Some(Duration::from_secs(6)), false));
    assert!(
        p.keep_sticky(Some(&key), &second, Some(Duration::from_secs(6)), false),
        "the second slow first token in a row releases the binding"
    );
    assert_eq!(p.sticky.get(&key), None);

    assert!(!p.keep_sticky(Some(&key), &second, None, false));
    p.failed(&second, &AccountEffect::Transient, "502", Some(&key));
    assert_eq!(
        p.sticky.get(&key),
        None,
        "a failure moves the binding, even one that does not cool the account"
    );
    p.failed(&second, &AccountEffect::RateLimited(None), "429", None);
    p.succeeded(&second, None, None);
    assert_eq!(
        second.availability(tokio::time::Instant::now()),
        Availability::Ready,
        "a success clears the stale rate limit"
    );
}

#[tokio::test(start_paused = true)]
async fn an_account_replaced_at_runtime_starts_with_fresh_health_and_slots() {
    let p = pool(vec![spec("a", 0, 1)]);
    let held = pick(&p, &[]).unwrap();
    p.find("a")
        .unwrap()
        .apply(&AccountEffect::AuthFailed, "401", &p.policy().cooldowns);
    p.upsert(spec("a", 0, 1), reqwest::Client::new()).unwrap();
    let fresh = p.find("a").unwrap();
    assert_eq!(
        fresh.availability(tokio::time::Instant::now()),
        Availability::Ready
    );
    assert_eq!(
        fresh.in_flight(),
        0,
        "the old version's slot is not counted"
    );
    assert_eq!(held.account().in_flight(), 1);
}

fn is_cooling(account: &Account) -> bool {
    matches!(
        account.availability(tokio::time::Instant::now()),
        Availability::Cooling { .. }
    )
}

#[tokio::test(start_paused = true)]
async fn transient_failures_cool_on_the_third_in_a_row_and_again_at_once_after() {
    let p = pool(vec![spec("only", 0, 0)]);
    let only = p.find("only").unwrap();
    let policy = p.policy().cooldowns;
    for effect in [AccountEffect::Transient, AccountEffect::Stalled] {
        assert!(!is_cooling(&only), "{effect:?}");
        only.apply(&effect, "502", &policy);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            pick(&p, &[]).is_some(),
            "the only account still serves after one"
        );
    }
    only.apply(&AccountEffect::Transient, "502", &policy);
    match only.availability(tokio::time::Instant::now()) {
        Availability::Cooling { left, reason } => {
            assert_eq!(
                (left, reason),
                (Duration::from_secs(10), CooldownReason::Transient)
            );
        }
        other => panic!("the third in a row cools: {other:?}"),
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(pick(&p, &[]).is_some(), "healed");
    // Back but still failing: one more strike before any success cools at once.
    only.apply(&AccountEffect::Transient, "502", &policy);
    assert!(is_cooling(&only));
}

#[tokio::test(start_paused = true)]
async fn strikes_start_again_after_a_success_or_a_quiet_window() {
    let p = pool(vec![spec("only", 0, 0)]);
    let only = p.find("only").unwrap();
    let policy = p.policy().cooldowns;
    let strike = || only.apply(&AccountEffect::Transient, "502", &policy);
    strike();
    strike();
    p.succeeded(&only, None, None);
    strike();
    strike();
    assert!(!is_cooling(&only), "two since the success");
    tokio::time::advance(cooldown::STRIKE_WINDOW + Duration::from_secs(1)).await;
    strike();
    strike();
    assert!(!is_cooling(&only), "two since the quiet minute");
    strike();
    assert!(is_cooling(&only), "control: the third in a row cools");
}

#[tokio::test(start_paused = true)]
async fn rate_limits_auth_and_billing_still_cool_at_the_first() {
    for effect in [
        AccountEffect::RateLimited(None),
        AccountEffect::AuthFailed,
        AccountEffect::PaymentRequired,
        AccountEffect::Overloaded,
    ] {
        let p = pool(vec![spec("only", 0, 0)]);
        let only = p.find("only").unwrap();
        only.apply(&effect, "failed", &p.policy().cooldowns);
        assert!(is_cooling(&only), "{effect:?}");
    }
}

/// A quota report: the 5 h window `used` percent, resetting in an hour.
fn used(percent: f64) -> Option<quota::QuotaSnapshot> {
    let resets = std::time::SystemTime::now() + Duration::from_secs(3600);
    Some(quota::QuotaSnapshot {
        primary: Some(quota::QuotaWindow {
            used_percent: percent,
            window_minutes: Some(300),
            resets_at: Some(humantime::format_rfc3339_seconds(resets).to_string()),
        }),
        secondary: None,
    })
}

fn report(p: &Pool, name: &str, percent: f64) {
    p.succeeded(&p.find(name).unwrap(), used(percent), None);
}

fn reserve(percent: f64) -> PoolPolicy {
    PoolPolicy {
        quota_reserve_percent: percent,
        ..default_policy()
    }
}

#[tokio::test(start_paused = true)]
async fn the_most_quota_room_goes_first_within_a_priority_and_in_steps() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0), spec("low", 1, 0)]);
    report(&p, "a", 62.0);
    report(&p, "b", 35.0);
    for _ in 0..8 {
        assert_eq!(name(&pick(&p, &[]).unwrap()), "b", "more room");
    }
    // Within one 10-point step the usual order (last use) applies: both are served.
    report(&p, "b", 68.0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        tokio::time::advance(Duration::from_millis(1)).await;
        seen.insert(name(&pick(&p, &[]).unwrap()));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Priority still comes first: an emptier account of a worse priority waits.
    report(&p, "low", 0.0);
    assert_ne!(name(&pick(&p, &[]).unwrap()), "low");
}

#[tokio::test(start_paused = true)]
async fn a_window_past_its_reset_counts_as_empty() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0)]);
    report(&p, "a", 90.0);
    report(&p, "b", 40.0);
    assert_eq!(name(&pick(&p, &[]).unwrap()), "b");
    tokio::time::advance(Duration::from_secs(3601)).await;
    assert_eq!(
        name(&pick(&p, &[]).unwrap()),
        "a",
        "a's window reset; b was used last"
    );
}

#[tokio::test(start_paused = true)]
async fn an_account_past_the_reserve_is_passed_over_while_another_has_room() {
    let p = Pool::new(
        with_clients(vec![spec("a", 0, 0), spec("b", 0, 0)]),
        reserve(5.0),
    )
    .unwrap();
    // 96 and 91 share a step; the reserve still tells them apart.
    report(&p, "a", 91.0);
    report(&p, "b", 96.0);
    for _ in 0..4 {
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(name(&pick(&p, &[]).unwrap()), "a");
    }
    // Control: without a reserve both are served (same step, by last use).
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0)]);
    report(&p, "a", 91.0);
    report(&p, "b", 96.0);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        tokio::time::advance(Duration::from_millis(1)).await;
        seen.insert(name(&pick(&p, &[]).unwrap()));
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_binding_moves_off_an_account_past_the_reserve_only_when_another_has_room() {
    let p = Pool::new(
        with_clients(vec![spec("a", 0, 0), spec("b", 0, 0)]),
        reserve(5.0),
    )
    .unwrap();
    let key = StickyKey::new(b"key-a", "conversation-1");
    p.sticky.bind(key, &"a".into(), Duration::from_secs(3600));
    report(&p, "a", 80.0);
    report(&p, "b", 10.0);
    let got = p.select(&wanted(&[], Some(&key)));
    assert!(
        matches!(got, Selection::Slot(ref s) if s.account().spec.name == "a"),
        "room left: the binding holds"
    );
    report(&p, "a", 97.0);
    report(&p, "b", 98.0);
    let got = p.select(&wanted(&[], Some(&key)));
    assert!(
        matches!(got, Selection::Slot(ref s) if s.account().spec.name == "a"),
        "no one has room: it holds"
    );
    assert!(p.sticky.get(&key).is_some());
    report(&p, "b", 50.0);
    let got = p.select(&wanted(&[], Some(&key)));
    assert!(
        matches!(got, Selection::Slot(ref s) if s.account().spec.name == "b"),
        "b has room: it moves"
    );
    assert_eq!(
        p.sticky.get(&key),
        None,
        "released, to be bound to b by the relay"
    );
}

#[tokio::test(start_paused = true)]
async fn a_used_up_account_is_passed_over_even_without_a_reserve() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0)]);
    report(&p, "a", 100.0);
    report(&p, "b", 99.0);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(name(&pick(&p, &[]).unwrap()), "b");
    }
}

fn probe(ok: bool) -> ProbeRecord {
    ProbeRecord {
        at: "2026-12-01T00:00:00Z".into(),
        ok,
        detail: String::new(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_passing_probe_ends_an_error_cooldown_but_not_a_quota_wait() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0)]);
    let (a, b) = (p.find("a").unwrap(), p.find("b").unwrap());
    a.apply(&AccountEffect::Overloaded, "529", &p.policy().cooldowns);
    b.apply(
        &AccountEffect::RateLimited(Some(Duration::from_secs(1800))),
        "429",
        &p.policy().cooldowns,
    );
    let cap = Duration::from_secs(3600);
    a.note_probe(probe(true), Duration::from_secs(60), cap);
    b.note_probe(probe(true), Duration::from_secs(60), cap);
    let now = tokio::time::Instant::now();
    assert_eq!(a.availability(now), Availability::Ready);
    assert!(matches!(b.availability(now), Availability::Cooling { .. }));
    assert_eq!(p.view(&a).last_probe, Some(probe(true)));
}

#[tokio::test(start_paused = true)]
async fn a_failing_probe_extends_an_error_cooldown_within_the_cap() {
    let p = pool(vec![spec("a", 0, 0)]);
    let a = p.find("a").unwrap();
    a.apply(&AccountEffect::Overloaded, "529", &p.policy().cooldowns);
    let left = |a: &Account| match a.availability(tokio::time::Instant::now()) {
        Availability::Cooling { left, .. } => left,
        other => panic!("{other:?}"),
    };
    let before = left(&a);
    a.note_probe(
        probe(false),
        Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    assert_eq!(left(&a), before + Duration::from_secs(60));
    a.note_probe(
        probe(false),
        Duration::from_secs(7200),
        Duration::from_secs(3600),
    );
    assert_eq!(
        left(&a),
        Duration::from_secs(3600),
        "never past the cap from now"
    );
}

/// Issue 16: an account must speak one of the wanted APIs; one speaking the client's own is
/// preferred over a better-priority one the request would be translated for.
#[tokio::test(start_paused = true)]
async fn accounts_speaking_the_clients_api_come_first() {
    let mut chat_only = spec("chat-only", 0, 0);
    chat_only.protocols = Some(vec![Protocol::Chat]);
    let mut native = spec("native", 9, 0);
    native.protocols = Some(vec![Protocol::Responses]);
    let p = pool(vec![chat_only, native]);
    let translating = |tried: &[AccountId]| match p.select(&Wanted {
        platform: None,
        protocols: &[Protocol::Responses, Protocol::Chat],
        ..wanted(tried, None)
    }) {
        Selection::Slot(s) => name(&s),
        _ => "none".into(),
    };
    assert_eq!(
        translating(&[]),
        "native",
        "native first, despite its priority"
    );
    let native_id = id(&p, "native");
    assert_eq!(
        translating(&[native_id]),
        "chat-only",
        "then the translated one"
    );
    // Without translation only the client's API counts: the chat-only account is not eligible.
    assert!(matches!(
        p.select(&wanted(&[native_id], None)),
        Selection::Exhausted
    ));
}

/// `n` answers of `name` (first token after `ttft`) and `failed` upstream failures.
fn outcomes(p: &Pool, name: &str, ok: u32, failed: u32, ttft: Duration) {
    let account = p.find(name).unwrap();
    for _ in 0..ok {
        p.succeeded(&account, None, Some(ttft));
    }
    for _ in 0..failed {
        // Strikes would cool it; a success clears them, as between real failures.
        p.failed(&account, &AccountEffect::Transient, "502", None);
        account.note_success(None);
    }
}

/// Who serves `rounds` requests one after another (a millisecond apart: least recently used
/// decides among equals).
async fn served_by(
    p: &Pool,
    tried: &[AccountId],
    rounds: usize,
) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..rounds {
        tokio::time::advance(Duration::from_millis(1)).await;
        let slot = pick(p, tried).unwrap();
        *counts.entry(name(&slot)).or_insert(0) += 1;
    }
    counts
}

const FAST: Duration = Duration::from_millis(300);

#[tokio::test(start_paused = true)]
async fn an_account_far_worse_than_its_peers_is_ranked_after_them_but_still_serves() {
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0), spec("bad", 0, 0)]);
    outcomes(&p, "a", 20, 0, FAST);
    outcomes(&p, "b", 20, 1, FAST);
    outcomes(&p, "bad", 10, 10, FAST);
    let counts = served_by(&p, &[], 30).await;
    assert_eq!(counts.get("bad"), None, "{counts:?}");
    assert_eq!(
        counts.len(),
        2,
        "the healthy ones share the traffic: {counts:?}"
    );
    let view = p.view(&p.find("bad").unwrap());
    assert!(view.performance.demoted);
    assert_eq!(view.performance.success_rate, Some(0.5));
    assert!(!p.view(&p.find("a").unwrap()).performance.demoted);
    // Not disabled: when the others were tried (or cool, or are full), it serves.
    let tried = [id(&p, "a"), id(&p, "b")];
    assert_eq!(name(&pick(&p, &tried).unwrap()), "bad");
    p.find("a").unwrap().apply(
        &AccountEffect::RateLimited(Some(Duration::from_secs(60))),
        "429",
        &p.policy().cooldowns,
    );
    assert_eq!(name(&pick(&p, &[id(&p, "b")]).unwrap()), "bad");
    // Five minutes without traffic: its record left the window, it is judged afresh.
    tokio::time::advance(performance::WINDOW).await;
    assert!(!p.view(&p.find("bad").unwrap()).performance.demoted);
    let counts = served_by(&p, &[id(&p, "a")], 10).await;
    assert_eq!(counts.get("bad"), Some(&5), "{counts:?}");
}

#[tokio::test(start_paused = true)]
async fn equal_accounts_share_the_traffic_and_a_slow_first_token_demotes() {
    // Positive control: similar records, nobody demoted, least recently used spreads the load.
    let p = pool(vec![spec("a", 0, 0), spec("b", 0, 0), spec("c", 0, 0)]);
    outcomes(&p, "a", 20, 1, FAST);
    outcomes(&p, "b", 20, 2, FAST);
    outcomes(&p, "c", 20, 2, Duration::from_millis(600));
    let counts = served_by(&p, &[], 30).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        [10, 10, 10],
        "{counts:?}"
    );
    // c's first tokens become far slower than the others'.
    outcomes(&p, "c", 40, 0, Duration::from_secs(5));
    let counts = served_by(&p, &[], 30).await;
    assert_eq!(counts.get("c"), None, "{counts:?}");
    let view = p.view(&p.find("c").unwrap());
    assert_eq!(
        view.performance.demoted_for,
        Some(performance::DemotionReason::Ttft)
    );
    // Priority still comes first: a demoted account of a better priority is chosen first.
    let p = pool(vec![spec("a", 1, 0), spec("b", 1, 0), spec("bad", 0, 0)]);
    outcomes(&p, "a", 20, 0, FAST);
    outcomes(&p, "b", 20, 0, FAST);
    outcomes(&p, "bad", 10, 10, FAST);
    assert_eq!(name(&pick(&p, &[]).unwrap()), "bad");
}

fn sticky_policy() -> PoolPolicy {
    PoolPolicy {
        sticky_ttl: Some(Duration::from_secs(3600)),
        ..default_policy()
    }
}

#[tokio::test(start_paused = true)]
async fn a_binding_to_a_demoted_account_moves_more_readily_the_worse_it_is() {
    let p = Pool::new(
        with_clients(vec![
            spec("good", 0, 0),
            spec("peer", 0, 0),
            spec("bad", 0, 0),
        ]),
        sticky_policy(),
    )
    .unwrap();
    let bad = p.find("bad").unwrap();
    outcomes(&p, "good", 20, 0, FAST);
    outcomes(&p, "peer", 20, 0, FAST);
    // Not far worse (15 % errors): bindings hold, every time.
    outcomes(&p, "bad", 17, 3, FAST);
    let key = StickyKey::new(b"k", "held");
    p.keep_sticky(Some(&key), &bad, Some(FAST), false);
    for _ in 0..50 {
        let slot = match p.select(&wanted(&[], Some(&key))) {
            Selection::Slot(slot) => slot,
            _ => panic!("no account"),
        };
        assert_eq!(name(&slot), "bad");
        assert!(!slot.demoted());
    }
    // Every answer fails now (100 %, the worst): the binding moves at the next request.
    tokio::time::advance(performance::WINDOW).await;
    outcomes(&p, "good", 20, 0, FAST);
    outcomes(&p, "peer", 20, 0, FAST);
    outcomes(&p, "bad", 0, 20, FAST);
    p.keep_sticky(Some(&key), &bad, Some(FAST), false);
    assert_eq!(
        p.sticky.get(&key).as_deref(),
        Some("bad"),
        "an existing binding is kept"
    );
    assert_ne!(name(&pick_for(&p, &key)), "bad");
    assert_eq!(p.sticky.get(&key), None, "released");
    // Just past the threshold (25 %: severity 1/16): most requests keep the binding, some
    // move it ({release_probability} ≈ 0.16 per request).
    let mut moved = 0;
    for round in 0..200 {
        tokio::time::advance(performance::WINDOW).await;
        outcomes(&p, "good", 20, 0, FAST);
        outcomes(&p, "peer", 20, 0, FAST);
        outcomes(&p, "bad", 15, 5, FAST);
        let key = StickyKey::new(b"k", &format!("c{round}"));
        p.keep_sticky(Some(&key), &bad, Some(FAST), false);
        if name(&pick_for(&p, &key)) != "bad" {
            moved += 1;
        }
    }
    assert!((10..100).contains(&moved), "{moved} of 200 moved");
}

fn pick_for(p: &Pool, key: &StickyKey) -> AccountSlot {
    match p.select(&wanted(&[], Some(key))) {
        Selection::Slot(slot) => slot,
        _ => panic!("no account"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_new_conversation_is_not_bound_to_a_demoted_account() {
    let p = Pool::new(
        with_clients(vec![
            spec("good", 0, 1),
            spec("peer", 0, 1),
            spec("bad", 0, 0),
        ]),
        sticky_policy(),
    )
    .unwrap();
    outcomes(&p, "good", 20, 0, FAST);
    outcomes(&p, "peer", 20, 0, FAST);
    outcomes(&p, "bad", 10, 10, FAST);
    // The healthy ones are full: the demoted one serves, and says so.
    let _good = pick(&p, &[]).unwrap();
    let _peer = pick(&p, &[]).unwrap();
    let key = StickyKey::new(b"k", "new");
    let slot = pick_for(&p, &key);
    assert_eq!(name(&slot), "bad");
    assert!(slot.demoted());
    p.keep_sticky(Some(&key), slot.account(), Some(FAST), slot.demoted());
    assert_eq!(
        p.sticky.get(&key),
        None,
        "no binding to the demoted account"
    );
}
