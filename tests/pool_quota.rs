//! Quota-aware selection end to end (issue 21 item 1): sign-in accounts whose usage windows move
//! with use (the mock's `Quota`), picked by the room left in their tightest window, with
//! `gateway.quota_reserve_percent` moving a conversation off an account near its limit.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::Value;
use subrelay_mock::Quota;

/// Codex sign-in accounts of equal priority against the mock, with `gateway_extra` under
/// `gateway:`.
fn equal_oauth(mock: &MockUpstream, names: &[&str], gateway_extra: &str) -> String {
    let mut yaml = format!(
        "gateway:\n{gateway_extra}\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n"
    );
    for name in names {
        yaml.push_str(&format!(
            "  - {{name: {name}, platform: openai, type: oauth, access_token: tok-{name}, chatgpt_account_id: acct-{name}, base_url: '{}/backend-api/codex'}}\n",
            mock.url()
        ));
    }
    yaml
}

fn five_hour(used: f64, per_call: f64) -> Quota {
    Quota {
        five_hour: used,
        per_call,
        ..Quota::default()
    }
}

async fn ask(gw: &Gateway, session: Option<&str>) {
    let mut request = client()
        .post(gw.responses_url())
        .bearer_auth(KEY)
        .json(&body("gpt-5", false));
    if let Some(session) = session {
        request = request.header("session_id", session);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Which of these accounts served the last request (by the mock's call counts before and after).
fn served(mock: &MockUpstream, names: &[&str], before: &[usize]) -> String {
    let grew: Vec<&str> = names
        .iter()
        .zip(before)
        .filter(|(n, b)| mock.calls(&format!("tok-{n}")) > **b)
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(grew.len(), 1, "one account served: {grew:?}");
    grew[0].to_owned()
}

fn counts(mock: &MockUpstream, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| mock.calls(&format!("tok-{n}")))
        .collect()
}

/// Once each account has reported its windows, the one with the most room serves; the nearly
/// used-up one is not chosen again while the others have more room. (Today's order, by load and
/// last use, would have served 3 each.)
#[tokio::test]
async fn the_account_with_the_most_room_serves() {
    let mock = MockUpstream::start().await;
    let names = ["a", "b", "c"];
    mock.set_quota("tok-a", five_hour(70.0, 10.0));
    mock.set_quota("tok-b", five_hour(20.0, 10.0));
    mock.set_quota("tok-c", five_hour(45.0, 10.0));
    let gw = Gateway::start(&equal_oauth(&mock, &names, "  sticky_session_ttl: 0\n"));
    for _ in 0..9 {
        ask(&gw, None).await;
    }
    // 1-3: one each (nothing known yet): a 80, b 30, c 55. Then the emptiest 10-point step,
    // least recently used among equals: b 40, b 50, c 65, b 60, c 75, b 70.
    assert_eq!(counts(&mock, &names), [1, 5, 3]);
    assert_eq!(
        mock.quota("tok-a").unwrap().five_hour,
        80.0,
        "a's window moved once"
    );
}

/// With a reserve, a conversation bound to an account that went past 100 − reserve moves to an
/// account with room; without one (control), the binding holds although the other has more room.
#[tokio::test]
async fn a_conversation_leaves_an_account_past_its_reserve_and_only_then() {
    for (reserve, moves) in [(5, true), (0, false)] {
        let mock = MockUpstream::start().await;
        let names = ["a", "b"];
        // Whichever serves first reports 96 % used; the other reports nothing yet.
        mock.set_quota("tok-a", five_hour(90.0, 6.0));
        mock.set_quota("tok-b", five_hour(90.0, 6.0));
        let gw = Gateway::start(&equal_oauth(
            &mock,
            &names,
            &format!("  quota_reserve_percent: {reserve}\n"),
        ));
        let before = counts(&mock, &names);
        ask(&gw, Some("conversation-1")).await;
        let first = served(&mock, &names, &before);
        let before = counts(&mock, &names);
        ask(&gw, Some("conversation-1")).await;
        let second = served(&mock, &names, &before);
        assert_eq!(
            first != second,
            moves,
            "reserve {reserve}: {first} then {second}"
        );
        if moves {
            // Both are past the reserve now: the binding stays where it moved.
            let before = counts(&mock, &names);
            ask(&gw, Some("conversation-1")).await;
            assert_eq!(served(&mock, &names, &before), second);
        }
    }
}

/// The admin API shows each account's windows with their resets (the dashboard's quota bars).
#[tokio::test]
async fn the_windows_and_their_resets_are_shown() {
    let mock = MockUpstream::start().await;
    mock.set_quota("tok-a", five_hour(30.0, 2.0));
    let gw = Gateway::start(&format!(
        "admin:\n  token: admin-token-for-tests-0123\n{}",
        equal_oauth(&mock, &["a"], "")
    ));
    ask(&gw, None).await;
    let v: Value = client()
        .get(format!("{}/admin/api/accounts", gw.url))
        .bearer_auth("admin-token-for-tests-0123")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let quota = &v["accounts"][0]["quota"];
    assert_eq!(quota["primary"]["used_percent"], 32.0, "{v}");
    assert_eq!(quota["primary"]["window_minutes"], 300, "{v}");
    assert!(quota["primary"]["resets_at"].is_string(), "{v}");
    assert_eq!(quota["secondary"]["window_minutes"], 10080, "{v}");
}
