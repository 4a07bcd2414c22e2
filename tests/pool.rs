//! The account pool end to end: sticky sessions, concurrency and the queue, cooldown sources,
//! permanent failures, per-account proxies, and the admin API with `subrelay accounts`.

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
use std::time::Duration;

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests-0123";

fn with_admin(yaml: String) -> String {
    format!("admin:\n  token: {ADMIN}\n{yaml}")
}

async fn accounts(gw: &Gateway) -> Vec<Value> {
    let v: Value = client()
        .get(format!("{}/admin/api/accounts", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["accounts"].as_array().unwrap().clone()
}

async fn account(gw: &Gateway, name: &str) -> Value {
    accounts(gw)
        .await
        .into_iter()
        .find(|a| a["name"] == name)
        .unwrap()
}

async fn post_with(
    gw: &Gateway,
    key: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut request = client()
        .post(gw.responses_url())
        .bearer_auth(key)
        .json(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.unwrap()
}

/// Starts a non-stream request in the background and returns once the upstream has it (so it
/// holds its slots); the handle gives its status.
async fn in_flight(
    gw: &Gateway,
    mock: &MockUpstream,
) -> tokio::task::JoinHandle<reqwest::StatusCode> {
    let before = mock.total_calls();
    let url = gw.responses_url();
    let request = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(KEY)
            .json(&body("gpt-5", false))
            .send()
            .await
            .unwrap()
            .status()
    });
    while mock.total_calls() == before {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    request
}

fn status(code: u16) -> Behavior {
    Behavior {
        status: Some(code),
        ..Default::default()
    }
}

/// Two accounts of equal priority, so only stickiness keeps a conversation on one.
fn equal_pair(mock: &MockUpstream, extra_keys: &str) -> String {
    format!(
        "api_keys:\n  - {{key: {KEY}, name: tester}}\n{extra_keys}accounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{u}/v1'}}\n  - {{name: b, platform: openai, type: apikey, api_key: tok-b, base_url: '{u}/v1'}}\n",
        u = mock.url()
    )
}

#[tokio::test]
async fn a_conversation_sticks_to_one_account_and_moves_when_it_fails() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&with_admin(equal_pair(&mock, "")));
    let conv = [("session_id", "conversation-1")];
    for _ in 0..8 {
        let r = post_with(&gw, KEY, &conv, &body("gpt-5", false)).await;
        assert_eq!(r.status(), 200);
    }
    let (a, b) = (mock.calls("tok-a"), mock.calls("tok-b"));
    assert!(
        a == 8 || b == 8,
        "one account served the whole conversation: a={a} b={b}"
    );
    let (bound, bound_name, other) = if a == 8 {
        ("tok-a", "a", "tok-b")
    } else {
        ("tok-b", "b", "tok-a")
    };

    // The bound account fails: the request fails over, and the binding moves with it.
    mock.script(bound, vec![status(500)]);
    assert_eq!(
        post_with(&gw, KEY, &conv, &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!((mock.calls(bound), mock.calls(other)), (9, 1));
    // The failed account heals at once; it is now the least recently used of two equals, so a
    // request without a binding would go to it. The conversation stays where it moved.
    let reset = client()
        .post(format!("{}/admin/api/accounts/{bound_name}/reset", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success(), "{}", reset.status());
    assert_eq!(account(&gw, bound_name).await["state"], "available");
    for _ in 0..3 {
        assert_eq!(
            post_with(&gw, KEY, &conv, &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        (mock.calls(bound), mock.calls(other)),
        (9, 4),
        "the conversation stayed on the account it moved to"
    );
    // Control: without the binding the healed account is chosen (least recently used).
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        mock.calls(bound),
        10,
        "an unbound request goes to the healed account"
    );
}

/// Sends six requests of one conversation (as `headers` and `body` say) and returns how the two
/// equal accounts split them.
async fn split_of(headers: &[(&str, &str)], request: &Value) -> (usize, usize) {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&equal_pair(&mock, ""));
    for _ in 0..6 {
        assert_eq!(post_with(&gw, KEY, headers, request).await.status(), 200);
    }
    (mock.calls("tok-a"), mock.calls("tok-b"))
}

#[tokio::test]
async fn every_session_header_and_prompt_cache_key_alone_bind_a_conversation() {
    // Control: without a conversation, two equal accounts take turns (least recently used).
    assert_eq!(split_of(&[], &body("gpt-5", false)).await, (3, 3));
    for header in ["session_id", "session-id", "conversation_id", "thread-id"] {
        let (a, b) = split_of(&[(header, "conversation-7")], &body("gpt-5", false)).await;
        assert!(
            (a, b) == (6, 0) || (a, b) == (0, 6),
            "{header}: one account served the conversation: a={a} b={b}"
        );
    }
    let mut request = body("gpt-5", false);
    request["prompt_cache_key"] = Value::String("conversation-7".into());
    let (a, b) = split_of(&[], &request).await;
    assert!(
        (a, b) == (6, 0) || (a, b) == (0, 6),
        "prompt_cache_key alone: a={a} b={b}"
    );
}

#[tokio::test]
async fn a_bound_account_slow_to_first_token_loses_the_conversation() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&equal_pair(&mock, "").replace(
        "api_keys:",
        "gateway:\n  sticky_slow_ttft_ms: 400\n  sticky_slow_strikes: 2\napi_keys:",
    ));
    let conv = [("session_id", "slow-conversation")];
    let send = || async {
        let r = post_with(&gw, KEY, &conv, &body("gpt-5", true)).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        assert_eq!(
            event_types(&text).last().map(String::as_str),
            Some("response.completed")
        );
    };
    send().await;
    let (bound, other) = if mock.calls("tok-a") == 1 {
        ("tok-a", "tok-b")
    } else {
        ("tok-b", "tok-a")
    };
    // Two slow first tokens in a row (each at least 1 s against a 400 ms limit): the
    // conversation stays for the first, and is released after the second.
    let slow = || Behavior {
        delay_headers: Duration::from_millis(1000),
        ..Default::default()
    };
    mock.script(bound, vec![slow(), slow()]);
    send().await;
    send().await;
    assert_eq!((mock.calls(bound), mock.calls(other)), (3, 0));
    gw.wait_for_log("sticky binding released").await;
    // Released: the next request goes to the other account, and the conversation stays there.
    for _ in 0..3 {
        send().await;
    }
    assert_eq!((mock.calls(bound), mock.calls(other)), (3, 3));
}

#[tokio::test]
async fn prompt_cache_key_is_a_conversation_too_and_ids_sent_upstream_are_per_key() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&equal_pair(
        &mock,
        "  - {key: sk-second-key, name: second}\n",
    ));
    let mut request = body("gpt-5", false);
    request["prompt_cache_key"] = Value::String("shared-value".into());
    // Only prompt_cache_key: no session header at all (stickiness by it alone is proven by
    // `every_session_header_and_prompt_cache_key_alone_bind_a_conversation`).
    assert_eq!(post_with(&gw, KEY, &[], &request).await.status(), 200);
    assert_eq!(
        post_with(&gw, "sk-second-key", &[], &request)
            .await
            .status(),
        200
    );
    let sent_key = |i: usize| -> String {
        let sent = mock.requests();
        assert!(
            SESSION_HEADER_NAMES
                .iter()
                .all(|h| !sent[i].headers.contains_key(*h)),
            "no session header was sent, none is made up"
        );
        serde_json::from_slice::<Value>(&sent[i].body).unwrap()["prompt_cache_key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (first, second) = (sent_key(0), sent_key(1));
    assert_ne!(
        first, second,
        "two API keys never share an upstream cache key"
    );
    assert!(!first.contains("shared-value") && !second.contains("shared-value"));
    // Stable for one key: the upstream's prompt cache keeps working.
    assert_eq!(post_with(&gw, KEY, &[], &request).await.status(), 200);
    assert_eq!(sent_key(2), first);
}

const SESSION_HEADER_NAMES: [&str; 4] =
    ["session_id", "session-id", "conversation_id", "thread-id"];

#[tokio::test]
async fn a_busy_pool_queues_then_answers_429_saying_so() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(3),
            ..Default::default()
        }],
    );
    let yaml = format!(
        "gateway:\n  queue_wait_timeout: 1\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1', concurrency: 1}}\n",
        mock.url()
    );
    let gw = Gateway::start(&yaml);
    let slow = in_flight(&gw, &mock).await;
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "pool_busy");
    assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(
        mock.total_calls(),
        1,
        "the refused request never reached an upstream"
    );
}

