//! Selection order, slots and cooldowns, under paused time.

use std::time::Duration;

use super::*;
use crate::config::Secret;

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
    }
}

fn pick(pool: &Pool, tried: &[AccountId]) -> Option<AccountSlot> {
    match pool.select("default", Platform::OpenAi, "gpt-5", tried) {
        Selection::Slot(slot) => Some(slot),
        _ => None,
    }
}

fn name(slot: &AccountSlot) -> &str {
    &slot.account().spec.name
}

#[tokio::test(start_paused = true)]
async fn lower_priority_first_then_least_recently_used() {
    let pool = Pool::new(vec![spec("b", 1, 0), spec("a", 0, 0), spec("c", 1, 0)]);
    assert_eq!(name(&pick(&pool, &[]).unwrap()), "a");
    // Without "a", the two priority-1 accounts alternate by last use.
    let a = pool.find("a").unwrap().id;
    let first = pick(&pool, &[a]).unwrap().account().spec.name.clone();
    tokio::time::advance(Duration::from_millis(1)).await;
    let second = pick(&pool, &[a]).unwrap().account().spec.name.clone();
    assert_ne!(first, second);
}

#[tokio::test(start_paused = true)]
async fn ties_are_spread_at_random() {
    let pool = Pool::new(vec![spec("a", 0, 0), spec("b", 0, 0)]);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..64 {
        // Fresh pool each time: both never used, so only the random tie-break decides.
        let fresh = Pool::new(vec![spec("a", 0, 0), spec("b", 0, 0)]);
        seen.insert(name(&pick(&fresh, &[]).unwrap()).to_owned());
    }
    assert_eq!(seen.len(), 2);
    drop(pool);
}

#[tokio::test(start_paused = true)]
async fn tried_accounts_are_skipped_and_exhaustion_is_reported() {
    let pool = Pool::new(vec![spec("a", 0, 0)]);
    let a = pool.find("a").unwrap().id;
    assert!(matches!(
        pool.select("default", Platform::OpenAi, "m", &[a]),
        Selection::Exhausted
    ));
    assert!(matches!(
        pool.select("other-group", Platform::OpenAi, "m", &[]),
        Selection::NoAccount
    ));
}

#[tokio::test(start_paused = true)]
async fn slots_are_given_back_when_dropped_even_on_panic() {
    let pool = Arc::new(Pool::new(vec![spec("a", 0, 1)]));
    let slot = pick(&pool, &[]).unwrap();
    assert!(matches!(
        pool.select("default", Platform::OpenAi, "m", &[]),
        Selection::AllBusy
    ));
    drop(slot);
    assert_eq!(pool.accounts()[0].in_flight(), 0);
    let p = Arc::clone(&pool);
    let panicked = tokio::spawn(async move {
        let _slot = pick(&p, &[]).unwrap();
        panic!("relay bug");
    })
    .await;
    assert!(panicked.is_err());
    assert_eq!(pool.accounts()[0].in_flight(), 0);
    assert!(pick(&pool, &[]).is_some());
}

#[tokio::test(start_paused = true)]
async fn cooldowns_skip_the_account_and_heal_after_their_time() {
    let pool = Pool::new(vec![spec("a", 0, 0), spec("b", 1, 0)]);
    let a = pool.find("a").unwrap();
    a.apply(
        &AccountEffect::RateLimited(Some(Duration::from_secs(120))),
        "429",
    );
    assert_eq!(name(&pick(&pool, &[]).unwrap()), "b");
    let b = pool.find("b").unwrap();
    b.apply(&AccountEffect::Overloaded, "529");
    match pool.select("default", Platform::OpenAi, "m", &[]) {
        Selection::AllCooling { earliest } => assert_eq!(earliest, Duration::from_secs(120)),
        _ => panic!("expected every account cooling"),
    }
    tokio::time::advance(Duration::from_secs(121)).await;
    assert_eq!(name(&pick(&pool, &[]).unwrap()), "a");
    // A short pause never shortens a longer one.
    b.apply(&AccountEffect::Transient, "502");
    assert_eq!(b.cooldown().unwrap().1, CooldownReason::Overloaded);
}

#[tokio::test(start_paused = true)]
async fn model_lists_and_disabled_accounts_filter_candidates() {
    let mut only_mini = spec("mini", 0, 0);
    only_mini.models = Some(vec!["gpt-5-mini".into()]);
    let mut off = spec("off", 0, 0);
    off.enabled = false;
    let pool = Pool::new(vec![only_mini, off, spec("any", 5, 0)]);
    let got = pool.select("default", Platform::OpenAi, "gpt-5-mini", &[]);
    assert!(matches!(got, Selection::Slot(ref s) if s.account().spec.name == "mini"));
    let got = pool.select("default", Platform::OpenAi, "gpt-5", &[]);
    assert!(matches!(got, Selection::Slot(ref s) if s.account().spec.name == "any"));
}
