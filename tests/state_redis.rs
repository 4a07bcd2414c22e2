//! Runtime state shared through Redis (`state.backend: redis`, issue 17): two or three instances
//! of the real binary, each with its own data directory, reading the same configuration, act as
//! one gateway. Redis is the machine's when it answers, else a private one
//! (tests/common/redis.rs); each test has its own key prefix.

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

use std::process::Command;
use std::time::{Duration, SystemTime};

use common::redis::{prefix, Redis};
use common::*;
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-for-tests-0123";

/// The key every instance of a test seals with (instances sharing sign-in tokens through Redis
/// must share it; each keeps its own data directory), given as `storage.encryption_key`.
const ENCRYPTION_KEY: (&str, &str) = (
    "STORAGE_ENCRYPTION_KEY",
    "a0b1c2d3e4f5061728394a5b6c7d8e9fa0b1c2d3e4f5061728394a5b6c7d8e9f",
);

/// An instance of `yaml` sealing with [`ENCRYPTION_KEY`].
fn sealing_gateway(yaml: &str) -> Gateway {
    Gateway::start_with_env(yaml, &[ENCRYPTION_KEY])
}

/// The shared-state section for `redis` under a fresh prefix, with `lease_ttl` seconds.
fn state(redis: &Redis, lease_ttl: u64) -> String {
    state_under(redis, lease_ttl, &prefix())
}

/// [`state`] under `prefix`.
fn state_under(redis: &Redis, lease_ttl: u64, prefix: &str) -> String {
    common::redis::state_yaml(&redis.url(), prefix, Some(lease_ttl))
}

/// Two accounts (`a`: tok-a, `b`: tok-b) of priorities `pa` and `pb`.
fn pair(mock: &MockUpstream, pa: u32, pb: u32) -> String {
    format!(
        "admin:\n  token: {ADMIN}\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{u}/v1', priority: {pa}}}\n  - {{name: b, platform: openai, type: apikey, api_key: tok-b, base_url: '{u}/v1', priority: {pb}}}\n",
        u = mock.url()
    )
}

/// A 429 for `a` that says to wait ten minutes.
fn rate_limited() -> Behavior {
    Behavior {
        status: Some(429),
        headers: vec![("retry-after".into(), "600".into())],
        ..Default::default()
    }
}

async fn account(gw: &Gateway, name: &str) -> Value {
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
        .unwrap()
        .clone()
}

async fn post_with(gw: &Gateway, headers: &[(&str, &str)], body: &Value) -> reqwest::Response {
    let mut request = client()
        .post(gw.responses_url())
        .bearer_auth(KEY)
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_429_on_one_instance_cools_the_account_on_the_other() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    // `a` first on both instances.
    let yaml = format!("{}{}", pair(&mock, 0, 1), state(&redis, 30));
    let first = Gateway::start(&yaml);
    let second = Gateway::start(&yaml);
    assert_eq!(account(&second, "a").await["state"], "available");

    mock.script("tok-a", vec![rate_limited()]);
    let r = post(&first, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(r.status(), 200, "failed over to b");
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 1));

    wait_until("the other instance to see a cooling", async || {
        account(&second, "a").await["state"] == "cooling"
    })
    .await;
    let seen = account(&second, "a").await;
    assert_eq!(seen["cooldown_reason"], "rate_limited");
    // The other instance never saw the 429 itself, and does not try `a`.
    let r = post(&second, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!((mock.calls("tok-a"), mock.calls("tok-b")), (1, 2));
}

#[tokio::test]
async fn an_account_with_concurrency_1_never_serves_two_requests_across_instances() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "admin:\n  token: {ADMIN}\ngateway:\n  queue_wait_timeout: 60\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1', concurrency: 1}}\n{}",
        mock.url(),
        state(&redis, 30)
    );
    let gateways = [
        Gateway::start(&yaml),
        Gateway::start(&yaml),
        Gateway::start(&yaml),
    ];
    let slow = Behavior {
        event_interval: Duration::from_millis(60),
        ..Default::default()
    };
    mock.script("tok-a", vec![slow; 9]);
    let mut requests = Vec::new();
    for i in 0..9 {
        let url = gateways[i % 3].responses_url();
        requests.push(tokio::spawn(async move {
            let r = client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5", true))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let text = r.text().await.unwrap();
            (status, text.contains("response.completed"))
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), (reqwest::StatusCode::OK, true));
    }
    assert_eq!(mock.calls("tok-a"), 9);
    assert_eq!(
        mock.max_in_flight(),
        1,
        "the account's one slot held across the three instances"
    );
}

