//! The store through the real binary: runtime keys work at once and after a restart, admin-created
//! accounts join the pool at the next start, usage rows survive, the database holds neither the
//! raw key nor an upstream token, and a wrong encryption key stops the start without changing
//! anything.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use std::process::{Command, Stdio};

use admin_common::*;
use common::*;
use serde_json::json;

const ADMIN_ACCOUNT_SECRET: &str = "sk-admin-created-upstream-secret-42";

#[tokio::test]
async fn keys_accounts_and_usage_survive_a_restart_and_no_secret_is_stored_in_clear() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let yaml = store_config(&mock, data.path(), "");

    let mut gw = Gateway::start(&yaml);
    let raw = create_key(&gw, json!({"name": "runtime"})).await;
    assert!(raw.starts_with("sk-sr-"));
    // Works for the very next request.
    let response = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );

    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(json!({
            "name": "added", "platform": "openai", "type": "apikey",
            "base_url": format!("{}/v1", mock.url()), "api_key": ADMIN_ACCOUNT_SECRET,
            "priority": 5,
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(!created.to_string().contains(ADMIN_ACCOUNT_SECRET));

    let rows = wait_for_stored_usage(&gw, 2).await;
    let keys: Vec<&str> = rows.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert!(
        keys.contains(&"runtime") && keys.contains(&"tester"),
        "{keys:?}"
    );
    assert!(rows
        .iter()
        .all(|r| r["priced"] == true && r["cost_usd"].as_f64().unwrap() > 0.0));

    gw.sigterm();
    assert!(gw.wait_exit().success());
    let bytes = database_bytes(data.path());
    assert!(contains(&bytes, "runtime"), "the scan must see the rows");
    for secret in [raw.as_str(), KEY, UPSTREAM_TOKEN, ADMIN_ACCOUNT_SECRET] {
        assert!(
            !contains(&bytes, secret),
            "{secret} is in the database file"
        );
    }

    let gw = Gateway::start(&yaml);
    let response = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    wait_for_stored_usage(&gw, 3).await;
    let (_, accounts) = admin(&gw, "GET", "/admin/api/accounts", None).await;
    let live: Vec<&str> = accounts["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(live, ["up", "added"], "the stored account joined the pool");
    let (_, key) = admin(&gw, "GET", "/admin/api/keys/runtime", None).await;
    assert_eq!(key["source"], "admin");
    assert_eq!(key["suffix"].as_str().unwrap(), &raw[raw.len() - 4..]);
}

#[tokio::test]
async fn config_entries_are_marked_and_refused_by_the_admin_api() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let (_, keys) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert_eq!(keys["keys"][0]["name"], "tester");
    assert_eq!(keys["keys"][0]["source"], "config");
    for (method, path, body) in [
        (
            "PATCH",
            "/admin/api/keys/tester",
            Some(json!({"rpm_limit": 1})),
        ),
        ("POST", "/admin/api/keys/tester/disable", None),
        ("DELETE", "/admin/api/keys/tester", None),
        (
            "PATCH",
            "/admin/api/accounts/up",
            Some(json!({"enabled": false})),
        ),
        ("DELETE", "/admin/api/accounts/up", None),
        ("DELETE", "/admin/api/groups/default", None),
    ] {
        let (status, answer) = admin(&gw, method, path, body).await;
        assert_eq!(status, 409, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "declared_in_config");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("config file"),
            "{answer}"
        );
    }
    // Credentials are write-only: the account listing never has them.
    let (_, accounts) = admin(&gw, "GET", "/admin/api/accounts/up", None).await;
    assert_eq!(accounts["source"], "config");
    assert!(!accounts.to_string().contains(UPSTREAM_TOKEN));
}

#[tokio::test]
async fn a_wrong_encryption_key_refuses_to_start_and_changes_nothing() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let right = "11".repeat(32);
    let wrong = "22".repeat(32);
    let yaml = store_config(&mock, data.path(), "").replace(
        "storage:\n",
        "storage:\n  encryption_key: env:TEST_ENCRYPTION_KEY\n",
    );

    let mut gw = Gateway::start_with_env(&yaml, &[("TEST_ENCRYPTION_KEY", &right)]);
    gw.sigterm();
    assert!(gw.wait_exit().success());
    assert!(
        !data.path().join("encryption.key").exists(),
        "a configured key is not written to the data directory"
    );
    let before = std::fs::read(data.path().join("subrelay.db")).unwrap();

    let config_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config_file.path(), format!("server:\n  port: 0\n{yaml}")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(["serve", "--config"])
        .arg(config_file.path())
        .env("TEST_ENCRYPTION_KEY", &wrong)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("encryption key does not match"), "{stderr}");
    assert_eq!(
        std::fs::read(data.path().join("subrelay.db")).unwrap(),
        before,
        "nothing was written with the wrong key"
    );

    let gw = Gateway::start_with_env(&yaml, &[("TEST_ENCRYPTION_KEY", &right)]);
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_generated_encryption_key_is_owner_only_and_announced() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let line = gw.wait_for_log("generated the encryption key").await;
    assert!(line.contains("back it up"), "{line}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for file in ["encryption.key", "key_hash.key", "subrelay.db"] {
            let mode = std::fs::metadata(data.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{file} is readable by others");
        }
    }
}

