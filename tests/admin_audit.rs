//! The audit trail (issue 19) through the real binary: every source of an admin change (admin
//! token, CLI, dashboard session, SIGHUP, the admin API's reload, `config.watch`) leaves one row
//! with the right who and what; secrets never reach the store; the list pages by cursor and
//! filters; a read-only request records nothing; and `config.watch` reloads a changed file
//! without SIGHUP while a broken one leaves the running configuration.

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

use std::process::Command;
use std::time::{Duration, Instant};

use admin_common::*;
use common::*;
use serde_json::{json, Value};

/// The whole trail, newest first.
async fn trail(gw: &Gateway) -> Vec<Value> {
    let (status, page) = admin(gw, "GET", "/admin/api/audit?limit=1000", None).await;
    assert_eq!(status, 200, "{page}");
    page["entries"].as_array().unwrap().clone()
}

/// The entries of `action`.
fn of<'a>(entries: &'a [Value], action: &str) -> Vec<&'a Value> {
    entries.iter().filter(|e| e["action"] == action).collect()
}

/// Waits (up to 20 s) until the trail holds an entry of `action` by `actor`.
async fn wait_for_entry(gw: &Gateway, action: &str, actor: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entries = trail(gw).await;
        if let Some(e) = entries
            .iter()
            .find(|e| e["action"] == action && e["actor"] == actor)
        {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no {action} by {actor}: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn cli(gw: &Gateway, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(args)
        .arg("--config")
        .arg(gw.config_path())
        .arg("--url")
        .arg(&gw.url)
        .env_remove("SUBRELAY_CONFIG")
        .env_remove("ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in to the dashboard: the cookie pair and the session's CSRF token.
async fn dashboard_session(gw: &Gateway) -> (String, String) {
    let response = no_redirects()
        .post(format!("{}/admin/login", gw.url))
        .json(&json!({ "token": ADMIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = no_redirects()
        .get(format!("{}/admin/", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find(r#"name="csrf-token" content=""#).unwrap() + 27;
    let csrf: String = html[at..].chars().take_while(|c| *c != '"').collect();
    (cookie, csrf)
}

#[tokio::test]
async fn every_source_of_change_is_recorded_once_with_who_and_what_and_no_secret() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), ""));

    // Positive control: reads (admin listings, the trail itself, a relayed request) record
    // nothing.
    for path in [
        "/admin/api/keys",
        "/admin/api/accounts",
        "/admin/api/groups",
        "/admin/api/usage",
    ] {
        assert_eq!(admin(&gw, "GET", path, None).await.0, 200, "{path}");
    }
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert!(trail(&gw).await.is_empty(), "{:#?}", trail(&gw).await);

    // The admin token.
    let alice = create_key(&gw, json!({ "name": "alice" })).await;
    // The CLI (the same token, sent by `subrelay`'s own client).
    let (ok, out, err) = cli(&gw, &["keys", "create", "bob"]);
    assert!(ok, "{out}{err}");
    let bob = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("sk-"))
        .unwrap()
        .to_owned();
    // A dashboard session.
    let (cookie, csrf) = dashboard_session(&gw).await;
    let disabled = client()
        .post(format!("{}/admin/api/keys/alice/disable", gw.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(disabled.status(), 200);
    // An account with a secret, then its secret replaced.
    let account_secret = "sk-account-secret-audit-0001";
    let new_secret = "sk-account-secret-audit-0002";
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(json!({
            "name": "extra", "platform": "openai", "type": "apikey",
            "base_url": format!("{}/v1", mock.url()), "api_key": account_secret,
        })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = admin(
        &gw,
        "PATCH",
        "/admin/api/accounts/extra",
        Some(json!({ "api_key": new_secret, "priority": 5 })),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    // A reload by SIGHUP (the file gains a key), then one through the admin API.
    let reloaded_secret = "sk-reloaded-secret-audit-0003";
    gw.edit_config(|text| {
        text.replace(
            "api_keys:\n",
            &format!("api_keys:\n  - {{key: {reloaded_secret}, name: carol}}\n"),
        )
    });
    gw.sighup();
    let sighup = wait_for_entry(&gw, "config.reload", "reload (SIGHUP)").await;
    let (status, answer) = admin(&gw, "POST", "/admin/api/reload", None).await;
    assert_eq!(status, 200, "{answer}");

    let entries = trail(&gw).await;
    let one = |action: &str| {
        let found = of(&entries, action);
        assert_eq!(found.len(), 1, "{action}: {entries:#?}");
        found[0].clone()
    };
    let key_creates = of(&entries, "key.create");
    assert_eq!(key_creates.len(), 2, "{entries:#?}");
    let by_target = |target: &str| {
        *key_creates
            .iter()
            .find(|e| e["target"] == target)
            .unwrap_or_else(|| panic!("no key.create {target}: {entries:#?}"))
    };
    let alice_row = by_target("alice");
    assert_eq!(alice_row["actor"], "admin-token");
    assert_eq!(alice_row["client"], "127.0.0.1");
    assert_eq!(alice_row["before"], Value::Null);
    assert_eq!(alice_row["after"]["group"], "default");
    assert_eq!(by_target("bob")["actor"], "cli");

    let disable = one("key.disable");
    assert_eq!(disable["target"], "alice");
    let who = disable["actor"].as_str().unwrap();
    assert!(who.starts_with("dashboard (session "), "{who}");
    assert_eq!(disable["before"]["enabled"], true);
    assert_eq!(disable["after"]["enabled"], false);

    let created = one("account.create");
    assert_eq!(created["target"], "extra");
    assert!(created["after"].get("api_key").is_none(), "{created}");
    let updated = one("account.update");
    assert_eq!(updated["before"]["priority"], 0);
    assert_eq!(updated["after"]["priority"], 5);
    // Which secret changed is said, never its value.
    assert_eq!(updated["after"]["api_key"], "[redacted]");

    assert_eq!(sighup["target"], gw.config_path().display().to_string());
    assert_eq!(sighup["client"], Value::Null);
    let carol = sighup["after"]["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "carol")
        .unwrap_or_else(|| panic!("{sighup:#}"));
    assert_eq!(carol["key"], "[redacted]", "{sighup:#}");
    let api_reload = of(&entries, "config.reload")
        .into_iter()
        .find(|e| e["actor"] == "reload (API)")
        .unwrap_or_else(|| panic!("{entries:#?}"))
        .clone();
    assert_eq!(api_reload["client"], "127.0.0.1");
    assert_eq!(api_reload["after"]["requested_by"], "admin-token");
    assert_eq!(of(&entries, "config.reload").len(), 2, "{entries:#?}");
    assert_eq!(entries.len(), 7, "{entries:#?}");

    // `subrelay audit`: a table, and the API's JSON.
    let (ok, table, err) = cli(&gw, &["audit", "--limit", "3"]);
    assert!(ok, "{err}");
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains("config.reload"), "{table}");
    assert_eq!(table.lines().count(), 1 + 3 + 1, "{table}");
    let (ok, out, err) = cli(&gw, &["audit", "--json", "--action", "key."]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["key.disable", "key.create", "key.create"]);
    let (ok, out, err) = cli(&gw, &["audit", "--json", "--since", "1h"]);
    assert!(ok, "{err}");
    let recent: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(recent["entries"].as_array().unwrap().len(), 7, "{recent}");
    let (ok, _, err) = cli(&gw, &["audit", "--limit", "1001"]);
    assert!(!ok, "a page is at most 1000 rows");
    assert!(err.contains("1001"), "{err}");

    // No secret anywhere in the database: the keys handed out, the account's credentials old
    // and new, the key the reload added, the admin token.
    drop(gw);
    let bytes = database_bytes(dir.path());
    assert!(
        contains(&bytes, "key.disable"),
        "the trail is in these files"
    );
    for secret in [
        alice.as_str(),
        bob.as_str(),
        account_secret,
        new_secret,
        reloaded_secret,
        ADMIN,
    ] {
        assert!(!contains(&bytes, secret), "{secret} is in the store");
    }
}

#[tokio::test]
async fn the_trail_pages_by_cursor_and_filters_by_action_and_time() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), ""));
    for i in 0..5 {
        let (status, answer) = admin(
            &gw,
            "POST",
            "/admin/api/groups",
            Some(json!({ "name": format!("g{i}"), "platform": "openai" })),
        )
        .await;
        assert_eq!(status, 201, "{answer}");
    }
    create_key(&gw, json!({ "name": "k" })).await;

    let mut seen = Vec::new();
    let mut cursor: Option<i64> = None;
    let mut pages = 0;
    loop {
        let path = match cursor {
            Some(c) => format!("/admin/api/audit?action=group.&limit=2&cursor={c}"),
            None => "/admin/api/audit?action=group.&limit=2".to_owned(),
        };
        let (status, page) = admin(&gw, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for e in page["entries"].as_array().unwrap() {
            seen.push(e["target"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["g4", "g3", "g2", "g1", "g0"]);

    let (_, keys) = admin(&gw, "GET", "/admin/api/audit?action=key.", None).await;
    assert_eq!(keys["entries"].as_array().unwrap().len(), 1, "{keys}");
    let future = 4_000_000_000_i64;
    let (_, later) = admin(
        &gw,
        "GET",
        &format!("/admin/api/audit?since={future}"),
        None,
    )
    .await;
    assert!(later["entries"].as_array().unwrap().is_empty(), "{later}");
    let (_, earlier) = admin(
        &gw,
        "GET",
        &format!("/admin/api/audit?until={future}"),
        None,
    )
    .await;
    assert_eq!(earlier["entries"].as_array().unwrap().len(), 6, "{earlier}");
    for bad in ["limit=0", "limit=1001", "since=soon"] {
        let (status, answer) = admin(&gw, "GET", &format!("/admin/api/audit?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}: {answer}");
        assert!(answer["error"]["message"].is_string(), "{answer}");
    }
    // Without the token: refused, in the admin error shape.
    let anonymous = client()
        .get(format!("{}/admin/api/audit", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// Replaces the config file the way many editors save: a new file renamed over the old one.
fn replace_config(gw: &Gateway, text: &str) {
    use std::io::Write;
    let dir = gw.config_path().parent().unwrap();
    let mut next = tempfile::NamedTempFile::new_in(dir).unwrap();
    next.write_all(text.as_bytes()).unwrap();
    next.persist(gw.config_path()).unwrap();
}

#[tokio::test]
async fn config_watch_reloads_a_changed_file_and_keeps_the_running_one_when_broken() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), "config:\n  watch: true\n"));
    let new_key = "sk-watched-key-0123456789";
    let request = || async {
        client()
            .post(gw.responses_url())
            .bearer_auth(new_key)
            .json(&body("gpt-5", false))
            .send()
            .await
            .unwrap()
            .status()
    };
    // Control: the key is unknown before the change.
    assert_eq!(request().await, 401);

    let original = std::fs::read_to_string(gw.config_path()).unwrap();
    let changed = original.replace(
        "api_keys:\n",
        &format!("api_keys:\n  - {{key: {new_key}, name: watched}}\n"),
    );
    assert_ne!(changed, original);
    replace_config(&gw, &changed);
    // No SIGHUP: the watch reloads, and the trail says so.
    let entry = wait_for_entry(&gw, "config.reload", "reload (watch)").await;
    assert!(
        entry["after"]["api_keys"].is_array(),
        "api_keys applied: {entry:#}"
    );
    assert_eq!(request().await, 200);

    // A broken file (written in place this time) is refused; the running configuration stays.
    std::fs::write(
        gw.config_path(),
        changed.replace(
            "api_keys:\n",
            "gateway:\n  max_account_switches: lots\napi_keys:\n",
        ),
    )
    .unwrap();
    let line = gw.wait_for_log("configuration reload refused").await;
    assert!(line.contains("max_account_switches"), "{line}");
    assert_eq!(request().await, 200);
    // A refused file changes nothing and records nothing.
    assert_eq!(of(&trail(&gw).await, "config.reload").len(), 1);
}

#[tokio::test]
async fn rows_older_than_the_retention_are_pruned_at_start_and_newer_ones_stay() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = store_config(&mock, dir.path(), "");
    let gw = Gateway::start(&yaml);
    create_key(&gw, json!({ "name": "old" })).await;
    create_key(&gw, json!({ "name": "new" })).await;
    drop(gw);
    // `old`'s row is moved back 400 days, past the default retention of 365.
    let db = dir.path().join("subrelay.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let moved = sqlx::query("UPDATE audit SET at_ms = at_ms - 400 * 86400000 WHERE target = 'old'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 1);
    pool.close().await;

    let gw = Gateway::start(&yaml);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let targets: Vec<String> = trail(&gw)
            .await
            .iter()
            .map(|e| e["target"].as_str().unwrap().to_owned())
            .collect();
        if targets == ["new"] {
            break;
        }
        assert!(Instant::now() < deadline, "not pruned: {targets:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_row_that_cannot_be_stored_is_logged_and_the_change_still_applies() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), ""));
    // The store refuses every audit row from now on (a second connection to the running
    // gateway's database; SQLite's WAL lets it write beside the gateway).
    let db = dir.path().join("subrelay.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let raw = create_key(&gw, json!({ "name": "unaudited" })).await;
    let line = gw.wait_for_log("its row could not be stored").await;
    assert!(line.contains("key.create"), "{line}");
    assert!(line.contains("unaudited"), "{line}");
    assert!(line.contains("audit refused by the test"), "{line}");
    assert!(!line.contains(&raw), "the key is not logged: {line}");
    // The change applies: the key serves.
    let status = client()
        .post(gw.responses_url())
        .bearer_auth(&raw)
        .json(&body("gpt-5", false))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    assert!(trail(&gw).await.is_empty());
}

#[tokio::test]
async fn each_kind_of_change_is_named_by_its_action_and_target() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), ""));
    let call = |method: &'static str, path: &'static str, body: Option<Value>| {
        let gw = &gw;
        async move {
            let (status, answer) = admin(gw, method, path, body).await;
            assert!(status < 300, "{method} {path}: {status} {answer}");
        }
    };
    call(
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "g", "platform": "openai"})),
    )
    .await;
    call(
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "k", "group": "g"})),
    )
    .await;
    call("PATCH", "/admin/api/keys/k", Some(json!({"rpm_limit": 7}))).await;
    call("DELETE", "/admin/api/keys/k", None).await;
    call("DELETE", "/admin/api/groups/g", None).await;
    call(
        "POST",
        "/admin/api/accounts",
        Some(json!({
            "name": "a", "platform": "openai", "type": "apikey",
            "base_url": format!("{}/v1", mock.url()), "api_key": "sk-audit-kinds-secret",
        })),
    )
    .await;
    call("POST", "/admin/api/accounts/a/reset", None).await;
    call("DELETE", "/admin/api/accounts/a", None).await;
    // A refused change (the config's own key) records nothing.
    let (status, _) = admin(&gw, "DELETE", "/admin/api/keys/tester", None).await;
    assert_eq!(status, 409);

    let mut entries = trail(&gw).await;
    entries.reverse();
    let seen: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("group.create", "g"),
        ("key.create", "k"),
        ("key.update", "k"),
        ("key.delete", "k"),
        ("group.delete", "g"),
        ("account.create", "a"),
        ("account.reset", "a"),
        ("account.delete", "a"),
    ];
    assert_eq!(
        seen,
        expected
            .iter()
            .map(|(a, t)| ((*a).to_owned(), (*t).to_owned()))
            .collect::<Vec<_>>()
    );
    let update = &entries[2];
    assert_eq!(update["before"]["rpm_limit"], 0);
    assert_eq!(update["after"]["rpm_limit"], 7);
    assert_eq!(entries[3]["after"], Value::Null, "a deletion has no after");
    assert_eq!(entries[3]["before"]["name"], "k");
}
