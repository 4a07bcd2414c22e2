//! What the store and admin API tests share: a config with a data directory the test owns (so
//! a restart finds it again), the admin token, and admin API calls.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    dead_code,
    reason = "each test binary uses a different part of these helpers"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers: a failed set-up step should fail the test at once"
)]

use std::path::Path;

use serde_json::Value;

use crate::common::{client, Gateway, MockUpstream, KEY};

pub const ADMIN: &str = "admin-token-for-store-tests";
pub const UPSTREAM_TOKEN: &str = "sk-upstream-config-secret-0123456789";

/// One OpenAI API-key account against the mock, the config key `tester`, the admin token, and
/// `extra` YAML (sections) appended.
pub fn store_config(mock: &MockUpstream, data_dir: &Path, extra: &str) -> String {
    format!(
        "admin:\n  token: {ADMIN}\nstorage:\n  data_dir: {}\napi_keys:\n  - {{key: {KEY}, name: tester}}\naccounts:\n  - name: up\n    platform: openai\n    type: apikey\n    base_url: {}/v1\n    api_key: {UPSTREAM_TOKEN}\n{extra}",
        data_dir.display(),
        mock.url()
    )
}

/// An admin API call: the status and the JSON answer (`Null` for an empty body).
pub async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client()
        .request(method, format!("{}{path}", gw.url))
        .bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
    };
    (status, value)
}

/// Creates a key through the admin API and returns the raw key.
pub async fn create_key(gw: &Gateway, body: Value) -> String {
    let (status, answer) = admin(gw, "POST", "/admin/api/keys", Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    answer["api_key"].as_str().unwrap().to_owned()
}

/// Waits (up to 20 s) until the store holds `n` usage rows; returns them.
pub async fn wait_for_stored_usage(gw: &Gateway, n: u64) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, page) = admin(gw, "GET", "/admin/api/usage?limit=1000", None).await;
        assert_eq!(status, 200, "{page}");
        // `total` and `rows` come from two queries: wait until both show the rows.
        let rows = page["rows"].as_array().cloned().unwrap_or_default();
        if page["total"].as_u64() == Some(n) && rows.len() as u64 == n {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expected {n} stored usage rows, got {}",
            page["total"]
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every byte of the database files (`subrelay.db` and its WAL/SHM) in `dir`.
pub fn database_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("subrelay.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A request to `path` with the API key `key`.
pub async fn send_as(gw: &Gateway, key: &str, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}
