//! The admin commands at the terminal, against the real server: `keys create` with a monthly
//! spending limit and an expiry, `accounts refresh`, and `accounts login anthropic` (the OAuth
//! sign-in against the fake upstream's authorize and token endpoints).

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

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use admin_common::*;
use common::*;
use serde_json::{json, Value};

/// A config file for the CLI: only the admin token (the address comes from `--url`).
fn cli_config() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();
    file
}

/// Runs `subrelay <args> --config <cli config> --url <gateway>`: success, stdout, stderr.
fn cli(gw: &Gateway, args: &[&str]) -> (bool, String, String) {
    let config = cli_config();
    let out = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(args)
        .arg("--config")
        .arg(config.path())
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The raw key in the output of `keys create`.
fn created_key(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("sk-sr-"))
        .unwrap_or_else(|| panic!("no key in {out}"))
        .to_owned()
}

async fn key_record(gw: &Gateway, name: &str) -> Value {
    let (status, keys) = admin(gw, "GET", "/admin/api/keys", None).await;
    assert_eq!(status, 200);
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("no key {name}: {keys}"))
        .clone()
}

// === keys create ===

#[tokio::test]
async fn keys_create_monthly_spend_sets_a_limit_that_refuses_once_spent() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let (ok, out, err) = cli(
        &gw,
        &["keys", "create", "spender", "--monthly-spend", "0.0000001"],
    );
    assert!(ok, "{err}");
    let raw = created_key(&out);
    let record = key_record(&gw, "spender").await;
    assert_eq!(record["monthly_spend_limit"], 0.000_000_1, "{record}");
    assert!(record["daily_spend_limit"].is_null(), "{record}");

    // Under the limit: served, and its cost counts.
    let ok = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    let records = gw.wait_for_usage(1).await;
    assert!(
        records[0]["cost_usd"].as_f64().unwrap() > 0.0,
        "{records:?}"
    );
    // Over it: refused before any account is reached.
    let calls = mock.total_calls();
    let refused = send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(refused.status(), 429);
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("monthly spending limit"),
        "{error}"
    );
    assert_eq!(mock.total_calls(), calls);
    // The config key, without a limit, still passes: the limit is the new key's alone.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn keys_create_expires_in_sets_the_expiry_from_now() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let before = now_secs();
    let (ok, out, err) = cli(&gw, &["keys", "create", "monthly", "--expires-in", "30d"]);
    let after = now_secs();
    assert!(ok, "{err}");
    let raw = created_key(&out);
    let expires = key_record(&gw, "monthly").await["expires_at"]
        .as_u64()
        .unwrap();
    let month = 30 * 24 * 3600;
    assert!(
        (before + month..=after + month).contains(&expires),
        "expires_at {expires}, created between {before} and {after}"
    );
    assert_eq!(
        send_as(&gw, &raw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );

    // A key that lives one second is refused once that second has passed.
    let (ok, out, err) = cli(&gw, &["keys", "create", "brief", "--expires-in", "1s"]);
    assert!(ok, "{err}");
    let brief = created_key(&out);
    let expires = key_record(&gw, "brief").await["expires_at"]
        .as_u64()
        .unwrap();
    while now_secs() <= expires {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = send_as(&gw, &brief, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(refused.status(), 401);
    let error: Value = refused.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{error}"
    );

    // A duration the parser cannot read is a usage error (exit 2), nothing is created.
    let (ok, _, err) = cli(&gw, &["keys", "create", "never", "--expires-in", "soon"]);
    assert!(!ok && err.contains("--expires-in"), "{err}");
    let (_, keys) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert!(!keys.to_string().contains("\"never\""), "{keys}");
}

// === accounts refresh ===

fn rfc3339(offset: Duration) -> String {
    humantime::format_rfc3339_seconds(SystemTime::now() + offset).to_string()
}

// Multi-threaded: the command blocks this thread while the in-process fake upstream answers the
// refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_refresh_refreshes_a_sign_in_account_now() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    // Valid for a day: nothing refreshes it on its own.
    let extra = format!(
        "  - name: codex\n    platform: openai\n    type: oauth\n    base_url: {u}/backend-api/codex\n    access_token: access-0\n    refresh_token: rt-seed\n    chatgpt_account_id: acct-codex\n    expires_at: {}\n    priority: -1\noauth:\n  openai_token_url: {u}/oauth/token\n",
        rfc3339(Duration::from_secs(24 * 3600)),
        u = mock.url()
    );
    let gw = Gateway::start(&store_config(&mock, data.path(), &extra));
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.calls("access-0"), 1);
    assert_eq!(mock.token_calls(), 0, "no refresh before the command");

    let (ok, out, err) = cli(&gw, &["accounts", "refresh", "codex"]);
    assert!(ok, "{err}");
    assert_eq!(mock.token_calls(), 1);
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert!(
        out.starts_with("account codex refreshed; token expires "),
        "{out}"
    );
    // The mock's tokens live an hour: the printed expiry is the new one, not the day-long old one.
    let printed = out.trim().rsplit(' ').next().unwrap();
    let expires = humantime::parse_rfc3339(printed).unwrap();
    let left = expires.duration_since(SystemTime::now()).unwrap();
    assert!(left <= Duration::from_secs(3600), "{out}");

    // The next request uses the new token.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    assert_eq!(mock.calls(&issued[0]), 1);
    assert_eq!(mock.calls("access-0"), 1);

    // An API-key account has nothing to refresh: a clear refusal, non-zero exit.
    let (ok, out, err) = cli(&gw, &["accounts", "refresh", "up"]);
    assert!(!ok, "{out}");
    assert!(
        err.starts_with("subrelay: 409") && err.contains("has no refresh token"),
        "{err}"
    );
    assert_eq!(mock.token_calls(), 1);
}

