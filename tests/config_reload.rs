//! Configuration reload without a restart (issue 19): SIGHUP and `subrelay reload` re-read the
//! file the real binary was started with; a file that does not load is refused whole.

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
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

const ADMIN: &str = "admin-token-0123456789";

/// Waits (up to 20 s) until `n` log lines contain `needle`; returns the last of them.
async fn wait_for_nth_log(gw: &Gateway, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found: Vec<String> = gw
            .logs()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect();
        if found.len() >= n {
            return found[n - 1].clone();
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {n} log lines with {needle:?}: {:#?}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_with(gw: &Gateway, key: &str, body: &serde_json::Value) -> reqwest::Response {
    client()
        .post(gw.responses_url())
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn reload_cli(gw: &Gateway) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .arg("reload")
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

#[tokio::test]
async fn a_key_added_to_the_file_is_accepted_after_sighup() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    let pid = gw.pid();
    // Control: the new key is not known before the reload.
    assert_eq!(
        post_with(&gw, "sk-second", &body("gpt-5", false))
            .await
            .status(),
        401
    );

    gw.edit_config(|text| {
        text.replace(
            "api_keys:\n",
            "api_keys:\n  - key: sk-second\n    name: second\n",
        )
    });
    gw.sighup();
    let line = wait_for_nth_log(&gw, "configuration reloaded", 1).await;
    assert!(line.contains("api_keys"), "{line}");

    assert_eq!(
        post_with(&gw, "sk-second", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(gw.pid(), pid);
}

#[tokio::test]
async fn an_invalid_file_is_refused_whole_and_counted() {
    let mock = MockUpstream::start().await;
    let yaml = config(&mock, &[apikey("a", "tok-a")], "") + "metrics:\n  listen: 127.0.0.1:0\n";
    let gw = Gateway::start(&yaml);
    let line = gw.wait_for_log("Prometheus metrics on http://").await;
    let at = line.find("http://").unwrap();
    let metrics: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();

    // The client key is replaced by another one, and one setting is invalid.
    let replace_key = |text: String| {
        text.replace(
            &format!("  - key: {KEY}\n    name: tester\n"),
            "  - key: sk-other\n    name: other\n",
        )
    };
    gw.edit_config(|text| {
        replace_key(text).replace("gateway:\n", "gateway:\n  max_account_switches: lots\n")
    });
    gw.sighup();
    let line = wait_for_nth_log(&gw, "configuration reload refused", 1).await;
    assert!(line.contains("max_account_switches"), "{line}");
    // Nothing of the file applied: the old key still works, the new one does not.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(
        post_with(&gw, "sk-other", &body("gpt-5", false))
            .await
            .status(),
        401
    );
    let text = client()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"subrelay_config_reloads_total{outcome="error"} 1"#),
        "{text}"
    );

    // Control: the same key change in a valid file applies.
    gw.edit_config(|text| text.replace("  max_account_switches: lots\n", ""));
    gw.sighup();
    wait_for_nth_log(&gw, "configuration reloaded", 1).await;
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        401
    );
    assert_eq!(
        post_with(&gw, "sk-other", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let text = client()
        .get(&metrics)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"subrelay_config_reloads_total{outcome="ok"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn subrelay_reload_applies_a_gateway_limit_and_names_what_needs_a_restart() {
    let mock = MockUpstream::start().await;
    let yaml = config(&mock, &[apikey("a", "tok-a")], "") + &format!("admin:\n  token: {ADMIN}\n");
    let gw = Gateway::start(&yaml);
    let mut big = body("gpt-5", false);
    big["instructions"] = serde_json::Value::String("x".repeat(3000));
    // Control: the default limit takes the body.
    assert_eq!(post(&gw, "/v1/responses", &big).await.status(), 200);

    gw.edit_config(|text| {
        text.replace("gateway:\n", "gateway:\n  max_body_size: 2000\n")
            .replace("server:\n  port: 0\n", "server:\n  port: 0\n  workers: 2\n")
    });
    let (ok, out, err) = reload_cli(&gw);
    assert!(ok, "{out}{err}");
    assert!(out.contains("in effect now: gateway"), "{out}");
    assert!(
        out.contains("applied only after a restart: server.workers"),
        "{out}"
    );
    let warned = gw.wait_for_log("cannot change while running").await;
    assert!(warned.contains("server.workers"), "{warned}");

    assert_eq!(post(&gw, "/v1/responses", &big).await.status(), 413);
}

#[tokio::test]
async fn a_stream_in_flight_on_a_removed_account_finishes_on_it() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            events: Some(40),
            event_interval: Duration::from_millis(100),
            ..Default::default()
        }],
    );
    let yaml = config(&mock, &[apikey("a", "tok-a")], "") + &format!("admin:\n  token: {ADMIN}\n");
    let gw = Gateway::start(&yaml);
    let response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    // The stream is under way on account a.
    while !text.contains("response.output_text.delta") {
        let chunk = stream.next().await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }

    // Account a leaves the file; account b takes its place.
    gw.edit_config(|text| {
        text.replace("name: a\n", "name: b\n")
            .replace("tok-a", "tok-b")
    });
    let (ok, out, err) = reload_cli(&gw);
    assert!(ok, "{out}{err}");
    assert!(out.contains("accounts"), "{out}");

    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    assert!(
        event_types(&text).contains(&"response.completed".to_string()),
        "{text}"
    );
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["account"], "a");
    assert_eq!(records[0]["status"], 200);

    // New requests go to the new account.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["account"], "b");
}

#[tokio::test]
async fn log_level_changes_on_reload() {
    let mock = MockUpstream::start().await;
    let yaml = config(&mock, &[apikey("a", "tok-a")], "") + &format!("admin:\n  token: {ADMIN}\n");
    let gw = Gateway::start(&yaml);
    // Control: at `info,usage=debug` each request's usage line is logged.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    gw.wait_for_usage(1).await;

    gw.edit_config(|text| text.replace("level: info,usage=debug", "level: info"));
    gw.sighup();
    let line = wait_for_nth_log(&gw, "configuration reloaded", 1).await;
    assert!(line.contains("log.level"), "{line}");

    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    // Its row in the store: the usage line, if any, was written before the row was queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = client()
            .get(format!("{}/admin/api/usage?limit=10", gw.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if rows.contains(&id) {
            break;
        }
        assert!(Instant::now() < deadline, "no stored row for {id}: {rows}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A later line on the same stdout: everything written before it has been read.
    let later = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    let later_id = later.headers()["x-request-id"].to_str().unwrap().to_owned();
    wait_for_nth_log(&gw, &later_id, 1).await;
    assert!(
        gw.usage_records()
            .iter()
            .all(|r| r["request_id"] != id.as_str()),
        "{:#?}",
        gw.logs()
    );
    assert_eq!(gw.usage_records().len(), 1);
}
