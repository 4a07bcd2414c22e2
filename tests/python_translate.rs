//! The official SDKs on a translating group (issue 16), one per direction: tool round trips,
//! streaming and not, through the real binary against the fake upstream, whose account speaks
//! another API than the client (scripts in tests/python/sdk_translate_*.py).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;

/// The mock answers each request that declares tools and has no tool result yet with one call.
fn with_calls(mock: &MockUpstream, credential: &str) {
    let calls = Behavior {
        tool_calls: Some(1),
        ..Behavior::default()
    };
    mock.script(credential, vec![calls; 16]);
}

#[tokio::test]
async fn anthropic_sdk_on_a_codex_signin_account() {
    let mock = MockUpstream::start().await;
    with_calls(&mock, "tok-codex");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let out = run_python(
        "anthropic",
        "sdk_translate_anthropic.py",
        &[&gw.url, KEY, "claude-sonnet-4-5"],
    )
    .await;
    if out.is_some() {
        assert!(
            mock.requests()
                .iter()
                .all(|r| r.path == "/backend-api/codex/responses"),
            "every request went to the Codex backend"
        );
    }
}

#[tokio::test]
async fn openai_sdk_chat_on_a_codex_signin_account() {
    let mock = MockUpstream::start().await;
    with_calls(&mock, "tok-codex");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("codex", "openai", "oauth", "tok-codex", None)],
    ));
    let base = format!("{}/v1", gw.url);
    run_python(
        "openai",
        "sdk_translate_openai.py",
        &[&base, KEY, "gpt-5.1-codex", "chat"],
    )
    .await;
}

#[tokio::test]
async fn openai_sdk_chat_on_an_anthropic_account() {
    let mock = MockUpstream::start().await;
    with_calls(&mock, "sk-ant-1");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("claude", "anthropic", "apikey", "sk-ant-1", None)],
    ));
    let base = format!("{}/v1", gw.url);
    run_python(
        "openai",
        "sdk_translate_openai.py",
        &[&base, KEY, "sonnet-4-5", "chat"],
    )
    .await;
}

#[tokio::test]
async fn openai_sdk_responses_on_a_chat_only_account() {
    let mock = MockUpstream::start().await;
    with_calls(&mock, "tok-deepseek");
    let gw = Gateway::start(&group_config(
        &mock,
        true,
        &[("deepseek", "openai", "apikey", "tok-deepseek", Some("chat"))],
    ));
    let base = format!("{}/v1", gw.url);
    run_python(
        "openai",
        "sdk_translate_openai.py",
        &[&base, KEY, "deepseek-chat", "responses"],
    )
    .await;
}