// === accounts login anthropic ===

/// Where the provider's sign-in page sends the user (the mock signs in at once).
async fn follow(link: &str) -> String {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(link).send().await.unwrap();
    assert_eq!(response.status(), 302, "{link}");
    response.headers()["location"].to_str().unwrap().to_owned()
}

// Multi-threaded: the test reads the CLI's output with blocking calls while the in-process fake
// upstream must keep answering the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_login_anthropic_at_the_terminal_then_the_account_serves_messages() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let extra = format!(
        "groups:\n  - {{name: claude, platform: anthropic}}\noauth:\n  anthropic_authorize_url: {u}/oauth/authorize\n  anthropic_token_url: {u}/v1/oauth/token\n  anthropic_redirect_uri: {u}/oauth/code/callback\n",
        u = mock.url()
    );
    let gw = Gateway::start(&store_config(&mock, data.path(), &extra));
    let config = cli_config();
    let mut child = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(["accounts", "login", "anthropic", "--name", "claude-cli"])
        .arg("--base-url")
        .arg(mock.url())
        .args(["--groups", "claude", "--config"])
        .arg(config.path())
        .arg("--url")
        .arg(&gw.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut link = String::new();
    while !link.starts_with("http") {
        link.clear();
        assert_ne!(stdout.read_line(&mut link).unwrap(), 0, "no link printed");
    }
    let link = link.trim().to_owned();
    assert!(
        link.starts_with(&format!("{}/oauth/authorize?", mock.url())),
        "{link}"
    );
    assert!(
        link.contains("client_id=9d1c250a-e61b-44d9-88ed-5944d1962f5e")
            && link.contains("code_challenge_method=S256")
            && link.contains("code=true"),
        "{link}"
    );
    // Anthropic's page shows `code#state`; that is what people paste.
    let location = follow(&link).await;
    let query = location.split_once('?').unwrap().1;
    let field = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    writeln!(
        child.stdin.take().unwrap(),
        "{}#{}",
        field("code"),
        field("state")
    )
    .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}{errors}");
    assert!(
        rest.contains("account claude-cli signed in and added to the pool"),
        "{rest}"
    );
    assert_eq!(mock.token_calls(), 1, "one code exchange");
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);

    let (status, account) = admin(&gw, "GET", "/admin/api/accounts/claude-cli", None).await;
    assert_eq!(status, 200, "{account}");
    let text = account.to_string();
    assert!(
        text.contains("\"anthropic\"") && text.contains("\"oauth\""),
        "{text}"
    );

    // A key of the claude group reaches the signed-in account with the issued token.
    let key = create_key(&gw, json!({"name": "claude-user", "group": "claude"})).await;
    let answer = send_as(
        &gw,
        &key,
        "/v1/messages",
        &json!({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    assert_eq!(
        mock.calls(&issued[0]),
        1,
        "the request used the signed-in token"
    );
}
