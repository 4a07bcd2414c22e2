//! Scale-out (issue 17): three instances of the real binary share one PostgreSQL database
//! (`storage.backend: postgres`) and one Redis prefix (`state.backend: redis`) behind a real
//! nginx balancing round robin over them; the client talks only to nginx, the admin API too.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::{Duration, Instant};

use common::nginx::Nginx;
use common::postgres::PgServer;
use common::redis::{prefix, Redis};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-scale-tests";
const ENCRYPTION_KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// One instance's config: the shared database and Redis prefix, its own data directory, two
/// accounts (`a` first; `b` second, with one slot), and a queue that waits long enough for `b`.
fn instance_config(
    mock: &MockUpstream,
    data_dir: &std::path::Path,
    db_url: &str,
    redis: &Redis,
    redis_prefix: &str,
) -> String {
    format!(
        "admin:\n  token: {ADMIN}\ngateway:\n  queue_wait_timeout: 60\nstorage:\n  backend: postgres\n  postgres_url: {db_url}\n  encryption_key: {ENCRYPTION_KEY}\n  usage_batch_interval_ms: 50\n  data_dir: {}\n{}accounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{u}/v1', priority: 0}}\n  - {{name: b, platform: openai, type: apikey, api_key: tok-b, base_url: '{u}/v1', priority: 1, concurrency: 1}}\n",
        data_dir.display(),
        common::redis::state_yaml(&redis.url(), redis_prefix, Some(30)),
        u = mock.url()
    )
}

/// Starts one gateway per config at the same time (their migrations race, as in production).
fn start_together(configs: Vec<String>) -> Vec<Gateway> {
    let threads: Vec<_> = configs
        .into_iter()
        .map(|yaml| std::thread::spawn(move || Gateway::start(&yaml)))
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// An admin API call through `base`: the status and the JSON answer.
async fn admin(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, format!("{base}{path}"))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, value)
}

