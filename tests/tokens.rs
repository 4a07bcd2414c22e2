//! Sign-in token refresh end to end against the fake token endpoint: ahead of expiry, on a
//! 401, single-flight under load, persisted across a restart, and `invalid_grant`.

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

/// Every file under `dir`, recursively, concatenated (the database, its WAL, the key files).
fn files_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all.extend(files_bytes(&path));
        } else if path.is_file() {
            all.extend(std::fs::read(path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The sealed tokens row of `account`, read from the store's database while the gateway runs.
async fn sealed_row(data_dir: &std::path::Path, account: &str) -> Option<Vec<u8>> {
    let db = std::fs::read_dir(data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "db"))
        .expect("the store's database file");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let row: Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT sealed FROM account_tokens WHERE name = ?")
            .bind(account)
            .fetch_optional(&pool)
            .await
            .unwrap();
    pool.close().await;
    row.map(|(sealed,)| sealed)
}

#[tokio::test]
async fn tokens_are_refreshed_ahead_of_expiry_and_encrypted_at_rest() {
    let mock = MockUpstream::start().await;
    // Expires in 10 min; refresh_ahead is 30 min by default: due at start.
    let gw = Gateway::start(&signin_config(
        &mock,
        &[("codex", "access-0", "rt-seed", 600)],
        "",
    ));
    // Logged once the new tokens are stored and installed.
    gw.wait_for_log("sign-in token refreshed").await;
    assert_eq!(mock.token_calls(), 1);
    let issued = mock.issued_access_tokens();
    assert_eq!(issued, ["at-1"]);
    let dir = gw.data_dir.as_ref().unwrap().path();
    let sealed = sealed_row(dir, "codex")
        .await
        .expect("the refreshed tokens are stored");
    let files = files_bytes(dir);
    // Positive control: the scan sees the stored row (the sealed bytes are in the files).
    assert!(
        contains(&files, &sealed),
        "the scan reads what the store wrote"
    );
    // Second control: the same scan finds a token written in the clear.
    let control = tempfile::tempdir().unwrap();
    std::fs::write(
        control.path().join("plain.json"),
        b"{\"refresh_token\":\"rt-1\"}",
    )
    .unwrap();
    assert!(contains(&files_bytes(control.path()), b"rt-1"));
    for secret in [issued[0].as_str(), "rt-1", "rt-seed", "access-0"] {
        assert!(
            !contains(&files, secret.as_bytes()),
            "{secret} is not stored in the clear"
        );
    }
    assert!(!contains(&sealed, b"rt-1") && !contains(&sealed, b"at-1"));
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
async fn rotated_tokens_are_saved_before_the_new_access_token_is_used() {
    let mock = MockUpstream::start().await;
    // The first use of the new token never answers (the gateway is killed while it waits);
    // its next use is refused, which makes the gateway refresh again.
    mock.script(
        "at-1",
        vec![
            Behavior {
                hang_before_headers: true,
                ..Default::default()
            },
            Behavior {
                status: Some(401),
                error_code: Some("token_expired".into()),
                ..Default::default()
            },
        ],
    );
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
    let url = first.responses_url();
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(KEY)
            .json(&body("gpt-5.1-codex", false))
            .send()
            .await
    });
    // The refresh spent rt-seed and issued at-1/rt-1; at-1 is now in use upstream.
    wait_until("the new access token upstream", || mock.calls("at-1") == 1).await;
    // kill -9 while the upstream call is open: nothing after it ran.
    drop(first);
    assert!(pending.await.unwrap().is_err(), "the gateway was killed");

    // rt-seed is spent: only rt-1, if it was stored before at-1 was used, keeps the account.
    let second = Gateway::start(&yaml);
    second.wait_for_log("use tokens saved in").await;
    assert_eq!(
        post(&second, "/v1/responses", &body("gpt-5.1-codex", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.token_calls(), 2);
    let refreshes: Vec<Value> = mock
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/oauth/token"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(refreshes[0]["refresh_token"], "rt-seed");
    assert_eq!(
        refreshes[1]["refresh_token"], "rt-1",
        "the restart refreshed with the rotated token it had saved"
    );
    assert_eq!(
        mock.calls("at-1"),
        2,
        "the saved access token was used first"
    );
    assert_eq!(mock.calls("at-2"), 1);
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
