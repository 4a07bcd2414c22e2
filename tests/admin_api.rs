//! The admin API's groups, keys and usage end to end, its error shape, its OpenAPI document, and
//! the `subrelay keys` / `subrelay usage` commands on top of it.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use std::process::Command;

use admin_common::*;
use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn groups_and_keys_are_managed_at_runtime() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));

    let (status, group) = admin(
        &gw,
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "team", "platform": "anthropic"})),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(group["source"], "admin");
    let (status, _) = admin(
        &gw,
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "team", "platform": "openai"})),
    )
    .await;
    assert_eq!(status, 409);

    let (status, created) = admin(
        &gw,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "alice", "group": "team", "rpm_limit": 10})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let raw = created["api_key"].as_str().unwrap().to_owned();
    assert_eq!(created["key"]["prefix"].as_str().unwrap(), &raw[..8]);

    // Listings never hold the key again.
    let (_, list) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert!(!list.to_string().contains(&raw));
    let names: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "tester"]);

    // The group is in use; a key cannot name a group that does not exist.
    let (status, _) = admin(&gw, "DELETE", "/admin/api/groups/team", None).await;
    assert_eq!(status, 409);
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/keys",
        Some(json!({"name": "bob", "group": "nowhere"})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["code"], "invalid_request");

    let (status, updated) = admin(
        &gw,
        "PATCH",
        "/admin/api/keys/alice",
        Some(json!({"daily_spend_limit": 2.5, "rpm_limit": 0})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["daily_spend_limit"], 2.5);
    assert_eq!(updated["rpm_limit"], 0);

    // The key reaches Anthropic routes (its group's platform) and stops when deleted.
    let message = json!({"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]});
    let response = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(
        response.status(),
        404,
        "an anthropic key on an OpenAI route"
    );
    let (status, _) = admin(&gw, "DELETE", "/admin/api/keys/alice", None).await;
    assert_eq!(status, 204);
    let response = send_as(&gw, &raw, "/v1/messages", &message).await;
    assert_eq!(response.status(), 401);
    let (status, _) = admin(&gw, "DELETE", "/admin/api/groups/team", None).await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn errors_are_json_in_one_shape_and_the_token_is_required() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (client().get(format!("{}/admin/api/keys", gw.url)), 401),
        (
            client()
                .post(format!("{}/admin/api/keys", gw.url))
                .bearer_auth(ADMIN)
                .header("content-type", "application/json")
                .body("{not json"),
            400,
        ),
        (
            client()
                .post(format!("{}/admin/api/keys", gw.url))
                .bearer_auth(ADMIN)
                .json(&json!({"name": "x", "rpm_limit": -1})),
            400,
        ),
        (
            client()
                .post(format!("{}/admin/api/keys", gw.url))
                .bearer_auth(ADMIN)
                .json(&json!({"name": "has/slash"})),
            400,
        ),
        (
            client()
                .get(format!("{}/admin/api/usage?limit=0", gw.url))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            client()
                .get(format!("{}/admin/api/usage?from=yesterday", gw.url))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            // PostgreSQL refuses a NUL in any text: refused before it reaches the store.
            client()
                .get(format!("{}/admin/api/usage?account=%00", gw.url))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            client()
                .get(format!("{}/admin/api/keys/nobody", gw.url))
                .bearer_auth(ADMIN),
            404,
        ),
    ];
    for (request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "status {status}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn usage_is_filtered_paginated_and_totalled() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let other = create_key(&gw, json!({"name": "other"})).await;
    for _ in 0..3 {
        assert_eq!(
            post(&gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    let response = send_as(&gw, &other, "/v1/responses", &body("my-own-model", true)).await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap();
    wait_for_stored_usage(&gw, 4).await;

    let (_, page) = admin(&gw, "GET", "/admin/api/usage?key=tester&limit=2", None).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["rows"].as_array().unwrap().len(), 2);
    let (_, rest) = admin(
        &gw,
        "GET",
        "/admin/api/usage?key=tester&limit=2&offset=2",
        None,
    )
    .await;
    assert_eq!(rest["rows"].as_array().unwrap().len(), 1);
    let first: Vec<&Value> = page["rows"].as_array().unwrap().iter().collect();
    assert_ne!(first[0]["request_id"], rest["rows"][0]["request_id"]);

    // An unpriced model is recorded with its tokens, cost 0, and says so.
    let (_, mine) = admin(&gw, "GET", "/admin/api/usage?model=my-own-model", None).await;
    let row = &mine["rows"][0];
    assert_eq!(
        (row["key"].as_str(), row["priced"].as_bool()),
        (Some("other"), Some(false))
    );
    assert_eq!(row["cost_usd"], 0.0);
    assert!(row["input_tokens"].as_i64().unwrap() > 0);

    let (_, account) = admin(&gw, "GET", "/admin/api/usage?account=up", None).await;
    assert_eq!(account["total"], 4);
    let future = subrelay::store::now_secs() + 3600;
    let (_, none) = admin(&gw, "GET", &format!("/admin/api/usage?from={future}"), None).await;
    assert_eq!(none["total"], 0);

    let (_, by_key) = admin(&gw, "GET", "/admin/api/usage/totals?by=key", None).await;
    let totals = by_key["totals"].as_array().unwrap();
    assert_eq!(totals.len(), 2);
    assert_eq!(
        (totals[1]["bucket"].as_str(), totals[1]["requests"].as_i64()),
        (Some("tester"), Some(3))
    );
    assert!(totals[1]["cost_usd"].as_f64().unwrap() > 0.0);
    let (_, by_day) = admin(&gw, "GET", "/admin/api/usage/totals", None).await;
    assert_eq!(by_day["by"], "day");
    assert_eq!(by_day["totals"][0]["requests"], 4);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let doc: Value = client()
        .get(format!("{}/admin/api/openapi.json", gw.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/admin/api/accounts",
        "/admin/api/accounts/{name}",
        "/admin/api/accounts/{name}/reset",
        "/admin/api/groups",
        "/admin/api/groups/{name}",
        "/admin/api/keys",
        "/admin/api/keys/{name}",
        "/admin/api/keys/{name}/disable",
        "/admin/api/usage",
        "/admin/api/usage/totals",
        "/admin/api/prices",
        "/admin/api/prices/{model}",
    ] {
        assert!(paths.contains_key(path), "{path} is missing");
    }
    assert!(doc["components"]["schemas"]["CreatedKey"].is_object());
    let group = &doc["components"]["schemas"]["GroupView"]["properties"];
    for field in ["translate", "model_map", "model_fallback"] {
        assert!(group[field].is_object(), "GroupView.{field}: {group}");
    }
    assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
}

fn cli(gw: &Gateway, config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--url")
        .arg(&gw.url)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_keys_and_usage_commands_print_tables() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();

    let (ok, out, err) = cli(
        &gw,
        config.path(),
        &[
            "keys",
            "create",
            "carol",
            "--rpm",
            "30",
            "--daily-spend",
            "5",
            "--model",
            "gpt-5",
        ],
    );
    assert!(ok, "{err}");
    let raw = out
        .split_whitespace()
        .find(|w| w.starts_with("sk-sr-"))
        .unwrap()
        .to_owned();
    assert!(out.contains("only time the key is shown"), "{out}");

    let (ok, out, _) = cli(&gw, config.path(), &["keys", "list"]);
    assert!(ok);
    let header = out.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("SPENDING"),
        "{out}"
    );
    let carol = out.lines().find(|l| l.starts_with("carol")).unwrap();
    assert!(
        carol.contains("30/min") && carol.contains("5$/day") && carol.contains("gpt-5"),
        "{carol}"
    );
    assert!(!out.contains(&raw));

    let response = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 200);
    wait_for_stored_usage(&gw, 1).await;
    let (ok, out, err) = cli(
        &gw,
        config.path(),
        &["usage", "--since", "1h", "--key", "carol"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("usage in the last 1h"), "{out}");
    let key_line = out.lines().find(|l| l.starts_with("carol")).unwrap();
    assert!(key_line.split_whitespace().nth(1) == Some("1"), "{out}");
    assert!(
        out.contains("gpt-5") && out.contains("latest requests (1 of 1)"),
        "{out}"
    );

    let (ok, out, _) = cli(&gw, config.path(), &["keys", "disable", "carol"]);
    assert!(ok && out.contains("disabled"), "{out}");
    let response = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 401);
    let (ok, _, err) = cli(&gw, config.path(), &["keys", "disable", "tester"]);
    assert!(!ok && err.contains("config file"), "{err}");
}

#[tokio::test]
async fn accounts_added_changed_and_deleted_at_runtime_serve_without_a_restart() {
    let mock = MockUpstream::start().await;
    // 529 (overloaded) cools at once; a single 500 would only be a strike (issue 21 item 3).
    mock.script(
        UPSTREAM_TOKEN,
        vec![Behavior {
            status: Some(529),
            ..Default::default()
        }],
    );
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(json!({
            "name": "runtime",
            "platform": "openai",
            "type": "apikey",
            "base_url": format!("{}/v1", mock.url()),
            "api_key": "sk-runtime-account-key",
            "priority": 5,
        })),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert!(
        answer["applies"].as_str().unwrap().starts_with("now"),
        "{answer}"
    );
    // The config account fails once; the new account takes over without a restart.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.calls("sk-runtime-account-key"), 1);

    // Disabled at runtime: never selected again (the config account still rests after its
    // 529, so nothing can serve).
    let (status, _) = admin(
        &gw,
        "PATCH",
        "/admin/api/accounts/runtime",
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    let response = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(response.status(), 503);
    assert_eq!(mock.calls("sk-runtime-account-key"), 1);

    // Deleted: gone from the pool's state as well.
    let (status, _) = admin(&gw, "DELETE", "/admin/api/accounts/runtime", None).await;
    assert_eq!(status, 204);
    let (_, pool) = admin(&gw, "GET", "/admin/api/accounts", None).await;
    assert!(!pool.to_string().contains("\"runtime\""), "{pool}");
}

#[tokio::test]
async fn usage_can_be_filtered_by_status() {
    let mock = MockUpstream::start().await;
    mock.script(
        UPSTREAM_TOKEN,
        vec![Behavior {
            status: Some(400),
            ..Default::default()
        }],
    );
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        400
    );
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    wait_for_stored_usage(&gw, 2).await;
    let count = |query: &'static str| {
        let gw = &gw;
        async move {
            let (status, page) = admin(gw, "GET", &format!("/admin/api/usage?{query}"), None).await;
            assert_eq!(status, 200, "{page}");
            page["total"].as_u64().unwrap()
        }
    };
    assert_eq!(count("status=ok").await, 1);
    assert_eq!(count("status=failed").await, 1);
    assert_eq!(count("status=400").await, 1);
    assert_eq!(count("status=429").await, 0);
    let (status, answer) = admin(&gw, "GET", "/admin/api/usage?status=teapot", None).await;
    assert_eq!(status, 400, "{answer}");
}

/// Issue 16: an account's `protocols` through the admin API: set, shown (defaults filled in),
/// checked, and reset with an empty list.
#[tokio::test]
async fn accounts_carry_the_apis_they_speak() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let account = |protocols: Value| {
        json!({
            "name": "deepseek",
            "platform": "openai",
            "type": "apikey",
            "base_url": format!("{}/v1", mock.url()),
            "api_key": "sk-deepseek-account-key",
            "protocols": protocols,
        })
    };
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(account(json!(["grpc"]))),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.to_string().contains("protocols"), "{answer}");
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(account(json!(["messages"]))),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("cannot speak messages"),
        "{answer}"
    );

    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(account(json!(["chat"]))),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["account"]["protocols"], json!(["chat"]), "{answer}");
    let (status, answer) = admin(
        &gw,
        "PATCH",
        "/admin/api/accounts/deepseek",
        Some(json!({"protocols": []})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["account"]["protocols"],
        json!(["responses", "chat"]),
        "the defaults again: {answer}"
    );
}

