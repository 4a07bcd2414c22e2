//! A newcomer's first hour (issue 14): the access log, what start-up and the CLI say when the admin
//! API is off, the data directory (next to the config file, locked, not created by a start that
//! fails), log levels, colours, and spending limits on unpriced models. Everything runs the real
//! binary, with every file in the test's own temporary directories.

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
use serde_json::Value;

fn subrelay() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_subrelay"));
    // Nothing from the machine's environment may change what these tests see.
    for name in [
        "SUBRELAY_CONFIG",
        "ADMIN_TOKEN",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "LOG_ACCESS",
    ] {
        command.env_remove(name);
    }
    command
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::File::create(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Runs a `serve` that is expected to stop on its own; one that is still running after 30 s (a
/// start that did not refuse) is killed and fails the test instead of hanging it.
fn output_of_a_start_that_stops(command: &mut Command) -> std::process::Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the start did not stop: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The output lines so far once one contains `needle` (`spawn_and_wait` returns as soon as it saw
/// the address, possibly before that line was stored).
fn text_with(lines: &std::sync::Mutex<Vec<String>>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let text = lines.lock().unwrap().join("\n");
        if text.contains(needle) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The `access` lines of a JSON log.
fn access_lines(gw: &Gateway) -> Vec<Value> {
    gw.logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect()
}

// === the access log ===

#[tokio::test]
async fn a_401_a_404_and_a_200_each_write_one_access_line_without_key_material() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("acct-a", "upstream-secret-a")], ""));
    let wrong_key = "sk-wrong-secret-1234";

    let refused = client()
        .post(gw.responses_url())
        .bearer_auth(wrong_key)
        .json(&body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let missing = client()
        .get(format!("{}/v1/nothing-here?token=abc", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let ok = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(ok.status(), 200);
    let ok_id = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let ok_bytes = ok.bytes().await.unwrap().len() as u64;
    // The relayed request's line is written when its task ends, just before its usage record.
    gw.wait_for_usage(1).await;

    let lines = access_lines(&gw);
    assert_eq!(lines.len(), 3, "one line per request: {lines:#?}");
    let by_id =
        |id: &str| -> Vec<&Value> { lines.iter().filter(|l| l["request_id"] == id).collect() };

    let l401 = by_id(&refused_id);
    assert_eq!(l401.len(), 1, "{lines:#?}");
    let l401 = l401[0];
    assert_eq!(l401["status"], 401);
    assert_eq!(l401["route"], "/v1/responses");
    assert_eq!(l401["method"], "POST");
    assert_eq!(l401["key"], "-");
    assert_eq!(l401["account"], "-");
    assert!(l401["bytes"].as_u64().unwrap() > 0, "{l401}");

    let l404: Vec<&Value> = lines.iter().filter(|l| l["status"] == 404).collect();
    assert_eq!(l404.len(), 1, "{lines:#?}");
    assert_eq!(l404[0]["route"], "/v1/nothing-here", "no query string");
    assert_eq!(l404[0]["method"], "GET");
    assert_eq!(l404[0]["key"], "-");

    let l200 = by_id(&ok_id);
    assert_eq!(l200.len(), 1, "{lines:#?}");
    let l200 = l200[0];
    assert_eq!(l200["status"], 200);
    assert_eq!(l200["route"], "/v1/responses");
    assert_eq!(l200["key"], "tester");
    assert_eq!(l200["account"], "acct-a");
    assert_eq!(l200["model"], "gpt-5");
    assert_eq!(l200["bytes"], ok_bytes);
    assert!(l200["duration_ms"].is_u64(), "{l200}");
    assert!(l200["timestamp"].is_string(), "{l200}");

    let all = gw.logs().join("\n");
    for secret in [KEY, wrong_key, "upstream-secret-a", "token=abc"] {
        assert!(!all.contains(secret), "{secret} is in the log:\n{all}");
    }
}

#[tokio::test]
async fn log_access_false_turns_the_access_lines_off() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start_with_env(
        &config(&mock, &[apikey("acct-a", "upstream-secret-a")], ""),
        &[("LOG_ACCESS", "false")],
    );
    let refused = client()
        .post(gw.responses_url())
        .bearer_auth("sk-wrong")
        .json(&body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let missing = client()
        .get(format!("{}/v1/nothing-here", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    // Same point as in the test above where the three lines were there (the positive control).
    gw.wait_for_usage(1).await;
    assert_eq!(access_lines(&gw), Vec::<Value>::new());
}

// === spending limits and unpriced models ===

#[tokio::test]
async fn a_key_with_a_spending_limit_refuses_an_unpriced_model_unless_prices_covers_it() {
    let mock = MockUpstream::start().await;
    let yaml = format!(
        "accounts:\n  - {{name: a, platform: openai, type: apikey, api_key: up-a, base_url: \"{}/v1\"}}\napi_keys:\n  - {{name: capped, key: sk-capped-key, daily_spend_limit: 5}}\n  - {{name: open, key: sk-open-key}}\nprices:\n  local-priced: {{input: 1, output: 2}}\n",
        mock.url()
    );
    let gw = Gateway::start(&yaml);
    let send = |key: &'static str, model: &'static str| {
        let url = gw.responses_url();
        async move {
            client()
                .post(url)
                .bearer_auth(key)
                .json(&body(model, false))
                .send()
                .await
                .unwrap()
        }
    };
    let refused = send("sk-capped-key", "local-unpriced").await;
    assert_eq!(refused.status(), 403);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_unpriced", "{error}");
    assert_eq!(error["error"]["type"], "permission_error", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("spending limit")
            && message.contains("\"local-unpriced\" has no price")
            && message.contains("prices:"),
        "{message}"
    );
    // Controls: a price under `prices:`, a shipped price (a model /v1/models lists), and a key
    // without a spending limit all pass.
    assert_eq!(send("sk-capped-key", "local-priced").await.status(), 200);
    assert_eq!(send("sk-capped-key", "gpt-5.4").await.status(), 200);
    assert_eq!(send("sk-open-key", "local-unpriced").await.status(), 200);
}

// === start-up messages and the CLI without an admin token ===

#[tokio::test]
async fn the_start_up_hint_says_to_set_admin_token_while_the_admin_api_is_off() {
    let gw = Gateway::start("");
    gw.wait_for_log("point clients at").await; // the banner's last line
    let text = gw.logs().join("\n");
    assert!(
        text.contains("no API keys: add one under `api_keys:`")
            && text.contains(
                "or set admin.token (for example `admin: {token: env:ADMIN_TOKEN}`) and restart"
            ),
        "{text}"
    );
    assert!(
        !text.contains("subrelay keys create NAME --config"),
        "{text}"
    );
    assert!(
        text.contains("admin API and dashboard off: set admin.token"),
        "{text}"
    );
}

#[tokio::test]
async fn the_start_up_hint_names_the_cli_command_once_the_admin_api_is_on() {
    let gw = Gateway::start_with_env(
        "admin:\n  token: env:ADMIN_TOKEN\n",
        &[("ADMIN_TOKEN", "admin-token-0123456789")],
    );
    gw.wait_for_log("point clients at").await; // the banner's last line
    let text = gw.logs().join("\n");
    assert!(
        text.contains("or with `subrelay keys create NAME --config "),
        "{text}"
    );
    assert!(!text.contains("or set admin.token"), "{text}");
    assert!(
        text.contains("/admin/ (sign in with admin.token)"),
        "{text}"
    );
}

#[test]
fn the_cli_without_a_token_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    // No config at all.
    let out = subrelay()
        .args(["keys", "list"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("--config FILE")
            && err.contains("SUBRELAY_CONFIG=FILE")
            && err.contains("environment variable ADMIN_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("the admin API is off"), "{err}");
    // A config file without admin.token: the file is named, and what to add to it.
    let file = dir.path().join("plain.yaml");
    write(&file, "server:\n  port: 1\n");
    let out = subrelay()
        .args(["keys", "list", "--config"])
        .arg(&file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{} has no admin.token", file.display()))
            && err.contains("admin: {token: env:ADMIN_TOKEN}"),
        "{err}"
    );
    // Control: with ADMIN_TOKEN the CLI has its token and goes on to call the server (port 1:
    // nothing listens there).
    let out = subrelay()
        .args(["keys", "list", "--config"])
        .arg(&file)
        .env("ADMIN_TOKEN", "admin-token-0123456789")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot reach subrelay at http://127.0.0.1:1"),
        "{err}"
    );
}

// === the data directory ===

#[test]
fn a_relative_data_dir_is_next_to_the_config_file_not_the_working_directory() {
    let home = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let file = home.path().join("subrelay.yaml");
    write(&file, "server:\n  port: 0\nstorage:\n  data_dir: ./state\n");
    let mut command = subrelay();
    command
        .args(["serve", "--config"])
        .arg(&file)
        .current_dir(elsewhere.path())
        .stdout(Stdio::piped());
    let (mut child, _url, lines) = spawn_and_wait(command);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        home.path().join("state").join("subrelay.db").exists(),
        "{:#?}",
        lines.lock().unwrap()
    );
    assert!(!elsewhere.path().join("state").exists());
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
}

#[test]
fn a_second_instance_on_the_same_data_dir_stops_at_once_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let yaml = format!("storage:\n  data_dir: {}\n", data.path().display());
    let first = Gateway::start(&yaml);
    let file = tempfile::NamedTempFile::new().unwrap();
    write(file.path(), &format!("server:\n  port: 0\n{yaml}"));
    let out = output_of_a_start_that_stops(subrelay().args(["serve", "--config"]).arg(file.path()));
    assert!(!out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("is in use by another subrelay").count(),
        1,
        "{text}"
    );
    assert!(text.contains("subrelay.lock"), "{text}");
    // Control: once the first one is gone, the same start works.
    drop(first);
    let mut command = subrelay();
    command
        .args(["serve", "--config"])
        .arg(file.path())
        .stdout(Stdio::piped());
    let (mut child, url, _) = spawn_and_wait(command);
    assert!(url.starts_with("http://"));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_start_that_cannot_listen_says_so_once_and_creates_no_data_dir() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("subrelay.yaml");
    write(
        &file,
        &format!(
            "server:\n  port: {port}\nstorage:\n  data_dir: {}\n",
            data.display()
        ),
    );
    let out = output_of_a_start_that_stops(subrelay().args(["serve", "--config"]).arg(&file));
    assert!(!out.status.success(), "{out:?}");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches(&format!("cannot listen on 127.0.0.1:{port}"))
            .count(),
        1,
        "{text}"
    );
    assert!(!data.exists(), "a failed start created {}", data.display());
    // Control: with the port free, the same start creates it.
    drop(holder);
    let mut command = subrelay();
    command
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(Stdio::piped());
    let (mut child, _url, _) = spawn_and_wait(command);
    let _ = child.kill();
    let _ = child.wait();
    assert!(data.join("subrelay.db").exists());
}

// === log levels and colours ===

#[test]
fn an_unknown_log_level_stops_with_exit_2_naming_key_value_and_levels() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subrelay.yaml");
    write(&file, "log:\n  level: verbose\n");
    let out = output_of_a_start_that_stops(
        subrelay()
            .args(["serve", "--config"])
            .arg(&file)
            .current_dir(dir.path()),
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(
            "log.level = \"verbose\": must be a level (trace, debug, info, warn, error, off)"
        ),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
    // Control: a filter with a level per directive is accepted.
    write(&file, "log:\n  level: warn,subrelay=debug\n");
    let out = subrelay()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Pretty logs written to a pipe carry no colour codes; written to a terminal (a pseudo-terminal
/// from `script`, the positive control) they do.
#[test]
fn no_colour_codes_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subrelay.yaml");
    write(&file, "server:\n  port: 0\nlog:\n  format: pretty\n");
    let mut command = subrelay();
    command
        .args(["serve", "--config"])
        .arg(&file)
        .stdout(Stdio::piped());
    let (mut child, _, lines) = spawn_and_wait(command);
    let _ = child.kill();
    let _ = child.wait();
    let piped = text_with(&lines, "listening on");
    assert!(piped.contains("listening on"), "{piped}");
    assert!(!piped.contains('\u{1b}'), "{piped:?}");

    let has_script = Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script && skip_or_fail("script (util-linux) for a pseudo-terminal") {
        return;
    }
    let mut command = Command::new("script");
    command
        .args(["-q", "-f", "-e", "-c"])
        .arg(format!(
            "exec '{}' serve --config '{}'",
            env!("CARGO_BIN_EXE_subrelay"),
            file.display()
        ))
        .arg("/dev/null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let (mut child, _, lines) = spawn_and_wait(command);
    // Closing the pseudo-terminal hangs the server up.
    let _ = child.kill();
    let _ = child.wait();
    let on_terminal = text_with(&lines, "listening on");
    assert!(on_terminal.contains('\u{1b}'), "{on_terminal:?}");
}

// === --help ===

#[test]
fn help_names_every_protocol_not_only_responses() {
    let out = subrelay().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("OpenAI Responses, Chat Completions and Anthropic Messages"),
        "{help}"
    );
}