#[tokio::test]
async fn a_conversation_bound_on_one_instance_keeps_its_account_on_the_other() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let yaml = format!("{}{}", pair(&mock, 0, 0), state(&redis, 30));
    let first = Gateway::start(&yaml);
    let second = Gateway::start(&yaml);
    // Ten conversations, each bound on the first instance to whichever account served it.
    let mut bound = Vec::new();
    for i in 0..10 {
        let conv = format!("conversation-{i}");
        let before = mock.calls("tok-a");
        let r = post_with(&first, &[("session_id", &conv)], &body("gpt-5", false)).await;
        assert_eq!(r.status(), 200);
        bound.push(if mock.calls("tok-a") > before {
            "tok-a"
        } else {
            "tok-b"
        });
    }
    // The second instance never served them; with two equal accounts, only the shared binding
    // sends each conversation back to its account.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (i, account) in bound.iter().enumerate() {
        let conv = format!("conversation-{i}");
        let before = mock.calls(account);
        let r = post_with(&second, &[("session_id", &conv)], &body("gpt-5", false)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            mock.calls(account),
            before + 1,
            "conversation {i} stayed on {account}"
        );
    }
}

fn rfc3339(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_requests_spread_over_instances() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    // The refresh takes a while, so requests on both instances pile up behind it.
    mock.set_token_delay(Duration::from_millis(300));
    let yaml = format!(
        "admin:\n  token: {ADMIN}\noauth:\n  openai_token_url: {u}/oauth/token\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - name: s\n    platform: openai\n    type: oauth\n    base_url: {u}/backend-api/codex\n    access_token: at-expired\n    refresh_token: rt-seed\n    chatgpt_account_id: acct-s\n    expires_at: {}\n{}",
        rfc3339(-60),
        state(&redis, 30),
        u = mock.url(),
    );
    let gateways = [sealing_gateway(&yaml), sealing_gateway(&yaml)];
    let mut requests = Vec::new();
    for i in 0..20 {
        let url = gateways[i % 2].responses_url();
        requests.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5", false))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    assert_eq!(mock.token_calls(), 1, "one refresh for both instances");
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        mock.calls(&issued[0]),
        20,
        "every request used the new token"
    );
}

/// Every value under `prefix` as text: strings whole, the members (and fields, values) of the
/// other types.
fn redis_values(redis: &Redis, prefix: &str) -> Vec<(String, String)> {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = ::redis::cmd("TYPE").arg(&key).query(&mut conn).unwrap();
        let parts: Vec<String> = match kind.as_str() {
            "string" => vec![::redis::cmd("GET").arg(&key).query(&mut conn).unwrap()],
            "zset" => ::redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut conn)
                .unwrap(),
            "hash" => ::redis::cmd("HGETALL").arg(&key).query(&mut conn).unwrap(),
            "set" => ::redis::cmd("SMEMBERS").arg(&key).query(&mut conn).unwrap(),
            "list" => ::redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .query(&mut conn)
                .unwrap(),
            _ => Vec::new(),
        };
        out.push((key, parts.join("\n")));
    }
    out
}

