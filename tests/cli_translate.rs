//! The real coding agents through translation (issue 16): Claude Code (npm
//! `@anthropic-ai/claude-code`) on a ChatGPT sign-in account, and Codex CLI (npm `@openai/codex`)
//! on a `protocols: [chat]` account, each doing a tool round trip (the fake upstream calls one
//! of the agent's own tools; the agent runs it and sends the result back; the upstream then
//! answers text). `python3 tests/run` installs the pinned versions (tests/npm/package.json) and
//! names them in SUBRELAY_TEST_CLAUDE and SUBRELAY_TEST_CODEX.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The agent's program, from `var`; `None` (after recording the skip) when it is not installed.
fn agent(var: &str, package: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(path) if std::path::Path::new(&path).exists() => Some(path),
        _ => {
            skip_or_fail(&format!("{package} (npm; {var})"));
            None
        }
    }
}

fn with_calls(mock: &MockUpstream, credential: &str) {
    let calls = Behavior {
        tool_calls: Some(1),
        ..Behavior::default()
    };
    mock.script(credential, vec![calls; 64]);
}

/// Runs `command` (at most 3 minutes) and returns its output, failing on a non-zero exit.
async fn run(mut command: tokio::process::Command) -> String {
    command.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the agent finished within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The bodies the upstream received, as JSON.
fn bodies(mock: &MockUpstream, path: &str) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.starts_with(path))
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect()
}

#[tokio::test]
async fn claude_code_does_a_tool_round_trip_on_a_chatgpt_signin() {
    let Some(claude) = agent("SUBRELAY_TEST_CLAUDE", "@anthropic-ai/claude-code") else {
        return;
    };
    let mock = MockUpstream::start().await;
    with_calls(&mock, "tok-codex");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let home = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(claude);
    command
        .args([
            "-p",
            "What is in this directory?",
            "--output-format",
            "json",
        ])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("ANTHROPIC_BASE_URL", &gw.url)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .env("DISABLE_AUTOUPDATER", "1");
    let out = run(command).await;
    let result: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(result["is_error"], false, "{result}");
    assert!(
        !result["result"].as_str().unwrap_or("").is_empty(),
        "{result}"
    );
    // The round trip happened on the Codex backend: a call, then its output sent back.
    let sent = bodies(&mock, "/backend-api/codex/responses");
    let returned = sent.iter().any(|b| {
        b["input"]
            .as_array()
            .is_some_and(|items| items.iter().any(|i| i["type"] == "function_call_output"))
    });
    assert!(returned, "a tool result went back upstream: {sent:#?}");
    assert!(sent
        .iter()
        .all(|b| b["store"] == false && b["stream"] == true));
}

#[tokio::test]
async fn codex_cli_does_a_tool_round_trip_on_a_chat_only_account() {
    let Some(codex) = agent("SUBRELAY_TEST_CODEX", "@openai/codex") else {
        return;
    };
    let mock = MockUpstream::start().await;
    with_calls(&mock, "tok-deepseek");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("deepseek", "openai", "apikey", "tok-deepseek", Some("chat"))],
    ));
    let home = tempfile::tempdir().unwrap();
    let provider = format!(
        "model_providers.subrelay={{name=\"subrelay\", base_url=\"{}/v1\", wire_api=\"responses\", env_key=\"SUBRELAY_API_KEY\"}}",
        gw.url
    );
    let mut command = tokio::process::Command::new(codex);
    command
        .args([
            "exec",
            "--skip-git-repo-check",
            "--sandbox",
            "read-only",
            "-c",
            "model_provider=subrelay",
            "-c",
            &provider,
            "-m",
            "deepseek-chat",
            "List the files here.",
        ])
        .current_dir(home.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("CODEX_HOME", home.path())
        .env("SUBRELAY_API_KEY", KEY);
    run(command).await;
    let sent = bodies(&mock, "/v1/chat/completions");
    let returned = sent.iter().any(|b| {
        b["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"))
    });
    assert!(returned, "a tool result went back upstream: {sent:#?}");
}