/// The live state of each account, by name: (state, cooldown reason or disabled reason).
async fn pool_states(gw: &Gateway) -> Vec<(String, String, String)> {
    let (_, answer) = admin(gw, "GET", "/admin/api/accounts", None).await;
    answer["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let why = a["cooldown_reason"]
                .as_str()
                .or(a["disabled_reason"].as_str())
                .unwrap_or("-");
            (
                a["name"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                why.to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_disable_and_a_rate_limit_outlive_a_restart_until_the_credential_changes() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let second = |token: &str| {
        format!(
            "  - name: second\n    platform: openai\n    type: apikey\n    base_url: {}/v1\n    api_key: {token}\n    priority: 1\n",
            mock.url()
        )
    };
    let yaml = store_config(&mock, data.path(), &second("sk-second-token"));
    let mut gw = Gateway::start(&yaml);
    mock.script(
        UPSTREAM_TOKEN,
        vec![Behavior {
            status: Some(429),
            headers: vec![("retry-after".into(), "3600".into())],
            ..Default::default()
        }],
    );
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    mock.script(
        "sk-second-token",
        vec![Behavior {
            status: Some(401),
            ..Default::default()
        }],
    );
    // The only account left answers 401: the client gets a 502 in the OpenAI shape that says
    // the credentials were refused (the client's own key is fine).
    let refused = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(refused.status(), 502);
    let error: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["type"], "upstream_error", "{error}");
    assert_eq!(error["error"]["code"], "upstream_status_401", "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rejected the credentials"),
        "{error}"
    );
    // Once for the failover of the first request, once for this one (the first account rests).
    assert_eq!(mock.calls("sk-second-token"), 2);
    let before = pool_states(&gw).await;
    assert_eq!(before[0].1, "cooling");
    assert_eq!(before[0].2, "rate_limited");
    assert_eq!(before[1].1, "disabled", "{before:?}");

    gw.sigterm();
    assert!(gw.wait_exit().success());
    let mut gw = Gateway::start(&yaml);
    assert_eq!(pool_states(&gw).await, before);
    gw.wait_for_log("keep the state they had before the restart")
        .await;

    // A new credential for the disabled account: it starts fresh; the rate limit stays.
    gw.sigterm();
    assert!(gw.wait_exit().success());
    let yaml = store_config(&mock, data.path(), &second("sk-second-token-new"));
    let gw = Gateway::start(&yaml);
    let after = pool_states(&gw).await;
    assert_eq!(after[0], before[0]);
    assert_eq!(after[1].1, "available", "{after:?}");
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
}
