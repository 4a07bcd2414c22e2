//! The official OpenAI Python SDK (installed by .ci/run) makes streaming and non-streaming
//! `responses.create` calls through subrelay and must parse both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;

#[tokio::test]
async fn openai_sdk_through_an_apikey_account() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("api", "tok-api")], ""));
    let base = format!("{}/v1", gw.url);
    run_python("openai", "sdk_responses.py", &[&base, KEY, "gpt-5"]).await;
}

#[tokio::test]
async fn openai_sdk_through_a_codex_signin_account() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[oauth("codex", "tok-codex")], ""));
    let base = format!("{}/v1", gw.url);
    run_python("openai", "sdk_responses.py", &[&base, KEY, "gpt-5.1-codex"]).await;
}
