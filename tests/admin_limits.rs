//! Per-key limits set through the admin API, each answered before any account is reached, in
//! the route's protocol shape: OpenAI routes `{"error":{"message","type","code"}}`, Anthropic
//! `/v1/messages` `{"type":"error","error":{"type","message"}}`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use admin_common::*;
use common::*;
use serde_json::{json, Value};

/// One route of each protocol, with a key group that reaches it and a priced model.
#[derive(Clone, Copy)]
struct Route {
    group: &'static str,
    path: &'static str,
    model: &'static str,
}

const OPENAI: Route = Route {
    group: "default",
    path: "/v1/responses",
    model: "gpt-5",
};
const ANTHROPIC: Route = Route {
    group: "claude",
    path: "/v1/messages",
    model: "claude-sonnet-4-5",
};

impl Route {
    fn body(self, model: &str) -> Value {
        if self.path == "/v1/messages" {
            json!({"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
        } else {
            body(model, false)
        }
    }
}

fn yaml(mock: &MockUpstream, data: &std::path::Path) -> String {
    store_config(
        mock,
        data,
        &format!(
            "  - name: claude-up\n    platform: anthropic\n    type: apikey\n    base_url: {}\n    api_key: sk-ant-upstream\n    groups: [claude]\ngroups:\n  - {{name: claude, platform: anthropic}}\n",
            mock.url()
        ),
    )
}

/// Checks status, shape and message of a refusal; returns the body.
async fn refused(route: Route, response: reqwest::Response, status: u16, needle: &str) -> Value {
    assert_eq!(response.status().as_u16(), status);
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
    let body: Value = response.json().await.unwrap();
    let message = if route.path == "/v1/messages" {
        assert_eq!(body["type"], "error", "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        body["error"]["message"].as_str().unwrap().to_owned()
    } else {
        assert!(body["error"]["type"].is_string(), "{body}");
        assert!(body.get("type").is_none(), "{body}");
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(
        message.contains(needle),
        "{message:?} should name {needle:?}"
    );
    if status == 429 {
        assert!(retry_after.is_some_and(|s| s >= 1), "429 needs Retry-After");
    }
    body
}

#[tokio::test]
async fn rpm_limits_answer_429_with_retry_after_in_both_shapes() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&mock, data.path()));
    for route in [OPENAI, ANTHROPIC] {
        let key = create_key(
            &gw,
            json!({"name": format!("rpm-{}", route.group), "group": route.group, "rpm_limit": 2}),
        )
        .await;
        for _ in 0..2 {
            let ok = send_as(&gw, &key, route.path, &route.body(route.model)).await;
            assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
        }
        let calls = mock.total_calls();
        let response = send_as(&gw, &key, route.path, &route.body(route.model)).await;
        let body = refused(route, response, 429, "2 requests per minute").await;
        if route.path == "/v1/messages" {
            assert_eq!(body["error"]["type"], "rate_limit_error");
        } else {
            assert_eq!(body["error"]["code"], "key_rpm_limit");
        }
        assert_eq!(mock.total_calls(), calls, "no account was reached");
    }
}

#[tokio::test]
async fn spending_limits_answer_429_naming_the_limit_in_both_shapes() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&mock, data.path()));
    let mut recorded = 0;
    for route in [OPENAI, ANTHROPIC] {
        for (limit, which) in [
            ("daily_spend_limit", "daily"),
            ("monthly_spend_limit", "monthly"),
        ] {
            let name = format!("{which}-{}", route.group);
            let key = create_key(
                &gw,
                json!({"name": name, "group": route.group, limit: 0.000_000_1}),
            )
            .await;
            // Under the limit: served, and its cost counts.
            let ok = send_as(&gw, &key, route.path, &route.body(route.model)).await;
            assert_eq!(ok.status(), 200);
            ok.bytes().await.unwrap();
            recorded += 1;
            let records = gw.wait_for_usage(recorded).await;
            let record = records.iter().find(|r| r["key"] == name.as_str()).unwrap();
            assert!(record["cost_usd"].as_f64().unwrap() > 0.0, "{record}");

            let calls = mock.total_calls();
            let response = send_as(&gw, &key, route.path, &route.body(route.model)).await;
            refused(route, response, 429, &format!("{which} spending limit")).await;
            assert_eq!(mock.total_calls(), calls, "no account was reached");
        }
    }
}

#[tokio::test]
async fn expired_disabled_and_unknown_model_keys_are_refused_in_both_shapes() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&yaml(&mock, data.path()));
    let past = subrelay::store::now_secs() - 10;
    for route in [OPENAI, ANTHROPIC] {
        let g = route.group;
        let expired = create_key(
            &gw,
            json!({"name": format!("old-{g}"), "group": g, "expires_at": past}),
        )
        .await;
        let response = send_as(&gw, &expired, route.path, &route.body(route.model)).await;
        refused(route, response, 401, "expired").await;

        let disabled = create_key(&gw, json!({"name": format!("off-{g}"), "group": g})).await;
        let ok = send_as(&gw, &disabled, route.path, &route.body(route.model)).await;
        assert_eq!(ok.status(), 200);
        let (status, _) = admin(
            &gw,
            "POST",
            &format!("/admin/api/keys/off-{g}/disable"),
            None,
        )
        .await;
        assert_eq!(status, 200);
        let response = send_as(&gw, &disabled, route.path, &route.body(route.model)).await;
        refused(route, response, 401, "disabled").await;

        let narrow = create_key(
            &gw,
            json!({"name": format!("narrow-{g}"), "group": g, "allowed_models": [route.model]}),
        )
        .await;
        let ok = send_as(&gw, &narrow, route.path, &route.body(route.model)).await;
        assert_eq!(ok.status(), 200);
        let calls = mock.total_calls();
        let response = send_as(&gw, &narrow, route.path, &route.body("some-other-model")).await;
        let body = refused(route, response, 403, "may not use model").await;
        if route.path == "/v1/messages" {
            assert_eq!(body["error"]["type"], "permission_error");
        } else {
            assert_eq!(body["error"]["code"], "model_not_allowed");
        }
        assert_eq!(mock.total_calls(), calls, "no account was reached");

        // A limit lifted through the admin API applies to the next request.
        let (status, _) = admin(
            &gw,
            "PATCH",
            &format!("/admin/api/keys/narrow-{g}"),
            Some(json!({"allowed_models": null})),
        )
        .await;
        assert_eq!(status, 200);
        let calls = mock.total_calls();
        let ok = send_as(&gw, &narrow, route.path, &route.body("some-other-model")).await;
        assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
        assert_eq!(mock.total_calls(), calls + 1, "the account served it");
        let served = mock.requests().into_iter().last().unwrap();
        let sent: Value = serde_json::from_slice(&served.body).unwrap();
        assert_eq!(sent["model"], "some-other-model");
    }
}