#[tokio::test]
async fn a_queued_request_gets_the_slot_when_it_frees() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_millis(800),
            ..Default::default()
        }],
    );
    let yaml = with_admin(format!(
        "gateway:\n  queue_wait_timeout: 10\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1', concurrency: 1}}\n",
        mock.url()
    ));
    let gw = Gateway::start(&yaml);
    let first = in_flight(&gw, &mock).await;
    let second = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(second.status(), 200);
    assert_eq!(
        event_types(&second.text().await.unwrap())
            .last()
            .map(String::as_str),
        Some("response.completed")
    );
    assert_eq!(first.await.unwrap(), 200);
    gw.wait_for_usage(2).await;
    assert_eq!(account(&gw, "a").await["in_flight"], 0);
}

#[tokio::test]
async fn per_key_concurrency_is_enforced() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(2),
            ..Default::default()
        }],
    );
    let yaml = format!(
        "gateway:\n  queue_wait_timeout: 0\napi_keys:\n  - {{key: {KEY}, concurrency: 1}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1'}}\n",
        mock.url()
    );
    let gw = Gateway::start(&yaml);
    let first = in_flight(&gw, &mock).await;
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 429);
    let v: Value = response.json().await.unwrap();
    assert_eq!(v["error"]["code"], "key_concurrency_limit");
    assert_eq!(first.await.unwrap(), 200);
    // The slot comes back once the first request's task ends, which may be a moment after its
    // client has the whole answer (with Redis, the release is one more write): until then the
    // key is still busy, never anything else.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 429);
        let v: Value = response.json().await.unwrap();
        assert_eq!(v["error"]["code"], "key_concurrency_limit");
        assert!(
            std::time::Instant::now() < deadline,
            "the key's slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slots_come_back_after_failures_and_disconnects() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![status(500), status(429)]);
    mock.script(
        "tok-b",
        vec![Behavior {
            events: Some(30),
            event_interval: Duration::from_millis(50),
            ..Default::default()
        }],
    );
    let yaml = with_admin(format!(
        "api_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{u}/v1', concurrency: 2}}\n  - {{name: b, platform: openai, type: apikey, api_key: tok-b, base_url: '{u}/v1', concurrency: 2, priority: 1}}\n",
        u = mock.url()
    ));
    let gw = Gateway::start(&yaml);
    // a answers 500 (its slot back, failover), b's stream is dropped by the client.
    let mut stream = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    stream.chunk().await.unwrap();
    drop(stream);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["attempts"][0]["status"], 500, "{records:?}");
    assert_eq!(records[0]["client_disconnected"], true, "{records:?}");
    for a in accounts(&gw).await {
        assert_eq!(a["in_flight"], 0, "{a}");
    }
    // a heals, then answers its scripted 429: that slot comes back too.
    let reset = client()
        .post(format!("{}/admin/api/accounts/a/reset", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["attempts"][0]["account"], "a", "{records:?}");
    assert_eq!(records[1]["attempts"][0]["status"], 429, "{records:?}");
    assert_eq!(records[1]["attempts"][1]["account"], "b", "{records:?}");
    assert_eq!(mock.calls("tok-a"), 2);
    for a in accounts(&gw).await {
        assert_eq!(a["in_flight"], 0, "{a}");
    }
}

