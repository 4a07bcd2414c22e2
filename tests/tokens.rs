//! Sign-in token refresh end to end against the fake token endpoint: ahead of expiry, on a
//! 401, single-flight under load, persisted across a restart, and `invalid_grant`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests-0123";

fn rfc3339(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let at = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs.unsigned_abs())
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Sign-in accounts with refresh tokens against the mock's token endpoint.
fn signin_config(mock: &MockUpstream, accounts: &[(&str, &str, &str, i64)], extra: &str) -> String {
    let mut yaml = format!(
        "admin:\n  token: {ADMIN}\noauth:\n  openai_token_url: {}/oauth/token\n{extra}\napi_keys:\n  - key: {KEY}\naccounts:\n",
        mock.url()
    );
    for (i, (name, access, refresh, expires_in)) in accounts.iter().enumerate() {
        yaml.push_str(&format!(
            "  - name: {name}\n    platform: openai\n    type: oauth\n    base_url: {}/backend-api/codex\n    access_token: {access}\n    refresh_token: {refresh}\n    chatgpt_account_id: acct-{name}\n    expires_at: {}\n    priority: {i}\n",
            mock.url(),
            rfc3339(*expires_in)
        ));
    }
    yaml
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every file of the data directory, concatenated (the database, its WAL, the key files).
fn data_dir_bytes(gw: &Gateway) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(gw.data_dir.as_ref().unwrap().path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry_and_saved_before_use() {
    let mock = MockUpstream::start().await;
    // Expires in 10 min; refresh_ahead is 30 min by default: due at start.
    let gw = Gateway::start(&signin_config(
        &mock,
        &[("codex", "access-0", "rt-seed", 600)],
        "",
    ));
    wait_until("the background refresh", || mock.token_calls() == 1).await;
    let issued = mock.issued_access_tokens();
    // Saved (the restart test proves it) and sealed: the issued tokens never appear in clear on
    // disk.
    let files = data_dir_bytes(&gw);
    assert!(
        !contains(&files, &issued[0]),
        "the access token is encrypted at rest"
    );
    assert!(
        !contains(&files, "rt-1"),
        "the rotated refresh token is encrypted at rest"
    );
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    let used = mock
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/responses"))
        .unwrap();
    assert_eq!(used.credential.as_deref(), Some(issued[0].as_str()));
}

#[tokio::test]
async fn fifty_requests_on_an_expired_token_share_one_refresh() {
    let mock = MockUpstream::start().await;
    mock.set_token_delay(Duration::from_millis(300));
    let gw = Gateway::start(&signin_config(
        &mock,
        &[("codex", "expired-access", "rt-seed", -60)],
        "  refresh_ahead: 0\n",
    ));
    let mut requests = Vec::new();
    for _ in 0..50 {
        let url = gw.responses_url();
        requests.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5.1-codex", false))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for r in requests {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_eq!(mock.token_calls(), 1, "one refresh for all fifty");
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert!(mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/responses"))
        .all(|r| r.credential.as_deref() == Some(issued[0].as_str())));
}

#[tokio::test]
async fn a_restart_uses_the_saved_tokens_not_the_spent_refresh_token() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let yaml = signin_config(
        &mock,
        &[("codex", "expired-access", "rt-seed", -60)],
        &format!(
            "  refresh_ahead: 0\nstorage:\n  data_dir: {}\n",
            data.path().display()
        ),
    )
    .replace("\n\napi_keys", "\napi_keys");
    let first = Gateway::start(&yaml);
    assert_eq!(
        post(&first, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.token_calls(), 1);
    drop(first);

    // The config still says rt-seed, which the mock now treats as spent (invalid_grant).
    let second = Gateway::start(&yaml);
    second.wait_for_log("use tokens saved in").await;
    assert_eq!(
        post(&second, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        mock.token_calls(),
        1,
        "no second refresh: the saved token is still fresh"
    );
    let last = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/responses"))
        .last()
        .unwrap();
    assert_eq!(
        last.credential.as_deref(),
        Some(mock.issued_access_tokens()[0].as_str())
    );
}

#[tokio::test]
async fn a_401_refreshes_and_retries_the_same_account_once() {
    let mock = MockUpstream::start().await;
    mock.script(
        "stale-access",
        vec![Behavior {
            status: Some(401),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&signin_config(
        &mock,
        &[
            ("codex", "stale-access", "rt-seed", 86400),
            ("spare", "spare-access", "rt-spare", 86400),
        ],
        "  refresh_ahead: 0\n",
    ));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.token_calls(), 1);
    assert_eq!(mock.calls("stale-access"), 1);
    assert_eq!(
        mock.calls(&mock.issued_access_tokens()[0]),
        1,
        "the retry used the new token"
    );
    assert_eq!(mock.calls("spare-access"), 0, "no failover was needed");
}

#[tokio::test]
async fn a_refused_refresh_token_disables_the_account_with_the_reason() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&signin_config(
        &mock,
        &[
            ("codex", "expired-access", "revoked-refresh", -60),
            ("spare", "spare-access", "rt-spare", 86400),
        ],
        "  refresh_ahead: 0\n",
    ));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.calls("spare-access"), 1, "the request failed over");
    let v: Value = client()
        .get(format!("{}/admin/api/accounts", gw.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codex = &v["accounts"][0];
    assert_eq!(codex["state"], "disabled", "{codex}");
    assert!(
        codex["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{codex}"
    );
    assert!(
        !v.to_string().contains("revoked-refresh"),
        "no token in the admin API"
    );
}
