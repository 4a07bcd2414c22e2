//! The binary's command line: `check-config`, `--version`, `--help`, environment overrides, and
//! `serve` with no config file.

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

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// The binary, run in cargo's scratch directory for tests rather than the repository: nothing a
/// command writes relative to its working directory can land in the repository.
fn subrelay() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_subrelay"));
    command.current_dir(env!("CARGO_TARGET_TMPDIR"));
    command
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let f = config_file(
        "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: sk-inline-secret}\napi_keys:\n  - key: env:CLIENT_KEY\n",
    );
    let out = subrelay()
        .args(["check-config", "--config"])
        .arg(f.path())
        .env("CLIENT_KEY", "sk-client-secret")
        .env("GATEWAY_MAX_ACCOUNT_SWITCHES", "4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        !text.contains("sk-inline-secret") && !text.contains("sk-client-secret"),
        "{text}"
    );
    assert!(
        text.contains("<redacted>") && text.contains("env:CLIENT_KEY"),
        "{text}"
    );
    assert!(text.contains("max_account_switches: 4"), "{text}");
    assert!(
        text.contains(
            "# gateway.max_account_switches from environment variable GATEWAY_MAX_ACCOUNT_SWITCHES"
        ),
        "{text}"
    );
}

#[test]
fn check_config_exits_2_naming_the_key() {
    let f = config_file("gateway:\n  stream_keepalive_interval: 3\n");
    let out = subrelay()
        .args(["check-config", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("gateway.stream_keepalive_interval = 3: must be 0 (off) or 5–30 seconds"),
        "{err}"
    );
    let out = subrelay()
        .args(["check-config"])
        .env("GATEWAY_OPENAI_COMPACT_NONSTREAM_KEEPALIVE_INTERVAL", "abc")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("gateway.openai_compact_nonstream_keepalive_interval = \"abc\" (from environment variable GATEWAY_OPENAI_COMPACT_NONSTREAM_KEEPALIVE_INTERVAL): must be 0 (off) or 5–60 seconds"), "{err}");
}

#[test]
fn serve_refuses_a_bad_config_with_exit_2() {
    let f = config_file("gateway:\n  nonsense: 1\n");
    let out = subrelay()
        .args(["serve", "--config"])
        .arg(f.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("gateway.nonsense: unknown field"));
}

#[test]
fn version_and_help() {
    let out = subrelay().arg("--version").output().unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("subrelay "));
    let out = subrelay().arg("--help").output().unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("serve") && help.contains("check-config"),
        "{help}"
    );
}

#[test]
fn serve_without_a_config_file_starts_and_says_what_to_do_next() {
    // Without a config file the data directory is the default `./data`: in a directory of the
    // test's own, never the repository's (or the user's real) `./data`.
    let cwd = tempfile::tempdir().unwrap();
    let mut command = subrelay();
    // Port 0 instead of the default 8080, which another process may hold on a shared machine.
    without_config_env(&mut command)
        .arg("serve")
        .current_dir(cwd.path())
        .env("SERVER_PORT", "0")
        .stdout(Stdio::piped());
    let (mut child, url, lines) = spawn_and_wait(command);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = lines.lock().unwrap().join("\n");
        if text.contains("no API keys") {
            assert!(
                text.contains("no upstream accounts: add one under `accounts:`"),
                "{text}"
            );
            assert!(text.contains("built-in defaults"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn environment_overrides_reach_the_running_gateway() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start_with_env(
        &config(&mock, &[apikey("a", "tok-a")], ""),
        &[("GATEWAY_MAX_BODY_SIZE", "2048")],
    );
    let mut big = body("gpt-5", false);
    big["instructions"] = serde_json::Value::String("x".repeat(4096));
    assert_eq!(post(&gw, "/v1/responses", &big).await.status(), 413);
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn sigterm_drains_a_request_in_flight_before_exiting() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-a",
        vec![Behavior {
            events: Some(10),
            event_interval: std::time::Duration::from_millis(100),
            ..Default::default()
        }],
    );
    let mut gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    let mut response = post(&gw, "/v1/responses", &body("gpt-5", true)).await;
    response.chunk().await.unwrap();
    gw.sigterm();
    let text = response.text().await.unwrap();
    assert_eq!(
        event_types(&text).last().map(String::as_str),
        Some("response.completed")
    );
    assert!(gw.wait_exit().success());
    assert_eq!(gw.usage_records().len(), 1);
}