#[tokio::test]
async fn codex_usage_windows_decide_the_cooldown_and_reset_clears_it() {
    let mock = MockUpstream::start().await;
    let mut limited = status(429);
    limited.headers = vec![
        ("x-codex-primary-used-percent".into(), "100".into()),
        ("x-codex-primary-window-minutes".into(), "300".into()),
        ("x-codex-primary-reset-after-seconds".into(), "1800".into()),
        ("x-codex-secondary-used-percent".into(), "35".into()),
        (
            "x-codex-secondary-reset-after-seconds".into(),
            "400000".into(),
        ),
    ];
    mock.script("tok-a", vec![limited]);
    mock.script("tok-b", vec![status(529)]);
    let gw = Gateway::start(&with_admin(config(
        &mock,
        &[
            oauth("a", "tok-a"),
            oauth("b", "tok-b"),
            oauth("c", "tok-c"),
        ],
        "  overload_cooldown: 120\n",
    )));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "cooling");
    assert_eq!(a["cooldown_reason"], "rate_limited");
    let until = humantime::parse_rfc3339(a["cooldown_until"].as_str().unwrap()).unwrap();
    let left = until.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(1700) && left <= Duration::from_secs(1800),
        "the exhausted 5 h window's reset: {left:?}"
    );
    let b = account(&gw, "b").await;
    assert_eq!(b["cooldown_reason"], "overloaded");
    let c = account(&gw, "c").await;
    assert_eq!(c["state"], "available");

    // `subrelay accounts` shows the same, and `accounts reset` heals.
    let config_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config_file.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_subrelay"))
            .arg("accounts")
            .args(args)
            .arg("--config")
            .arg(config_file.path())
            .arg("--url")
            .arg(&gw.url)
            .output()
            .unwrap()
    };
    let out = cli(&[]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("rate_limited") && table.contains("overloaded"),
        "{table}"
    );
    let out = cli(&["reset", "a"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(account(&gw, "a").await["state"], "available");
}

#[tokio::test]
async fn a_revoked_key_disables_its_account_with_the_reason() {
    let mock = MockUpstream::start().await;
    let mut revoked = status(401);
    revoked.headers = vec![];
    mock.script("tok-a", vec![revoked]);
    let gw = Gateway::start(&with_admin(config(
        &mock,
        &[apikey("a", "tok-a"), apikey("b", "tok-b")],
        "",
    )));
    // The mock's 401 carries code invalid_api_key, which no cooldown heals.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "disabled", "{a}");
    assert!(
        a["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("invalid_api_key"),
        "{a}"
    );
    assert!(
        !a.to_string().contains("tok-a"),
        "no credential in the admin API: {a}"
    );
}

#[tokio::test]
async fn an_account_with_a_proxy_goes_through_it_and_a_broken_proxy_never_falls_back() {
    let mock = MockUpstream::start().await;
    let proxy = socks::Socks5::start().await;
    let dead_proxy = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("socks5://{}", l.local_addr().unwrap())
    };
    let yaml = format!(
        "api_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: broken, platform: openai, type: apikey, api_key: tok-broken, base_url: '{u}/v1', proxy: '{dead_proxy}'}}\n  - {{name: proxied, platform: openai, type: apikey, api_key: tok-proxied, base_url: '{u}/v1', proxy: '{p}', priority: 1}}\n  - {{name: direct, platform: openai, type: apikey, api_key: tok-direct, base_url: '{u}/v1', priority: 2}}\n",
        u = mock.url(),
        p = proxy.url
    );
    let gw = Gateway::start(&yaml);
    for _ in 0..3 {
        assert_eq!(
            post(&gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(
        mock.calls("tok-broken"),
        0,
        "a broken proxy is not bypassed"
    );
    assert_eq!(mock.calls("tok-proxied"), 3);
    assert_eq!(mock.calls("tok-direct"), 0);
    assert!(
        proxy.connections() >= 1 && proxy.connections() <= 3,
        "{}",
        proxy.connections()
    );
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["attempts"][0]["outcome"], "connect_error");
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_is_off_without_one() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&with_admin(config(&mock, &[apikey("a", "tok-a")], "")));
    let url = format!("{}/admin/api/accounts", gw.url);
    assert_eq!(client().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client()
            .get(&url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let off = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    let r = client()
        .get(format!("{}/admin/api/accounts", off.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "admin_api_off");
}

#[tokio::test]
async fn a_streaming_client_waiting_in_the_queue_gets_keepalive_comments() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            delay_headers: Duration::from_secs(7),
            ..Default::default()
        }],
    );
    let yaml = format!(
        "gateway:\n  queue_wait_timeout: 30\n  stream_keepalive_interval: 5\napi_keys:\n  - {{key: {KEY}}}\naccounts:\n  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1', concurrency: 1}}\n",
        mock.url()
    );
    let gw = Gateway::start(&yaml);
    let first = in_flight(&gw, &mock).await;
    let queued = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(queued.status(), 200);
    let text = queued.text().await.unwrap();
    assert!(text.starts_with(": keepalive\n\n"), "{text:?}");
    assert_eq!(
        event_types(&text).last().map(String::as_str),
        Some("response.completed")
    );
    assert_eq!(first.await.unwrap(), 200);
}

/// How long the account still cools, from the admin API.
fn cooling_left(account: &Value) -> Duration {
    let until = humantime::parse_rfc3339(account["cooldown_until"].as_str().unwrap()).unwrap();
    until
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_failure_cools_its_account_for_its_duration() {
    let mock = MockUpstream::start().await;
    let mut expired = status(401);
    // A 401 that is not a revoked key (which disables instead).
    expired.error_code = Some("token_expired".into());
    mock.script("tok-a", vec![expired]);
    mock.script("tok-b", vec![status(403)]);
    mock.script("tok-c", vec![status(402)]);
    mock.script("tok-d", vec![status(500)]);
    let gw = Gateway::start(&with_admin(config(
        &mock,
        &[
            apikey("a", "tok-a"),
            apikey("b", "tok-b"),
            apikey("c", "tok-c"),
            apikey("d", "tok-d"),
            apikey("e", "tok-e"),
        ],
        "",
    )));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        mock.calls("tok-e"),
        1,
        "four failures, then the fifth answered"
    );
    // (name, reason, duration): the admin view shows the time left, rounded to seconds; the
    // lower bounds only allow for the time this test took since the failure.
    for (name, reason, secs) in [
        ("a", "auth_failed", 600),
        ("b", "auth_failed", 600),
        ("c", "payment_required", 3600),
    ] {
        let view = account(&gw, name).await;
        assert_eq!(view["state"], "cooling", "{view}");
        assert_eq!(view["cooldown_reason"], reason, "{view}");
        let left = cooling_left(&view);
        assert!(
            left <= Duration::from_secs(secs + 1) && left > Duration::from_secs(secs / 2),
            "{name}: {reason} cools for {secs} s, {left:?} left"
        );
    }
    // One 5xx is a strike, not a cooldown (three in a row cool: see the test below).
    let d = account(&gw, "d").await;
    assert_eq!(d["state"], "available", "{d}");
    assert!(d["last_error"].as_str().is_some(), "{d}");
    assert_eq!(account(&gw, "e").await["state"], "available");
}

#[tokio::test]
async fn one_5xx_does_not_cool_the_only_account_three_in_a_row_do() {
    let mock = MockUpstream::start().await;
    mock.script("tok-a", vec![status(500)]);
    let gw = Gateway::start(&with_admin(config(&mock, &[apikey("a", "tok-a")], "")));
    let request = body("gpt-5", false);
    let send = || post(&gw, "/v1/responses", &request);
    assert_eq!(send().await.status(), 502, "the 500, as a gateway error");
    assert_eq!(account(&gw, "a").await["state"], "available");
    assert_eq!(
        send().await.status(),
        200,
        "the next request is served, not refused with 503"
    );
    assert_eq!(mock.calls("tok-a"), 2);

    // Control: three failures in a row cool the account, and the next request is refused
    // without reaching the upstream.
    mock.script("tok-a", vec![status(500), status(502), status(503)]);
    for _ in 0..3 {
        assert_eq!(send().await.status(), 502);
    }
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "cooling", "{a}");
    assert_eq!(a["cooldown_reason"], "upstream_error", "{a}");
    let refused = send().await;
    assert_eq!(refused.status(), 503);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "accounts_cooling_down", "{v}");
    assert_eq!(mock.calls("tok-a"), 5);
}

#[tokio::test]
async fn a_deactivated_workspace_disables_the_account_with_the_reason() {
    let mock = MockUpstream::start().await;
    let mut deactivated = status(402);
    deactivated.error_code = Some("deactivated_workspace".into());
    mock.script("tok-a", vec![deactivated]);
    // Control: the same 402 without that code is billing, which only cools.
    mock.script("tok-b", vec![status(402)]);
    let gw = Gateway::start(&with_admin(config(
        &mock,
        &[
            oauth("a", "tok-a"),
            oauth("b", "tok-b"),
            oauth("c", "tok-c"),
        ],
        "",
    )));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.calls("tok-c"), 1);
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "disabled", "{a}");
    assert!(
        a["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("workspace or organisation is deactivated"),
        "{a}"
    );
    let b = account(&gw, "b").await;
    assert_eq!(b["state"], "cooling", "{b}");
    assert_eq!(b["cooldown_reason"], "payment_required", "{b}");
    // Disabled stays disabled: later requests never reach it.
    for _ in 0..3 {
        assert_eq!(
            post(&gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    assert_eq!(mock.calls("tok-a"), 1);
}