#[tokio::test]
async fn sign_in_tokens_are_sealed_in_redis_and_on_its_channel() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let prefix = prefix();
    // Every message on the pool channel, from before the refresh on.
    let heard = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut pubsub = ::redis::Client::open(redis.url())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(format!("{prefix}pool")).await.unwrap();
    let listener = tokio::spawn({
        let heard = std::sync::Arc::clone(&heard);
        async move {
            use futures_util::StreamExt;
            let mut messages = pubsub.into_on_message();
            while let Some(message) = messages.next().await {
                let payload: String = message.get_payload().unwrap();
                heard.lock().unwrap().push(payload);
            }
        }
    });
    let yaml = format!(
        "admin:\n  token: {ADMIN}\noauth:\n  openai_token_url: {u}/oauth/token\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - name: s\n    platform: openai\n    type: oauth\n    base_url: {u}/backend-api/codex\n    access_token: at-expired\n    refresh_token: rt-seed\n    chatgpt_account_id: acct-s\n    expires_at: {}\n{}",
        rfc3339(-60),
        state_under(&redis, 30, &prefix),
        u = mock.url(),
    );
    let gateways = [sealing_gateway(&yaml), sealing_gateway(&yaml)];
    let send = |gw: &Gateway| {
        client()
            .post(gw.responses_url())
            .bearer_auth(KEY)
            .json(&body("gpt-5", false))
            .send()
    };
    assert_eq!(send(&gateways[0]).await.unwrap().status(), 200);
    assert_eq!(mock.token_calls(), 1);
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    let access = issued[0].clone();
    // The mock rotates the refresh token with the same number.
    let refresh = access.replacen("at-", "rt-", 1);
    // The other instance serves with the new token it read from Redis (no second refresh).
    wait_until("the second instance to use the new token", async || {
        let before = mock.calls(&access);
        send(&gateways[1]).await.unwrap().status() == 200 && mock.calls(&access) > before
    })
    .await;
    assert_eq!(mock.token_calls(), 1, "the second instance did not refresh");

    let tokens_key = format!("{prefix}tokens:s");
    let values = redis_values(&redis, &prefix);
    // Positive control: the tokens are there, sealed, at the generation of the refresh.
    let stored = values
        .iter()
        .find(|(key, _)| *key == tokens_key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {tokens_key} among {values:?}"));
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["gen"], 1, "{stored}");
    assert!(
        stored["v"].as_str().is_some_and(|v| v.len() > 64),
        "{stored}"
    );
    wait_until("the refresh's message on the pool channel", async || {
        heard
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains(&tokens_key))
    })
    .await;
    listener.abort();
    let heard = heard.lock().unwrap().clone();
    for secret in [access.as_str(), refresh.as_str(), "at-expired", "rt-seed"] {
        for (key, value) in &values {
            assert!(
                !value.contains(secret),
                "{key} holds {secret} in the clear: {value}"
            );
        }
        for message in &heard {
            assert!(
                !message.contains(secret),
                "a message carries {secret}: {message}"
            );
        }
    }
}

#[tokio::test]
async fn a_killed_instance_gives_its_slot_back_within_the_lease() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "admin:\n  token: {ADMIN}\ngateway:\n  queue_wait_timeout: 30\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1', concurrency: 1}}\n{}",
        mock.url(),
        state(&redis, 2)
    );
    let mut doomed = Gateway::start(&yaml);
    let survivor = Gateway::start(&yaml);
    mock.script(
        "tok-a",
        vec![Behavior {
            hang_before_headers: true,
            ..Default::default()
        }],
    );
    let url = doomed.responses_url();
    let hanging = tokio::spawn(async move {
        let _ = client()
            .post(url)
            .bearer_auth(KEY)
            .json(&body("gpt-5", false))
            .send()
            .await;
    });
    while mock.calls("tok-a") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The slot is held (and renewed) by the first instance: the other cannot take it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(account(&survivor, "a").await["state"], "available");
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(doomed.pid().to_string())
        .status();
    doomed.wait_exit();
    hanging.abort();
    // The survivor's request waits for the dead instance's lease to expire, then is served.
    let r = post(&survivor, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.calls("tok-a"), 2);
}