/// The price of `model` in a `GET /admin/api/prices` answer.
fn price_of<'a>(list: &'a Value, model: &str) -> Option<&'a Value> {
    list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["model"] == model)
}

#[tokio::test]
async fn prices_are_listed_set_checked_and_deleted_through_the_admin_api() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let config = store_config(
        &mock,
        data.path(),
        "prices:\n  cfg-model: {input: 1, output: 2}\n",
    );
    let gw = Gateway::start(&config);
    let list = async || {
        let (status, list) = admin(&gw, "GET", "/admin/api/prices", None).await;
        assert_eq!(status, 200, "{list}");
        list
    };

    let before = list().await;
    let gpt5 = price_of(&before, "gpt-5").unwrap();
    assert_eq!(
        (&gpt5["source"], &gpt5["input"], &gpt5["updated_at"]),
        (&json!("default"), &json!(1.25), &Value::Null)
    );
    let cfg = price_of(&before, "cfg-model").unwrap();
    assert_eq!(cfg["source"], "config", "{cfg}");
    assert_eq!(
        (&cfg["cached_input"], &cfg["cache_creation"]),
        (&json!(1.0), &json!(0.0)),
        "the defaults of the optional fields: {cfg}"
    );
    assert!(price_of(&before, "house-model").is_none());

    // Set: a new model, and an override of a shipped one.
    let (status, set) = admin(
        &gw,
        "PUT",
        "/admin/api/prices/house-model",
        Some(json!({"input": 1.5, "cached_input": 0.15, "output": 3})),
    )
    .await;
    assert_eq!(status, 200, "{set}");
    assert_eq!(
        (&set["model"], &set["source"], &set["cached_input"]),
        (&json!("house-model"), &json!("admin"), &json!(0.15))
    );
    let (status, _) = admin(
        &gw,
        "PUT",
        "/admin/api/prices/gpt-5",
        Some(json!({"input": 9, "output": 9})),
    )
    .await;
    assert_eq!(status, 200);
    let after = list().await;
    assert_eq!(price_of(&after, "house-model").unwrap()["input"], 1.5);
    assert_eq!(price_of(&after, "gpt-5").unwrap()["source"], "admin");
    assert_eq!(price_of(&after, "gpt-5").unwrap()["input"], 9.0);

    // The new price is used for this instance's next record.
    let n = gw.usage_records().len() + 1;
    let r = post(&gw, "/v1/responses", &body("house-model", false)).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap();
    let record = gw.wait_for_usage(n).await.pop().unwrap();
    assert_eq!(record["priced"], true, "{record}");

    // Validation: a clear 400 naming the field; nothing changes.
    for (bad, field) in [
        (json!({"input": -1, "output": 1}), "input"),
        (
            json!({"input": 1, "output": 1, "cache_creation": -0.5}),
            "cache_creation",
        ),
        (json!({"input": 1}), "output"),
        (json!({"input": 1, "output": 1, "discount": 2}), "discount"),
        (json!({"input": "1", "output": 1}), "input"),
    ] {
        let (status, answer) = admin(
            &gw,
            "PUT",
            "/admin/api/prices/house-model",
            Some(bad.clone()),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{bad}: {message}");
    }
    let (status, answer) = admin(
        &gw,
        "PUT",
        "/admin/api/prices/two%20words",
        Some(json!({"input": 1, "output": 1})),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        price_of(&list().await, "house-model").unwrap()["input"],
        1.5
    );

    // The config's price is the file's: refused here.
    let (status, answer) = admin(
        &gw,
        "PUT",
        "/admin/api/prices/cfg-model",
        Some(json!({"input": 5, "output": 5})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    let (status, _) = admin(&gw, "DELETE", "/admin/api/prices/cfg-model", None).await;
    assert_eq!(status, 409);

    // Delete: back to the shipped price, or none; a second delete finds nothing.
    let (status, _) = admin(&gw, "DELETE", "/admin/api/prices/gpt-5", None).await;
    assert_eq!(status, 204);
    let (status, _) = admin(&gw, "DELETE", "/admin/api/prices/house-model", None).await;
    assert_eq!(status, 204);
    let (status, answer) = admin(&gw, "DELETE", "/admin/api/prices/house-model", None).await;
    assert_eq!(status, 404, "{answer}");
    let last = list().await;
    assert_eq!(price_of(&last, "gpt-5").unwrap()["source"], "default");
    assert_eq!(price_of(&last, "gpt-5").unwrap()["input"], 1.25);
    assert!(price_of(&last, "house-model").is_none());

    let (status, trail) = admin(&gw, "GET", "/admin/api/audit?action=price.", None).await;
    assert_eq!(status, 200, "{trail}");
    let actions: Vec<&str> = trail["entries"]
        .as_array()
        .or_else(|| trail["rows"].as_array())
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["price.delete", "price.delete", "price.set", "price.set"]
    );
}

/// An admin price survives a restart; once the config declares that model, the file's price
/// wins (and the admin API can no longer change it).
#[tokio::test]
async fn an_admin_price_survives_a_restart_and_a_config_price_of_the_same_model_wins() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    for model in ["kept-model", "taken-model"] {
        let (status, answer) = admin(
            &gw,
            "PUT",
            &format!("/admin/api/prices/{model}"),
            Some(json!({"input": 4, "output": 4})),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
    }
    drop(gw);

    let gw = Gateway::start(&store_config(
        &mock,
        data.path(),
        "prices:\n  taken-model: {input: 7, output: 7}\n",
    ));
    let (status, list) = admin(&gw, "GET", "/admin/api/prices", None).await;
    assert_eq!(status, 200, "{list}");
    let kept = price_of(&list, "kept-model").unwrap();
    assert_eq!(
        (&kept["source"], &kept["input"]),
        (&json!("admin"), &json!(4.0))
    );
    let taken = price_of(&list, "taken-model").unwrap();
    assert_eq!(
        (&taken["source"], &taken["input"]),
        (&json!("config"), &json!(7.0))
    );
}

#[tokio::test]
async fn the_prices_command_sets_lists_and_deletes_a_price() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();

    let (ok, out, err) = cli(
        &gw,
        config.path(),
        &[
            "prices",
            "set",
            "org/house:7b",
            "--input",
            "0.5",
            "--output",
            "2",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("price of org/house:7b set"), "{out}");
    let (ok, out, err) = cli(&gw, config.path(), &["prices", "list"]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("org/house:7b"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("admin"), "{line}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("gpt-5 ") && l.contains("default")),
        "{out}"
    );
    let (ok, out, err) = cli(&gw, config.path(), &["prices", "delete", "org/house:7b"]);
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(&gw, config.path(), &["prices", "delete", "org/house:7b"]);
    assert!(!ok, "a second delete fails: {out}");
    let (_, out, _) = cli(&gw, config.path(), &["prices", "--json"]);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert!(price_of(&list, "org/house:7b").is_none(), "{out}");
}

/// The model the fake upstream was last asked for.
fn last_upstream_model(mock: &MockUpstream) -> String {
    let body: Value = serde_json::from_slice(&mock.requests().pop().unwrap().body).unwrap();
    body["model"].as_str().unwrap().to_owned()
}

/// A Messages request (the client's model `claude-sonnet-4-5`) with `key`.
async fn send_messages(gw: &Gateway, key: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/messages", gw.url))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 16,
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn groups_made_through_the_admin_api_translate_and_map_models_and_changes_apply_at_once() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let yaml = store_config(
        &mock,
        data.path(),
        "groups:\n  - {name: default, platform: openai, model_fallback: {gpt-5: [gpt-5-mini]}}\n",
    );
    let mut gw = Gateway::start(&yaml);

    // Settings are checked like the config file's, and the 400 names the field.
    for (settings, field) in [
        (json!({"model_map": {"claude-*": " "}}), "model_map"),
        (
            json!({"model_map": {"x".repeat(300): "gpt-5"}}),
            "model_map",
        ),
        (
            json!({"model_fallback": {"gpt-5": ["gpt-5"]}}),
            "model_fallback.gpt-5",
        ),
        (
            json!({"model_fallback": {"gpt-5": []}}),
            "model_fallback.gpt-5",
        ),
    ] {
        let mut body = json!({"name": "team", "platform": "openai"});
        body.as_object_mut()
            .unwrap()
            .extend(settings.as_object().unwrap().clone());
        let (status, answer) = admin(&gw, "POST", "/admin/api/groups", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{field}:")), "{answer}");
    }
    let (status, group) = admin(
        &gw,
        "POST",
        "/admin/api/groups",
        Some(
            json!({"name": "team", "platform": "openai", "translate": true,
                    "model_map": {"claude-*": "gpt-5.1-codex"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{group}");
    assert_eq!(group["translate"], true);
    assert_eq!(group["model_map"], json!({"claude-*": "gpt-5.1-codex"}));
    assert_eq!(group["model_fallback"], json!({}));
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(
            json!({"name": "team-up", "platform": "openai", "type": "apikey",
                    "base_url": format!("{}/v1", mock.url()),
                    "api_key": "sk-team-account-0123456789", "groups": ["team"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let raw = create_key(&gw, json!({"name": "claude-code", "group": "team"})).await;

    // A Messages client reaches the OpenAI account, translated, under the mapped name, and is
    // told its own name back.
    let answer = send_messages(&gw, &raw).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer["type"], "message", "{answer}");
    assert_eq!(answer["model"], "claude-sonnet-4-5", "{answer}");
    assert_eq!(last_upstream_model(&mock), "gpt-5.1-codex");

    // A change applies to the very next request.
    let (status, changed) = admin(
        &gw,
        "PATCH",
        "/admin/api/groups/team",
        Some(json!({"model_map": {"claude-*": "gpt-5.1-codex-mini"}})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["translate"], true, "untouched: {changed}");
    assert_eq!(send_messages(&gw, &raw).await.status(), 200);
    assert_eq!(last_upstream_model(&mock), "gpt-5.1-codex-mini");

    // The config file's groups carry their settings into the store too.
    let (_, default) = admin(&gw, "GET", "/admin/api/groups/default", None).await;
    assert_eq!(default["source"], "config", "{default}");
    assert_eq!(
        default["model_fallback"],
        json!({"gpt-5": ["gpt-5-mini"]}),
        "{default}"
    );
    // A config group cannot be changed here (the file would put it back).
    let (status, answer) = admin(
        &gw,
        "PATCH",
        "/admin/api/groups/default",
        Some(json!({"translate": true})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");

    // The settings are stored: after a restart the group still translates and maps.
    gw.sigterm();
    assert!(gw.wait_exit().success());
    let gw = Gateway::start(&yaml);
    let (status, group) = admin(&gw, "GET", "/admin/api/groups/team", None).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["translate"], true, "{group}");
    assert_eq!(
        group["model_map"],
        json!({"claude-*": "gpt-5.1-codex-mini"})
    );
    assert_eq!(send_messages(&gw, &raw).await.status(), 200);
    assert_eq!(last_upstream_model(&mock), "gpt-5.1-codex-mini");

    // Switched off, the key reaches only its platform's APIs again, at once.
    let (status, changed) = admin(
        &gw,
        "PATCH",
        "/admin/api/groups/team",
        Some(json!({"translate": false})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(send_messages(&gw, &raw).await.status(), 404);
    let (_, list) = admin(&gw, "GET", "/admin/api/groups", None).await;
    let team = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "team")
        .unwrap();
    assert_eq!(team["translate"], false, "{list}");
    let (_, trail) = admin(&gw, "GET", "/admin/api/audit?action=group.update", None).await;
    assert!(trail.to_string().contains("group.update"), "{trail}");
}

#[tokio::test]
async fn a_group_holding_accounts_of_both_platforms_keeps_translating() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "mixed", "platform": "openai", "translate": true})),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = admin(
        &gw,
        "POST",
        "/admin/api/accounts",
        Some(
            json!({"name": "claude", "platform": "anthropic", "type": "apikey",
                    "base_url": mock.url(), "api_key": "sk-ant-mixed-0123456789",
                    "groups": ["mixed"]}),
        ),
    )
    .await;
    assert_eq!(
        status, 201,
        "a translating group takes the other platform: {answer}"
    );
    let (status, answer) = admin(
        &gw,
        "PATCH",
        "/admin/api/groups/mixed",
        Some(json!({"translate": false})),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"claude\""),
        "{answer}"
    );
    let (_, group) = admin(&gw, "GET", "/admin/api/groups/mixed", None).await;
    assert_eq!(group["translate"], true, "unchanged: {group}");
}
