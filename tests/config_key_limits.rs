//! Limits on keys declared in the config file (`api_keys:`), enforced like those of keys created
//! at runtime (tests/admin_limits.rs): requests per minute, daily and monthly spending, allowed
//! models and expiry (RFC 3339 and unix seconds). Each refusal comes before any account is
//! reached; a key without the limit is served alongside as the control. A config key's
//! concurrency limit is proven in tests/pool.rs, its `enabled: false` in tests/relay_edges.rs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use common::*;
use serde_json::Value;

fn gateway(mock: &MockUpstream) -> Gateway {
    Gateway::start(&format!(
        "api_keys:
  - {{key: sk-free, name: free}}
  - {{key: sk-rpm, name: rpm, rpm_limit: 2}}
  - {{key: sk-daily, name: daily, daily_spend_limit: 0.0000001}}
  - {{key: sk-monthly, name: monthly, monthly_spend_limit: 0.0000001}}
  - {{key: sk-narrow, name: narrow, allowed_models: [gpt-5]}}
  - {{key: sk-expired-rfc, name: expired-rfc, expires_at: '2001-01-01T00:00:00Z'}}
  - {{key: sk-expired-unix, name: expired-unix, expires_at: 1000000000}}
  - {{key: sk-future, name: future, expires_at: '2100-01-01T00:00:00Z'}}
accounts:
  - {{name: a, platform: openai, type: apikey, api_key: tok-a, base_url: '{}/v1'}}
",
        mock.url()
    ))
}

async fn send(gw: &Gateway, key: &str, model: &str) -> reqwest::Response {
    client()
        .post(gw.responses_url())
        .bearer_auth(key)
        .json(&body(model, false))
        .send()
        .await
        .unwrap()
}

/// A refusal: the status, the OpenAI error shape, the code and a message naming `needle`;
/// and the upstream was not called for it.
async fn refused(
    gw: &Gateway,
    mock: &MockUpstream,
    key: &str,
    model: &str,
    status: u16,
    code: &str,
    needle: &str,
) {
    let calls = mock.total_calls();
    let response = send(gw, key, model).await;
    assert_eq!(response.status().as_u16(), status, "{key}");
    if status == 429 {
        let retry = response.headers().get("retry-after").unwrap();
        assert!(retry.to_str().unwrap().parse::<u64>().unwrap() >= 1);
    }
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], code, "{error}");
    assert!(error["error"]["type"].is_string(), "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(needle),
        "{message:?} should name {needle:?}"
    );
    assert_eq!(mock.total_calls(), calls, "{key}: no account was reached");
}

async fn served(gw: &Gateway, key: &str, model: &str) {
    let response = send(gw, key, model).await;
    assert_eq!(
        response.status(),
        200,
        "{key}: {}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_config_keys_rpm_limit_answers_429_after_the_limit() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock);
    served(&gw, "sk-rpm", "gpt-5").await;
    served(&gw, "sk-rpm", "gpt-5").await;
    refused(
        &gw,
        &mock,
        "sk-rpm",
        "gpt-5",
        429,
        "key_rpm_limit",
        "2 requests per minute",
    )
    .await;
    // The limit is the key's own.
    for _ in 0..3 {
        served(&gw, "sk-free", "gpt-5").await;
    }
}

#[tokio::test]
async fn a_config_keys_spending_limits_refuse_once_spent() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock);
    let mut recorded = 0;
    for (key, name, which) in [
        ("sk-daily", "daily", "daily"),
        ("sk-monthly", "monthly", "monthly"),
    ] {
        // Under the limit: served, and its cost counts.
        served(&gw, key, "gpt-5").await;
        recorded += 1;
        let records = gw.wait_for_usage(recorded).await;
        let record = records.iter().find(|r| r["key"] == name).unwrap();
        assert!(record["cost_usd"].as_f64().unwrap() > 0.0, "{record}");
        refused(
            &gw,
            &mock,
            key,
            "gpt-5",
            429,
            &format!("key_{which}_spend_limit"),
            &format!("{which} spending limit"),
        )
        .await;
    }
    served(&gw, "sk-free", "gpt-5").await;
}

#[tokio::test]
async fn a_config_keys_allowed_models_refuse_other_models_with_403() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock);
    served(&gw, "sk-narrow", "gpt-5").await;
    refused(
        &gw,
        &mock,
        "sk-narrow",
        "gpt-5-mini",
        403,
        "model_not_allowed",
        "may not use model \"gpt-5-mini\"",
    )
    .await;
    served(&gw, "sk-free", "gpt-5-mini").await;
}

#[tokio::test]
async fn a_config_key_past_its_expiry_gets_401_in_either_time_format() {
    let mock = MockUpstream::start().await;
    let gw = gateway(&mock);
    for key in ["sk-expired-rfc", "sk-expired-unix"] {
        let calls = mock.total_calls();
        let response = send(&gw, key, "gpt-5").await;
        assert_eq!(response.status(), 401, "{key}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            "{error}"
        );
        assert_eq!(mock.total_calls(), calls);
    }
    served(&gw, "sk-future", "gpt-5").await;
}
