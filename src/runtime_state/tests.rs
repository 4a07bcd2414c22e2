//! The local backend, under paused time.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_lease_is_released_when_dropped_and_the_limit_holds_until_then() {
    let runtime = RuntimeState::default();
    let slots = runtime.leases("acct", &Signal::default());
    let first = slots.try_acquire(2).unwrap();
    let second = slots.try_acquire(2).unwrap();
    assert_eq!(slots.in_flight(), 2);
    assert!(slots.try_acquire(2).is_none(), "the limit of 2 holds");
    drop(first);
    assert_eq!(slots.in_flight(), 1);
    assert!(
        slots.try_acquire(2).is_some(),
        "the dropped lease's slot is free again"
    );
    drop(second);
    assert_eq!(
        slots.in_flight(),
        0,
        "the lease taken above was dropped too"
    );
    // 0: no limit.
    let many: Vec<_> = (0..10).map(|_| slots.try_acquire(0).unwrap()).collect();
    assert_eq!(slots.in_flight(), 10);
    drop(many);
    assert_eq!(slots.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_lease_never_dropped_expires_after_its_ttl_unless_renewed() {
    let ttl = Duration::from_secs(30);
    let slots = LeaseSet::expiring("acct", ttl, &Signal::default());
    let forgotten = slots.try_acquire(2).unwrap();
    let renewed = slots.try_acquire(2).unwrap();
    // An instance that died would never drop its lease: forgetting it stands for that.
    std::mem::forget(forgotten);
    tokio::time::advance(Duration::from_secs(20)).await;
    renewed.renew();
    assert!(slots.try_acquire(2).is_none(), "both still held at 20 s");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(slots.in_flight(), 1, "the forgotten one expired at 30 s");
    let third = slots.try_acquire(2);
    assert!(third.is_some(), "its slot is free again");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(
        slots.in_flight(),
        1,
        "at 51 s: the one renewed at 20 s ended at 50 s, the third (taken at 31 s) lives to 61 s"
    );
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_wakes_a_waiter() {
    let freed = Signal::default();
    let slots = Arc::new(RuntimeState::default().leases("key", &freed));
    let held = slots.try_acquire(1).unwrap();
    let waiter = {
        let slots = Arc::clone(&slots);
        tokio::spawn(async move { slots.acquire(1).await })
    };
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished(), "no slot is free yet");
    drop(held);
    let lease = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the release woke the waiter")
        .unwrap();
    assert_eq!(slots.in_flight(), 1);
    drop(lease);
    assert_eq!(slots.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_signal_wakes_a_waiter_registered_before_it() {
    let signal = Signal::default();
    let notified = signal.notified();
    let mut notified = std::pin::pin!(notified);
    notified.as_mut().enable();
    signal.notify();
    tokio::time::timeout(Duration::from_secs(1), notified)
        .await
        .expect("a waiter registered before the notification wakes");
    // Control: without a notification, a waiter keeps waiting.
    let quiet = tokio::time::timeout(Duration::from_secs(1), signal.notified()).await;
    assert!(quiet.is_err());
}

/// The local backend never seals; a plain string stands for the value.
impl SealedValue for String {
    fn seal(&self, _: &str, _: &dyn Seal) -> Result<String, String> {
        Ok(self.clone())
    }
    fn open(_: &str, sealed: &str, _: &dyn Seal) -> Result<Self, String> {
        Ok(sealed.to_owned())
    }
}

#[test]
fn compare_and_set_moves_the_generation_once() {
    let cell = RuntimeState::default().versioned("acct", "old".to_owned());
    assert_eq!(cell.load(), ("old".to_owned(), 0));
    assert_eq!(cell.compare_and_set(0, "new".to_owned()), Ok(1));
    assert_eq!(
        cell.compare_and_set(0, "stale".to_owned()),
        Err(1),
        "a writer that saw generation 0 loses to the one that moved it"
    );
    assert_eq!(cell.load(), ("new".to_owned(), 1));
}

#[tokio::test(start_paused = true)]
async fn the_refresh_lock_lets_one_holder_in_at_a_time() {
    let lock = Arc::new(RuntimeState::default().refresh_lock("acct"));
    let held = lock.lock().await;
    let second = {
        let lock = Arc::clone(&lock);
        tokio::spawn(async move {
            let _guard = lock.lock().await;
        })
    };
    tokio::task::yield_now().await;
    assert!(!second.is_finished(), "waits while the first holds it");
    drop(held);
    tokio::time::timeout(Duration::from_secs(1), second)
        .await
        .expect("gets in once the first lets go")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn expiring_values_live_their_ttl_from_the_last_update_and_take_spends_them() {
    let map: ExpiringMap<String, u32> = RuntimeState::default().expiring("test");
    let ttl = Duration::from_secs(60);
    map.update(&"a".to_owned(), Some(ttl), |v| *v = Some(1));
    map.update(&"b".to_owned(), Some(ttl), |v| *v = Some(2));
    tokio::time::advance(Duration::from_secs(40)).await;
    // Changed in place with a new ttl; `None` keeps the expiry.
    map.update(&"a".to_owned(), Some(ttl), |v| *v = v.map(|n| n + 10));
    map.update(&"b".to_owned(), None, |v| *v = v.map(|n| n + 10));
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(
        map.update(&"a".to_owned(), None, |v| *v),
        Some(11),
        "refreshed at 40 s"
    );
    assert_eq!(
        map.update(&"b".to_owned(), None, |v| *v),
        None,
        "expired at 60 s"
    );
    assert_eq!(map.take(&"a".to_owned()), Some(11));
    assert_eq!(map.take(&"a".to_owned()), None, "taken once");
    map.update(&"c".to_owned(), Some(ttl), |v| *v = Some(3));
    map.update(&"c".to_owned(), None, |v| *v = None);
    assert_eq!(map.len(), 0, "set to None: removed");
}

#[tokio::test(start_paused = true)]
async fn the_request_window_admits_up_to_its_limit_then_says_how_long_to_wait() {
    let windows = RuntimeState::default().key_windows();
    let minute = Duration::from_secs(60);
    let start = Instant::now();
    assert_eq!(windows.admit("k", 2, minute, start), Ok(()));
    assert_eq!(
        windows.admit("k", 2, minute, start + Duration::from_secs(10)),
        Ok(())
    );
    assert_eq!(
        windows.admit("k", 2, minute, start + Duration::from_secs(20)),
        Err(Duration::from_secs(40))
    );
    assert_eq!(
        windows.admit("other", 2, minute, start + Duration::from_secs(20)),
        Ok(()),
        "per key"
    );
    assert_eq!(
        windows.admit("k", 2, minute, start + Duration::from_secs(60)),
        Ok(()),
        "the first left the window"
    );
}

#[test]
fn totals_count_per_day_and_month_and_forget_ended_periods() {
    let windows = RuntimeState::default().key_windows();
    windows.add("k", 10, 3, 1.5, 1.5);
    windows.add("k", 10, 3, 0.5, 0.5);
    assert_eq!(windows.totals("k", 10, 3), (2.0, 2.0));
    assert_eq!(windows.totals("k", 11, 3), (0.0, 2.0), "a new day");
    windows.add("k", 11, 3, 1.0, 1.0);
    assert_eq!(windows.totals("k", 11, 3), (1.0, 3.0));
    assert_eq!(windows.totals("k", 40, 4), (0.0, 0.0), "a new month");
    assert_eq!(windows.totals("nobody", 11, 3), (0.0, 0.0));
}

#[test]
fn the_wait_queue_is_bounded_and_a_ticket_leaves_it_when_dropped() {
    let queue = RuntimeState::default().wait_queue("pool");
    let (first, full) = queue.join(1);
    assert!(!full);
    let (second, full) = queue.join(1);
    assert!(full, "one waits already");
    assert_eq!(queue.waiting(), 2);
    drop(second);
    drop(first);
    assert_eq!(queue.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_key_admission_counts_the_window_only_when_it_takes_the_slot() {
    let runtime = RuntimeState::default();
    let windows = runtime.key_windows();
    let slots = runtime.leases("key:k", &runtime.signal("key:k"));
    let minute = Duration::from_secs(60);
    let admit = || windows.admit_key("k", 2, minute, Some((&slots, 1)));
    let Admission::Admitted(Some(held)) = admit().await else {
        panic!("the first is admitted with the slot");
    };
    for _ in 0..3 {
        assert!(matches!(admit().await, Admission::Busy), "the slot is held");
    }
    drop(held);
    let Admission::Admitted(Some(second)) = admit().await else {
        panic!("the busy looks counted nothing: the second fits the window");
    };
    drop(second);
    assert!(
        matches!(admit().await, Admission::OverRate(_)),
        "two admitted fill the window of 2"
    );
}

#[tokio::test(start_paused = true)]
async fn a_key_over_its_rate_is_told_so_even_while_its_slots_are_held() {
    let runtime = RuntimeState::default();
    let windows = runtime.key_windows();
    let slots = runtime.leases("key:k", &runtime.signal("key:k"));
    let minute = Duration::from_secs(60);
    let Admission::Admitted(Some(_held)) =
        windows.admit_key("k", 1, minute, Some((&slots, 1))).await
    else {
        panic!("admitted");
    };
    assert!(matches!(
        windows.admit_key("k", 1, minute, Some((&slots, 1))).await,
        Admission::OverRate(_)
    ));
    assert!(windows
        .admit_key_waiting("k", 1, minute, Some((&slots, 1)))
        .await
        .is_err());
}

#[test]
fn raised_totals_keep_the_larger_and_follow_the_newest_period() {
    let windows = RuntimeState::default().key_windows();
    windows.seed("k", 10, 3, 2.0, 5.0);
    windows.seed("k", 10, 3, 1.0, 6.0);
    assert_eq!(windows.totals("k", 10, 3), (2.0, 6.0));
    windows.add("k", 10, 3, 0.5, 0.5);
    assert_eq!(windows.totals("k", 10, 3), (2.5, 6.5));
    windows.seed("k", 9, 3, 9.0, 0.0);
    assert_eq!(
        windows.totals("k", 10, 3),
        (2.5, 6.5),
        "an older day is ignored"
    );
    windows.seed("k", 11, 3, 1.0, 0.0);
    assert_eq!(
        windows.totals("k", 11, 3),
        (1.0, 6.5),
        "a newer day replaces it"
    );
}
