//! `groups[].model_fallback` end to end (issue 21 item 5): when no account can serve the model
//! asked for now, the next model of the group's list is tried; the usage record keeps both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::Value;

fn yaml(mock: &MockUpstream, fallback: bool) -> String {
    let groups = if fallback {
        "groups:\n  - {name: default, platform: openai, model_fallback: {gpt-5.5: [gpt-5.4, gpt-5.2]}}\n"
    } else {
        ""
    };
    format!(
        "{groups}api_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n  - {{name: big, platform: openai, type: apikey, api_key: tok-big, base_url: '{u}/v1', models: [gpt-5.5]}}\n  - {{name: small, platform: openai, type: apikey, api_key: tok-small, base_url: '{u}/v1', models: [gpt-5.4]}}\n",
        u = mock.url()
    )
}

fn sent_models(mock: &MockUpstream, credential: &str) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.credential.as_deref() == Some(credential))
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["model"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_cooling_model_falls_back_to_the_next_and_the_record_says_so() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-big",
        vec![Behavior {
            status: Some(429),
            headers: vec![("retry-after".into(), "600".into())],
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&yaml(&mock, true));
    // big answers 429 (and cools): the same request moves on to gpt-5.4 on small.
    let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
    assert_eq!(r.status(), 200);
    // big is cooling: straight to the fallback.
    let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
    assert_eq!(r.status(), 200);
    let records = gw.wait_for_usage(2).await;
    for record in &records {
        assert_eq!(record["model"], "gpt-5.4", "{record}");
        assert_eq!(record["client_model"], "gpt-5.5", "{record}");
    }
    let tried: Vec<usize> = records
        .iter()
        .map(|r| r["attempts"].as_array().unwrap().len())
        .collect();
    assert_eq!(tried, [2, 1]);
    assert_eq!(sent_models(&mock, "tok-small"), ["gpt-5.4", "gpt-5.4"]);
    assert_eq!(sent_models(&mock, "tok-big"), ["gpt-5.5"]);
    gw.wait_for_log("falling back (groups[].model_fallback)")
        .await;
}

#[tokio::test]
async fn without_a_fallback_the_request_is_refused_while_the_model_cools() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-big",
        vec![Behavior {
            status: Some(429),
            headers: vec![("retry-after".into(), "600".into())],
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&yaml(&mock, false));
    let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
    assert_eq!(r.status(), 429);
    assert_eq!(mock.calls("tok-small"), 0);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["model"], "gpt-5.5");
    assert!(records[0].get("client_model").is_none(), "{}", records[0]);
}

#[tokio::test]
async fn a_model_whose_accounts_are_out_of_quota_falls_back_before_any_429() {
    let mock = MockUpstream::start().await;
    // big's window is full after one call; it reports so on that answer.
    mock.set_quota(
        "tok-big",
        subrelay_mock::Quota {
            five_hour: 97.0,
            per_call: 3.0,
            ..Default::default()
        },
    );
    let gw = Gateway::start(&yaml(&mock, true));
    for _ in 0..2 {
        let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!((mock.calls("tok-big"), mock.calls("tok-small")), (1, 1));
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["model"], "gpt-5.4");
    assert_eq!(records[1]["client_model"], "gpt-5.5");
}

/// The same on an Anthropic group: an overloaded Claude model falls back to the next one.
#[tokio::test]
async fn claude_models_fall_back_on_an_anthropic_group() {
    let mock = MockUpstream::start().await;
    mock.script(
        "sk-ant-opus",
        vec![Behavior {
            status: Some(529),
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&format!(
        "groups:\n  - {{name: claude, platform: anthropic, model_fallback: {{claude-opus-4-5: [claude-sonnet-4-5]}}}}\napi_keys:\n  - {{key: {KEY}, name: c, group: claude}}\naccounts:\n  - {{name: opus, platform: anthropic, type: apikey, api_key: sk-ant-opus, base_url: '{u}', groups: [claude], models: [claude-opus-4-5]}}\n  - {{name: sonnet, platform: anthropic, type: apikey, api_key: sk-ant-sonnet, base_url: '{u}', groups: [claude], models: [claude-sonnet-4-5]}}\n",
        u = mock.url()
    ));
    let r = client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", KEY)
        .json(&serde_json::json!({
            "model": "claude-opus-4-5",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["model"], "claude-sonnet-4-5", "{v}");
    assert_eq!(sent_models(&mock, "sk-ant-sonnet"), ["claude-sonnet-4-5"]);
    let records = gw.wait_for_usage(1).await;
    assert_eq!(records[0]["client_model"], "claude-opus-4-5");
}

/// A fallback added to the file applies to the next request after a reload (SIGHUP).
#[tokio::test]
async fn a_fallback_added_by_sighup_applies_to_the_next_request() {
    let mock = MockUpstream::start().await;
    mock.script(
        "tok-big",
        vec![Behavior {
            status: Some(429),
            headers: vec![("retry-after".into(), "600".into())],
            ..Default::default()
        }],
    );
    let gw = Gateway::start(&yaml(&mock, false));
    let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
    assert_eq!(r.status(), 429, "no fallback yet, and big cools");

    let groups = yaml(&mock, true);
    let groups = &groups[..groups.find("api_keys:").unwrap()];
    gw.edit_config(|text| text.replacen("api_keys:", &format!("{groups}api_keys:"), 1));
    gw.sighup();
    gw.wait_for_log("configuration reloaded").await;
    let r = post(&gw, "/v1/responses", &body("gpt-5.5", false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent_models(&mock, "tok-small"), ["gpt-5.4"]);
    let records = gw.wait_for_usage(2).await;
    assert_eq!(records[1]["model"], "gpt-5.4");
    assert_eq!(records[1]["client_model"], "gpt-5.5");
}
