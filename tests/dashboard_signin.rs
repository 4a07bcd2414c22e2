//! Signing accounts in by OAuth (authorization code with PKCE) against the fake upstream: the
//! admin API calls the dashboard uses, and `subrelay accounts login` at the terminal.

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

use admin_common::*;
use common::*;
use serde_json::json;

fn gateway(mock: &MockUpstream, dir: &std::path::Path) -> Gateway {
    let oauth = format!(
        "oauth:\n  openai_authorize_url: {u}/oauth/authorize\n  openai_token_url: {u}/oauth/token\n  openai_redirect_uri: {u}/oauth/callback\n  anthropic_authorize_url: {u}/oauth/authorize\n  anthropic_token_url: {u}/v1/oauth/token\n  anthropic_redirect_uri: {u}/oauth/code/callback\n",
        u = mock.url()
    );
    Gateway::start(&store_config(mock, dir, &oauth))
}

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

#[tokio::test]
async fn an_anthropic_account_signed_in_through_the_admin_api() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&mock, dir.path());
    let (status, group) = admin(
        &gw,
        "POST",
        "/admin/api/groups",
        Some(json!({"name": "claude", "platform": "anthropic"})),
    )
    .await;
    assert_eq!(status, 201, "{group}");

    let (status, started) = admin(
        &gw,
        "POST",
        "/admin/api/oauth/start",
        Some(json!({"platform": "anthropic"})),
    )
    .await;
    assert_eq!(status, 200, "{started}");
    let link = started["authorize_url"].as_str().unwrap();
    assert!(
        link.contains("client_id=9d1c250a-e61b-44d9-88ed-5944d1962f5e"),
        "{link}"
    );
    let location = follow(link).await;
    // Anthropic's page shows `code#state`; that is what people paste.
    let query = location.split_once('?').unwrap().1;
    let field = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    let pasted = format!("{}#{}", field("code"), field("state"));
    let finish = json!({"flow": started["flow"], "callback": pasted, "name": "claude-1", "groups": ["claude"]});
    let (status, created) =
        admin(&gw, "POST", "/admin/api/oauth/finish", Some(finish.clone())).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["account"]["type"], "oauth");
    assert_eq!(created["account"]["platform"], "anthropic");
    assert_eq!(mock.issued_access_tokens().len(), 1);
    let (_, pool) = admin(&gw, "GET", "/admin/api/accounts", None).await;
    assert!(pool["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["name"] == "claude-1"));
    let shown = pool.to_string();
    let issued = &mock.issued_access_tokens()[0];
    assert!(
        !shown.contains(&format!("\"{issued}\"")),
        "tokens are write-only: {shown}"
    );

    // A flow works once.
    let (status, again) = admin(&gw, "POST", "/admin/api/oauth/finish", Some(finish)).await;
    assert_eq!(status, 400, "{again}");

    // A pasted state of another sign-in is refused before any exchange.
    let (_, other) = admin(
        &gw,
        "POST",
        "/admin/api/oauth/start",
        Some(json!({"platform": "anthropic"})),
    )
    .await;
    let calls = mock.token_calls();
    let forged = json!({"flow": other["flow"], "callback": format!("{}#not-the-state", field("code")), "name": "claude-2", "groups": ["claude"]});
    let (status, refused) = admin(&gw, "POST", "/admin/api/oauth/finish", Some(forged)).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(mock.token_calls(), calls);

    // A code the provider does not know: the token endpoint refuses, no account.
    let (_, third) = admin(
        &gw,
        "POST",
        "/admin/api/oauth/start",
        Some(json!({"platform": "anthropic"})),
    )
    .await;
    let bogus = json!({"flow": third["flow"], "callback": "code-does-not-exist", "name": "claude-3", "groups": ["claude"]});
    let (status, refused) = admin(&gw, "POST", "/admin/api/oauth/finish", Some(bogus)).await;
    assert_eq!(status, 502, "{refused}");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("invalid_grant"));
    let (status, _) = admin(&gw, "GET", "/admin/api/accounts/claude-3", None).await;
    assert_eq!(status, 404);
}

// Multi-threaded: the test reads the CLI's output with blocking calls while the in-process fake
// upstream must keep answering the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_login_at_the_terminal_then_the_account_serves() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = gateway(&mock, dir.path());
    let cli_config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cli_config.path(), format!("admin:\n  token: {ADMIN}\n")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .args(["accounts", "login", "openai", "--name", "codex-cli"])
        .arg("--base-url")
        .arg(format!("{}/backend-api/codex", mock.url()))
        .args(["--priority", "-3", "--config"])
        .arg(cli_config.path())
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
    assert!(link.contains("code_challenge_method=S256"), "{link}");
    let callback = follow(&link).await;
    assert!(callback.contains("/oauth/callback?code="), "{callback}");
    writeln!(child.stdin.take().unwrap(), "{callback}").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{rest}{errors}");
    assert!(rest.contains("account codex-cli signed in"), "{rest}");

    // The signed-in account is first in line now (priority -3) and serves.
    let answer = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    assert_eq!(answer.status(), 200);
    // The row count and the rows are two queries: wait until the row itself is there.
    let mut rows = Vec::new();
    for _ in 0..200 {
        rows = wait_for_stored_usage(&gw, 1).await;
        if !rows.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["account"], "codex-cli", "{rows:?}");
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 1);
    assert_eq!(
        mock.calls(&issued[0]),
        1,
        "the request used the signed-in token"
    );
}
