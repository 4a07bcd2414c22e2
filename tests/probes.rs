//! Active health probes end to end (issue 21 item 2): an account out for an error is probed with
//! the free model list and comes back early when it answers; a quota wait is left alone;
//! `subrelay accounts test NAME` runs one on demand.

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

use common::*;
use serde_json::Value;

const ADMIN: &str = "admin-token-for-tests-0123";

fn yaml(mock: &MockUpstream, gateway_extra: &str) -> String {
    format!(
        "admin:\n  token: {ADMIN}\n{}",
        config(
            mock,
            &[
                apikey("a", "tok-a"),
                apikey("b", "tok-b"),
                apikey("c", "tok-c")
            ],
            gateway_extra
        )
    )
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

fn models_calls(mock: &MockUpstream, credential: &str) -> usize {
    mock.requests()
        .iter()
        .filter(|r| r.path == "/v1/models" && r.credential.as_deref() == Some(credential))
        .count()
}

fn status(code: u16) -> Behavior {
    Behavior {
        status: Some(code),
        ..Default::default()
    }
}

#[tokio::test]
async fn an_account_out_for_an_error_is_probed_back_but_a_quota_wait_is_not() {
    let mock = MockUpstream::start().await;
    // a: overloaded (cools 10 min); b: rate-limited until a reset 30 min away; c serves.
    mock.script("tok-a", vec![status(529)]);
    let mut limited = status(429);
    limited.headers = vec![("retry-after".into(), "1800".into())];
    mock.script("tok-b", vec![limited]);
    let gw = Gateway::start(&yaml(&mock, "  probe_interval: 1\n"));
    let r = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(mock.calls("tok-c"), 1);
    // The probe of a passes (the model list answers) and a is back long before its 10 min.
    gw.wait_for_log("health probe: answered 200").await;
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "available", "{a}");
    assert_eq!(a["last_probe"]["ok"], true, "{a}");
    // b waits for its quota reset: never probed, still cooling.
    let b = account(&gw, "b").await;
    assert_eq!(b["state"], "cooling", "{b}");
    assert_eq!(b["last_probe"], Value::Null, "{b}");
    assert_eq!(models_calls(&mock, "tok-b"), 0);
    assert!(models_calls(&mock, "tok-a") >= 1);
}

#[tokio::test]
async fn a_failing_probe_keeps_the_account_out() {
    let mock = MockUpstream::start().await;
    // a fails with 529, then its model list answers 503.
    mock.script(
        "tok-a",
        vec![status(529), status(503), status(503), status(503)],
    );
    let gw = Gateway::start(&yaml(&mock, "  probe_interval: 1\n"));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    gw.wait_for_log("health probe: answered 503").await;
    let a = account(&gw, "a").await;
    assert_eq!(a["state"], "cooling", "{a}");
    assert_eq!(a["last_probe"]["ok"], false, "{a}");
}

#[tokio::test]
async fn accounts_test_runs_a_probe_on_demand() {
    let mock = MockUpstream::start().await;
    mock.script("tok-b", vec![status(401)]);
    let gw = Gateway::start(&yaml(&mock, "  probe_interval: 0\n"));
    let config_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config_file.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();
    // Run off the test's thread: the mock answers the probe on this runtime meanwhile.
    let cli = |name: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_subrelay"));
        command
            .args(["accounts", "test", name, "--url", &gw.url, "--config"])
            .arg(config_file.path());
        async move {
            tokio::task::spawn_blocking(move || command.output().unwrap())
                .await
                .unwrap()
        }
    };
    let out = cli("a").await;
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("account a test passed: answered 200 OK"),
        "{text}"
    );
    let out = cli("b").await;
    assert!(
        !out.status.success(),
        "a failed probe exits non-zero: {out:?}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("account b test failed: answered 401"),
        "{text}"
    );
    assert_eq!(
        (models_calls(&mock, "tok-a"), models_calls(&mock, "tok-b")),
        (1, 1)
    );
    assert_eq!(
        mock.total_calls(),
        2,
        "probes use no API call but the model list"
    );
}