/// A relayed request through `base` with the API key `key`: the status and the whole body.
async fn relay(base: &str, key: &str, stream: bool) -> (u16, String) {
    let r = client()
        .post(format!("{base}/v1/responses"))
        .bearer_auth(key)
        .json(&body("gpt-5", stream))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The state of account `name` as the instance nginx picked answers it.
async fn account_state(base: &str, name: &str) -> Value {
    let (status, v) = admin(base, reqwest::Method::GET, "/admin/api/accounts", None).await;
    assert_eq!(status, 200, "{v}");
    v["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["state"]
        .clone()
}

/// The request count of `key` in a `totals?by=key` answer.
fn totals_of(totals: &Value, key: &str) -> Option<i64> {
    let rows = totals
        .as_array()
        .or_else(|| totals["totals"].as_array())
        .or_else(|| totals["rows"].as_array())?;
    rows.iter()
        .find(|r| r["bucket"] == key || r["key"] == key)
        .and_then(|r| r["requests"].as_i64())
}

/// Polls `check` every 50 ms until it is true (at most 20 s, generous for a loaded machine).
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_instances_behind_nginx_act_as_one_gateway() {
    let Some(server) = PgServer::any() else {
        return;
    };
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let db = server.database();
    let redis_prefix = prefix();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways = start_together(
        dirs.iter()
            .map(|d| instance_config(&mock, d.path(), &db.url(), &redis, &redis_prefix))
            .collect(),
    );
    let urls: Vec<&str> = gateways.iter().map(|g| g.url.as_str()).collect();
    let Some(nginx) = Nginx::start_balanced(&urls, 90) else {
        return;
    };
    let lb = nginx.url.as_str();
    // Every request made with the new key that reached an instance knowing it (so not a 401).
    let mut served = 0i64;

    // A key created through nginx (on whichever instance) works on every instance: three
    // requests in a row, round robin, each answered 200.
    let (status, answer) = admin(
        lb,
        reqwest::Method::POST,
        "/admin/api/keys",
        Some(json!({"name": "shared", "group": "default"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let key = answer["api_key"].as_str().unwrap().to_owned();
    let mut in_a_row = 0;
    eventually("three instances in a row accept the new key", async || {
        let (status, text) = relay(lb, &key, false).await;
        match status {
            200 => {
                served += 1;
                in_a_row += 1;
            }
            401 => in_a_row = 0,
            other => panic!("{other}: {text}"),
        }
        in_a_row >= 3
    })
    .await;
    for gw in &gateways {
        eventually("every instance served the key", async || {
            gw.usage_records().iter().any(|r| r["key"] == "shared")
        })
        .await;
    }
    assert_eq!(mock.calls("tok-b"), 0, "`a` served while it was well");

    // A 429 seen by one instance cools `a` on all of them: the next requests through nginx, on
    // every instance, go to `b` without trying `a`.
    mock.script(
        "tok-a",
        vec![Behavior {
            status: Some(429),
            headers: vec![("retry-after".into(), "600".into())],
            ..Default::default()
        }],
    );
    let (status, text) = relay(lb, &key, false).await;
    assert_eq!(status, 200, "failed over to b: {text}");
    served += 1;
    let tried_a = mock.calls("tok-a");
    let mut cooling_in_a_row = 0;
    eventually("every instance sees `a` cooling", async || {
        if account_state(lb, "a").await == "cooling" {
            cooling_in_a_row += 1;
        } else {
            cooling_in_a_row = 0;
        }
        cooling_in_a_row >= 3
    })
    .await;
    for _ in 0..6 {
        let (status, text) = relay(lb, &key, false).await;
        assert_eq!(status, 200, "{text}");
        served += 1;
    }
    assert_eq!(mock.calls("tok-a"), tried_a, "no instance tried `a` again");

    // `b` has one slot: nine slow streams spread over the three instances are served one at a
    // time upstream.
    mock.reset();
    let slow = Behavior {
        event_interval: Duration::from_millis(40),
        ..Default::default()
    };
    mock.script("tok-b", vec![slow; 9]);
    let mut requests = Vec::new();
    for _ in 0..9 {
        let (lb, key) = (lb.to_owned(), key.clone());
        requests.push(tokio::spawn(async move { relay(&lb, &key, true).await }));
    }
    for request in requests {
        let (status, text) = request.await.unwrap();
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("response.completed"), "{text}");
        served += 1;
    }
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (0, 9));
    assert_eq!(
        mock.max_in_flight(),
        1,
        "`b`'s one slot held across the three instances"
    );

    // The shared ledger counts every request once: no row lost, none written twice.
    eventually("the totals by key count every request", async || {
        let (status, totals) = admin(
            lb,
            reqwest::Method::GET,
            "/admin/api/usage/totals?by=key",
            None,
        )
        .await;
        assert_eq!(status, 200, "{totals}");
        let counted = totals_of(&totals, "shared").unwrap_or(0);
        assert!(counted <= served, "{counted} counted for {served} requests");
        counted == served
    })
    .await;
    assert_eq!(
        db.psql("SELECT COUNT(*) FROM usage WHERE key_name = 'shared'"),
        served.to_string()
    );
    let errors = nginx.error_log();
    assert!(!errors.contains("[error]"), "{errors}");
}

/// Two instances sharing PostgreSQL and Redis: a key's daily spending counts across both. Every
/// request costs the same (`gpt-5` priced per input token, the mock's usage fixed), so B alone
/// would serve `n` requests before its limit; spending on A makes B refuse at once.
#[tokio::test]
async fn spending_on_one_instance_counts_against_the_key_on_the_other() {
    let Some(server) = PgServer::any() else {
        return;
    };
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let db = server.database();
    let redis_prefix = prefix();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let limit = 55.0;
    let extra = format!(
        "prices:\n  gpt-5: {{input: 1000000, cached_input: 1000000, output: 0}}\napi_keys:\n  - {{key: {KEY}, name: spender, daily_spend_limit: {limit}}}\n"
    );
    let gateways = start_together(
        dirs.iter()
            .map(|d| instance_config(&mock, d.path(), &db.url(), &redis, &redis_prefix) + &extra)
            .collect(),
    );
    let (a, b) = (gateways[0].url.as_str(), gateways[1].url.as_str());

    // The positive control: below the limit, B serves.
    let (status, text) = relay(b, KEY, false).await;
    assert_eq!(status, 200, "{text}");
    let cost = gateways[1].wait_for_usage(1).await[0]["cost_usd"]
        .as_f64()
        .unwrap();
    assert!(cost > 0.0 && cost < limit / 3.0, "{cost}");
    // Requests B alone would serve before its own count reached the limit.
    let alone = (limit / cost).ceil() as usize;

    // A serves until the key's day is spent (A counts B's request too, or not yet: either way
    // it stops at the limit).
    let mut served_on_a = 0;
    loop {
        let (status, text) = relay(a, KEY, false).await;
        if status == 429 {
            assert!(text.contains("key_daily_spend_limit"), "{text}");
            break;
        }
        assert_eq!(status, 200, "{text}");
        served_on_a += 1;
        assert!(served_on_a <= alone, "A never stopped");
    }
    assert!(served_on_a >= 1);
    gateways[0].wait_for_usage(served_on_a).await;

    // B refuses too, having served only one request itself: it sees A's spending.
    let mut served_on_b = 0;
    eventually("B refuses the spent key", async || {
        let (status, text) = relay(b, KEY, false).await;
        match status {
            200 => {
                served_on_b += 1;
                false
            }
            429 => {
                assert!(text.contains("key_daily_spend_limit"), "{text}");
                true
            }
            other => panic!("{other}: {text}"),
        }
    })
    .await;
    assert!(
        1 + served_on_b < alone,
        "B served {served_on_b} more (A served {served_on_a} at ${cost} each); alone it would have served {} more",
        alone - 1
    );
    assert_eq!(mock.calls("tok-a"), 1 + served_on_a + served_on_b);
}

/// With Redis, a write through one instance is announced on `{prefix}changes` and the others
/// look at once: with the change poll set to ten minutes, a key created on A still works on B
/// (only the announcement can have told B).
#[tokio::test]
async fn a_change_announced_through_redis_applies_without_waiting_for_the_poll() {
    let Some(server) = PgServer::any() else {
        return;
    };
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let db = server.database();
    let redis_prefix = prefix();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let gateways = start_together(
        dirs.iter()
            .map(|d| {
                instance_config(&mock, d.path(), &db.url(), &redis, &redis_prefix).replacen(
                    "  usage_batch_interval_ms: 50\n",
                    "  usage_batch_interval_ms: 50\n  change_poll_ms: 600000\n",
                    1,
                )
            })
            .collect(),
    );
    let (a, b) = (gateways[0].url.as_str(), gateways[1].url.as_str());
    let (status, answer) = admin(
        a,
        reqwest::Method::POST,
        "/admin/api/keys",
        Some(json!({"name": "announced", "group": "default"})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let key = answer["api_key"].as_str().unwrap().to_owned();
    eventually("B accepts the key created on A", async || {
        let (status, text) = relay(b, &key, false).await;
        assert!(status == 200 || status == 401, "{status}: {text}");
        status == 200
    })
    .await;
}

/// Prices live in the shared store: a price set through A's admin API prices the next request B
/// serves (the usage row's cost follows the new price), and deleting it on A makes B's
/// requests unpriced again.
#[tokio::test]
async fn a_price_set_on_one_instance_prices_the_usage_of_the_other() {
    let Some(server) = PgServer::any() else {
        return;
    };
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let db = server.database();
    let redis_prefix = prefix();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let extra = format!("api_keys:\n  - {{key: {KEY}, name: pricer}}\n");
    let gateways = start_together(
        dirs.iter()
            .map(|d| instance_config(&mock, d.path(), &db.url(), &redis, &redis_prefix) + &extra)
            .collect(),
    );
    let (a, b) = (gateways[0].url.as_str(), gateways[1].url.as_str());
    let model = "house-model-7";
    // One request served by B: its usage record (counted before sending, so the record of
    // this request is the one waited for).
    let ask_b = async || {
        let n = gateways[1].usage_records().len() + 1;
        let r = client()
            .post(format!("{b}/v1/responses"))
            .bearer_auth(KEY)
            .json(&body(model, false))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        gateways[1].wait_for_usage(n).await.pop().unwrap()
    };

    // The positive control: no price yet, so B records the request unpriced.
    let first = ask_b().await;
    assert_eq!(first["priced"], false, "{first}");

    let (status, set) = admin(
        a,
        reqwest::Method::PUT,
        &format!("/admin/api/prices/{model}"),
        Some(json!({"input": 2000.0, "output": 8000.0})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(set["source"], "admin");
    let mut priced = Value::Null;
    eventually("B prices the model set on A", async || {
        priced = ask_b().await;
        priced["priced"] == true
    })
    .await;
    let tokens = &priced["tokens"];
    let (input, output) = (
        tokens["input"].as_f64().unwrap(),
        tokens["output"].as_f64().unwrap(),
    );
    assert!(input > 0.0 && output > 0.0, "{priced}");
    let expected = (input * 2000.0 + output * 8000.0) / 1_000_000.0;
    let cost = priced["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - expected).abs() < 1e-9,
        "{cost} != {expected}: {priced}"
    );
    // B's own admin API shows the price A set.
    let (status, list) = admin(b, reqwest::Method::GET, "/admin/api/prices", None).await;
    assert_eq!(status, 200, "{list}");
    let row = list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == model)
        .unwrap()
        .clone();
    assert_eq!(row["input"], 2000.0, "{row}");
    assert_eq!(row["source"], "admin", "{row}");

    let (status, gone) = admin(
        a,
        reqwest::Method::DELETE,
        &format!("/admin/api/prices/{model}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{gone}");
    eventually("B forgets the price deleted on A", async || {
        ask_b().await["priced"] == false
    })
    .await;
}
