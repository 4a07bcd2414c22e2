//! Error-rate and first-token preference per account end to end (issue 21 item 6): the real
//! binary against the scripted mock, where one account answers 500 to every other request or
//! is slow to its first token. Traffic moves off it (it is ranked after its peers), it still
//! serves when the others are cooling, and the admin API and `/metrics` say it is demoted;
//! equal accounts share the traffic (the positive control).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests-0123";

/// API-key accounts of equal priority against the mock, the admin API and metrics on.
fn equal_accounts(mock: &MockUpstream, names: &[&str]) -> String {
    let mut yaml = format!(
        "admin:\n  token: {ADMIN}\nmetrics:\n  listen: 127.0.0.1:0\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n"
    );
    for name in names {
        yaml.push_str(&format!(
            "  - {{name: {name}, platform: openai, type: apikey, api_key: tok-{name}, base_url: '{}/v1'}}\n",
            mock.url()
        ));
    }
    yaml
}

async fn ask(gw: &Gateway) {
    let response = client()
        .post(gw.responses_url())
        .bearer_auth(KEY)
        .json(&body("gpt-5", true))
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status != 200 {
        let text = response.text().await.unwrap();
        panic!("{status}: {text}\n{}", gw.logs().join("\n"));
    }
    // The stream to its end: the attempt's outcome is known then.
    response.text().await.unwrap();
}

fn calls(mock: &MockUpstream, names: &[&str]) -> Vec<usize> {
    names
        .iter()
        .map(|n| mock.calls(&format!("tok-{n}")))
        .collect()
}

async fn performance(gw: &Gateway, name: &str) -> Value {
    let v: Value = client()
        .get(format!("{}/admin/api/accounts", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["performance"]
        .clone()
}

async fn demoted_gauge(gw: &Gateway, name: &str) -> String {
    let line = gw.wait_for_log("Prometheus metrics on http://").await;
    let at = line.find("http://").unwrap();
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let text = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("subrelay_account_demoted{{account=\"{name}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .to_owned()
}

fn error(status: u16) -> Behavior {
    Behavior {
        status: Some(status),
        ..Behavior::default()
    }
}

/// `bad` answers 500 to every other request (never three in a row: it never cools). Once the
/// window holds enough, it gets no traffic while the others have room; when they cool (429) it
/// serves; the admin API and the gauge say it is demoted.
#[tokio::test]
async fn traffic_moves_off_an_account_with_many_5xx_but_it_still_serves() {
    let mock = MockUpstream::start().await;
    let names = ["a", "b", "bad"];
    let mut script = Vec::new();
    // Five failures: with the answers between them, the ten attempts that make a record.
    for _ in 0..5 {
        script.push(error(500));
        script.push(Behavior::default());
    }
    mock.script("tok-bad", script);
    let gw = Gateway::start(&equal_accounts(&mock, &names));
    assert_eq!(demoted_gauge(&gw, "bad").await, "0");
    for _ in 0..40 {
        ask(&gw).await;
    }
    let after_warmup = calls(&mock, &names);
    assert!(
        after_warmup[2] >= 10,
        "bad was tried enough: {after_warmup:?}"
    );
    let bad = performance(&gw, "bad").await;
    assert_eq!(bad["demoted"], true, "{bad}");
    assert_eq!(bad["demoted_for"], "error_rate", "{bad}");
    assert!(bad["success_rate"].as_f64().unwrap() < 0.7, "{bad}");
    assert_eq!(performance(&gw, "a").await["demoted"], false);
    assert_eq!(demoted_gauge(&gw, "bad").await, "1");
    assert_eq!(demoted_gauge(&gw, "a").await, "0");

    for _ in 0..20 {
        ask(&gw).await;
    }
    let after = calls(&mock, &names);
    assert_eq!(after[2], after_warmup[2], "bad got no traffic: {after:?}");
    assert!(
        after[0] >= after_warmup[0] + 8 && after[1] >= after_warmup[1] + 8,
        "a and b shared it: {after_warmup:?} → {after:?}"
    );

    // The healthy ones hit their limit: the demoted one answers.
    let limited = Behavior {
        status: Some(429),
        headers: vec![("retry-after".into(), "600".into())],
        ..Behavior::default()
    };
    mock.script("tok-a", vec![limited.clone()]);
    mock.script("tok-b", vec![limited]);
    ask(&gw).await;
    assert_eq!(
        calls(&mock, &names),
        [after[0] + 1, after[1] + 1, after[2] + 1]
    );
    ask(&gw).await;
    assert_eq!(
        calls(&mock, &names)[2],
        after[2] + 2,
        "while they cool, it serves"
    );
}

/// `slow` sends its first token 1.5 s late. After a burst that gives every account enough
/// answers, it gets no traffic while the others have room.
#[tokio::test]
async fn traffic_moves_off_an_account_slow_to_its_first_token() {
    let mock = MockUpstream::start().await;
    let names = ["a", "b", "slow"];
    let slow = Behavior {
        delay_headers: Duration::from_millis(1500),
        ..Behavior::default()
    };
    mock.script("tok-slow", vec![slow; 30]);
    let gw = Gateway::start(&equal_accounts(&mock, &names));
    // At once: selection spreads them by last use before any outcome is known.
    let burst: Vec<_> = (0..39).map(|_| ask(&gw)).collect();
    futures_util::future::join_all(burst).await;
    let after_burst = calls(&mock, &names);
    assert!(after_burst[2] >= 10, "{after_burst:?}");
    let slow = performance(&gw, "slow").await;
    assert_eq!(slow["demoted"], true, "{slow}");
    assert_eq!(slow["demoted_for"], "ttft", "{slow}");
    assert!(slow["ttft_p50_ms"].as_u64().unwrap() >= 1000, "{slow}");
    for _ in 0..15 {
        ask(&gw).await;
    }
    assert_eq!(
        calls(&mock, &names)[2],
        after_burst[2],
        "slow got no traffic"
    );
}

/// The positive control: equal accounts share the traffic, and none is demoted.
#[tokio::test]
async fn equal_accounts_share_the_traffic() {
    let mock = MockUpstream::start().await;
    let names = ["a", "b", "c"];
    let gw = Gateway::start(&equal_accounts(&mock, &names));
    for _ in 0..45 {
        ask(&gw).await;
    }
    let counts = calls(&mock, &names);
    assert!(counts.iter().all(|n| *n >= 12), "{counts:?}");
    for name in names {
        let p = performance(&gw, name).await;
        assert_eq!(p["demoted"], false, "{p}");
        assert_eq!(p["success_rate"], 1.0, "{p}");
    }
}