#[tokio::test]
async fn requests_go_on_while_redis_is_down_and_state_is_shared_again_after() {
    let Some(mut redis) = Redis::private() else {
        return;
    };
    let mock = MockUpstream::start().await;
    let yaml = format!("{}{}", pair(&mock, 0, 1), state(&redis, 30));
    let first = Gateway::start(&yaml);
    let second = Gateway::start(&yaml);
    for gw in [&first, &second, &first, &second] {
        assert_eq!(
            post(gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    redis.stop();
    for _ in 0..5 {
        for gw in [&first, &second] {
            let r = post(gw, "/v1/responses", &body("gpt-5", true)).await;
            assert_eq!(r.status(), 200, "served on local state");
        }
    }
    first.wait_for_log("Redis is unreachable").await;
    second.wait_for_log("Redis is unreachable").await;
    redis.restart();
    first.wait_for_log("the state is shared again").await;
    second.wait_for_log("the state is shared again").await;
    // Shared again: a 429 on the first instance cools `a` on the second.
    assert_eq!(account(&second, "a").await["state"], "available");
    mock.script("tok-a", vec![rate_limited()]);
    let r = post(&first, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(r.status(), 200, "failed over to b");
    wait_until("the second instance to see a cooling", async || {
        account(&second, "a").await["state"] == "cooling"
    })
    .await;
}

#[tokio::test]
async fn a_dashboard_session_opened_on_one_instance_works_on_the_other() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let yaml = format!("{}{}", pair(&mock, 0, 0), state(&redis, 30));
    let first = Gateway::start(&yaml);
    let second = Gateway::start(&yaml);
    let no_redirects = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without a session the other instance sends the browser to the sign-in page.
    let shell = no_redirects
        .get(format!("{}/admin/", second.url))
        .send()
        .await
        .unwrap();
    assert_eq!(shell.status(), 303);
    let login = no_redirects
        .post(format!("{}/admin/login", first.url))
        .json(&json!({ "token": ADMIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 204);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    wait_until("the session to reach the other instance", async || {
        no_redirects
            .get(format!("{}/admin/", second.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    // An instance started after the sign-in reads the session from Redis on first sight.
    let third = Gateway::start(&yaml);
    let shell = no_redirects
        .get(format!("{}/admin/", third.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(shell.status(), 200);
}

/// The value of the `subrelay_state_redis_calls{kind="…"}` sample.
fn calls(text: &str, kind: &str) -> u64 {
    let prefix = format!("subrelay_state_redis_calls{{kind=\"{kind}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Ten requests, one after the other, with the key's entry `key` (`api_keys:`): the Redis
/// round trips the requests waited for and the pipelines sent in the background meanwhile.
async fn round_trips_of_ten_requests(key: &str) -> (u64, u64) {
    let Some(redis) = Redis::any() else {
        return (0, 0);
    };
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "{}{}metrics:\n  listen: 127.0.0.1:0\n",
        pair(&mock, 0, 1).replace(&format!("{{key: {KEY}, name: tester}}"), key),
        state(&redis, 30)
    );
    let gw = Gateway::start(&yaml);
    let line = gw.wait_for_log("Prometheus metrics on http://").await;
    let at = line.find("http://").unwrap();
    let url: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let scrape = async || {
        client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    // Warmed up: the first answer writes the account's health once.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = scrape().await;
    assert!(before.contains("subrelay_state_backend_up 1"), "{before}");
    for _ in 0..10 {
        let r = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scrape().await;
    (
        calls(&after, "waited") - calls(&before, "waited"),
        calls(&after, "background") - calls(&before, "background"),
    )
}

#[tokio::test]
async fn a_request_costs_at_most_two_redis_round_trips() {
    let (waited, background) =
        round_trips_of_ten_requests(&format!("{{key: {KEY}, name: tester}}")).await;
    if (waited, background) == (0, 0) {
        return; // no Redis (counted as a skip where allowed)
    }
    assert_eq!(waited, 10, "one lease script per request");
    assert!(
        waited + background <= 20,
        "at most two round trips per request: {waited} waited, {background} in the background"
    );
}

/// A key with an rpm limit and a concurrency limit: its admission (window and slot) is one
/// script, so a request still waits for two round trips at most (the key's, the account's);
/// the releases go out in the background.
#[tokio::test]
async fn a_request_of_a_key_with_rpm_and_concurrency_limits_waits_for_two_round_trips() {
    let (waited, background) = round_trips_of_ten_requests(&format!(
        "{{key: {KEY}, name: tester, rpm_limit: 100, concurrency: 2}}"
    ))
    .await;
    if (waited, background) == (0, 0) {
        return; // no Redis (counted as a skip where allowed)
    }
    assert_eq!(
        waited, 20,
        "one key admission and one account lease per request"
    );
    assert!(
        background <= 10,
        "one background pipeline per request at most: {background}"
    );
}

#[tokio::test]
async fn a_keys_rpm_limit_holds_across_instances() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "admin:\n  token: {ADMIN}\napi_keys:\n  - {{key: {KEY}, name: tester, rpm_limit: 4}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1'}}\n{}",
        mock.url(),
        state(&redis, 30)
    );
    let gateways = [Gateway::start(&yaml), Gateway::start(&yaml)];
    // Four requests within the minute, two on each instance: all accepted.
    for i in 0..4 {
        let r = post(&gateways[i % 2], "/v1/responses", &body("gpt-5", false)).await;
        assert_eq!(r.status(), 200, "request {i}");
    }
    // Each instance served only two, yet the fifth is refused on either.
    for gw in &gateways {
        let r = post(gw, "/v1/responses", &body("gpt-5", false)).await;
        assert_eq!(r.status(), 429);
        assert!(r.headers().contains_key("retry-after"));
        let answer: Value = r.json().await.unwrap();
        assert!(answer["error"].is_object(), "{answer}");
    }
    assert_eq!(mock.calls("tok-a"), 4);
}

/// A key with one slot and a window of two requests a minute, on two instances: a request on B
/// waits while A holds the slot, looking again several times (every 250 ms and at each release);
/// it is counted in the window once, when it gets the slot, so it is served, and the window then
/// holds exactly the two.
#[tokio::test]
async fn a_request_waiting_for_its_keys_slot_is_counted_in_the_window_once() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(2),
            ..Default::default()
        }],
    );
    let yaml = format!(
        "admin:\n  token: {ADMIN}\napi_keys:\n  - {{key: {KEY}, name: tester, rpm_limit: 2, concurrency: 1}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1'}}\n{}",
        mock.url(),
        state(&redis, 30)
    );
    let gateways = [Gateway::start(&yaml), Gateway::start(&yaml)];
    let a_url = gateways[0].url.clone();
    let holding = tokio::spawn(async move {
        client()
            .post(format!("{a_url}/v1/responses"))
            .bearer_auth(KEY)
            .json(&body("gpt-5", false))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    wait_until("A's request reached the upstream", async || {
        mock.calls("tok-a") == 1
    })
    .await;
    let waited = post(&gateways[1], "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(waited.status(), 200, "served after waiting for the slot");
    assert_eq!(holding.await.unwrap(), 200);
    // Two admitted in the minute: the window is full on either instance.
    for gw in &gateways {
        let r = post(gw, "/v1/responses", &body("gpt-5", false)).await;
        assert_eq!(r.status(), 429);
        let answer: Value = r.json().await.unwrap();
        assert_eq!(answer["error"]["code"], "key_rpm_limit", "{answer}");
    }
    assert_eq!(mock.calls("tok-a"), 2);
}

/// The spending totals Redis holds under `prefix` for the key named `key`: (Redis key, value).
fn spend_in_redis(redis: &Redis, prefix: &str, key: &str) -> Vec<(String, String)> {
    redis_values(redis, prefix)
        .into_iter()
        .filter(|(name, _)| name.starts_with(&format!("{prefix}spend:{key}:")))
        .collect()
}

/// Only a key with a spending limit has its spending counted in Redis (a script per priced
/// record); a key without one sends nothing. A limit given later is seeded from the store, so the
/// spending before it counts.
#[tokio::test]
async fn only_keys_with_a_spending_limit_send_their_spending_to_redis() {
    let Some(redis) = Redis::any() else { return };
    let mock = MockUpstream::start().await;
    let prefix = prefix();
    let data = tempfile::tempdir().unwrap();
    let yaml = format!(
        "admin:\n  token: {ADMIN}\nstorage:\n  data_dir: {}\n  usage_batch_interval_ms: 50\napi_keys:\n  - {{key: {KEY}, name: capped, daily_spend_limit: 1000}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1'}}\n{}",
        data.path().display(),
        mock.url(),
        state_under(&redis, 30, &prefix)
    );
    let gw = Gateway::start(&yaml);
    // Created through the admin API, so a limit can be given to it later.
    let created: Value = client()
        .post(format!("{}/admin/api/keys", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "free", "group": "default"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let free = created["api_key"].as_str().unwrap().to_owned();
    let free = free.as_str();
    let send = async |key: &str| {
        let r = client()
            .post(gw.responses_url())
            .bearer_auth(key)
            .json(&body("gpt-5", false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.text().await.unwrap();
    };
    for _ in 0..3 {
        send(free).await;
        send(KEY).await;
    }
    let records = gw.wait_for_usage(6).await;
    assert!(
        records
            .iter()
            .all(|r| r["cost_usd"].as_f64().unwrap() > 0.0),
        "every request is priced: {records:?}"
    );
    // The positive control: the limited key's spending reaches Redis (day and month).
    wait_until("the capped key's spending in Redis", async || {
        spend_in_redis(&redis, &prefix, "capped").len() == 2
    })
    .await;
    // Sent in order through one writer: the free key's requests, sent before the capped key's
    // last, would be there by now.
    assert_eq!(spend_in_redis(&redis, &prefix, "free"), Vec::new());

    // A limit given later: the spending so far is read from the store into the count.
    let stored = async || {
        let page: Value = client()
            .get(format!("{}/admin/api/usage/totals?by=key", gw.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["bucket"] == "free")
            .and_then(|t| t["requests"].as_i64())
            == Some(3)
    };
    wait_until("the free key's rows in the store", stored).await;
    let spent: f64 = records
        .iter()
        .filter(|r| r["key"] == "free")
        .map(|r| r["cost_usd"].as_f64().unwrap())
        .sum();
    let r = client()
        .patch(format!("{}/admin/api/keys/free", gw.url))
        .bearer_auth(ADMIN)
        .json(&json!({"daily_spend_limit": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    wait_until("the free key's seeded spending in Redis", async || {
        let totals = spend_in_redis(&redis, &prefix, "free");
        totals.len() == 2
            && totals
                .iter()
                .all(|(_, v)| (v.parse::<f64>().unwrap() - spent).abs() < 1e-9)
    })
    .await;
}
