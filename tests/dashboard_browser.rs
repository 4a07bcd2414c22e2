//! The dashboard end to end in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, installed by .ci/run), driven over WebDriver by
//! tests/python/dashboard_browser.py: sign in, create a key and read it once, a request with it
//! on Usage (filtered, in the browser's time zone, exported as CSV with its formula-like model
//! name neutralised) and in the Overview numbers,
//! disable it and see the next request refused, a cooling account with its reason reset, an
//! account signed in by OAuth (code + PKCE against the fake upstream), its token refreshed from
//! the dashboard and serving a request, an account added, edited and deleted, every key limit
//! shown, the Accounts and Keys Actions in view at 1280 px, the last error's message with its
//! details on demand, charts with y-axis labels, a phone-sized screen, Settings (redacted, with
//! what came from the environment), Audit (who made each change: this session or the token,
//! filtered by action), the Overview screenshot, no resource that failed to load
//! (the favicon), sign out.
//!
//! `SUBRELAY_UPDATE_SCREENSHOT=1` copies the screenshot to docs/overview.png (the README's).

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

use admin_common::*;
use common::*;

fn browser_installed() -> bool {
    let chromium =
        std::env::var("SUBRELAY_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = std::env::var("SUBRELAY_TEST_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    std::path::Path::new(&chromium).exists() && std::path::Path::new(&driver).exists()
}

#[tokio::test]
async fn the_dashboard_in_a_real_browser() {
    if !browser_installed()
        && skip_or_fail("chromium and chromedriver (Debian chromium, chromium-driver)")
    {
        return;
    }
    let mock = MockUpstream::start().await;
    // `tired` is tried first: it serves one request (reporting its quota windows), then answers
    // 429 with an exhausted 5 h window and cools down.
    let quota = Behavior {
        status: Some(200),
        headers: vec![
            ("x-codex-primary-used-percent".into(), "60".into()),
            ("x-codex-primary-window-minutes".into(), "300".into()),
            ("x-codex-primary-reset-after-seconds".into(), "7200".into()),
            ("x-codex-secondary-used-percent".into(), "40".into()),
            ("x-codex-secondary-window-minutes".into(), "10080".into()),
        ],
        ..Default::default()
    };
    let mut limited = Behavior {
        status: Some(429),
        ..Default::default()
    };
    limited.headers = vec![
        ("x-codex-primary-used-percent".into(), "100".into()),
        ("x-codex-primary-window-minutes".into(), "300".into()),
        ("x-codex-primary-reset-after-seconds".into(), "1800".into()),
        ("x-codex-secondary-used-percent".into(), "40".into()),
    ];
    mock.script("tok-tired", vec![quota, limited]);
    let dir = tempfile::tempdir().unwrap();
    let tired = format!(
        "  - name: tired\n    platform: openai\n    type: oauth\n    base_url: {}/backend-api/codex\n    access_token: tok-tired\n    chatgpt_account_id: acct-tired\n    priority: -1\n",
        mock.url()
    );
    // Sign-in (OAuth code + PKCE) against the mock; its callback page is a 404 whose address
    // carries the code, like a localhost redirect nobody listens on.
    let signin = format!(
        "oauth:\n  openai_authorize_url: {u}/oauth/authorize\n  openai_token_url: {u}/oauth/token\n  openai_redirect_uri: {u}/oauth/callback\n",
        u = mock.url()
    );
    // The formula model the browser test sends (dashboard_browser.py: FORMULA_MODEL) with a
    // spending-limited key: such a key is refused models without a price.
    let prices =
        "prices:\n  '=HYPERLINK(\"https://example.invalid/?leak\")': {input: 1, output: 1}\n";
    let tired = format!("{tired}{signin}{prices}");
    let gw = Gateway::start_with_env(
        &store_config(&mock, dir.path(), &tired),
        &[("GATEWAY_MAX_ACCOUNT_SWITCHES", "3")],
    );
    for _ in 0..2 {
        let answer = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
        assert_eq!(
            answer.status(),
            200,
            "served, or failed over from the cooling account"
        );
    }
    wait_for_stored_usage(&gw, 2).await;

    let work = tempfile::tempdir().unwrap();
    let shot = work.path().join("overview.png");
    let downloads = work.path().to_str().unwrap().to_owned();
    let Some(_) = run_python(
        "selenium",
        "dashboard_browser.py",
        &[
            &gw.url,
            &mock.url(),
            KEY,
            ADMIN,
            UPSTREAM_TOKEN,
            shot.to_str().unwrap(),
            &downloads,
        ],
    )
    .await
    else {
        return;
    };
    // Two tokens were issued: the sign-in's (code grant) and the one from the dashboard's
    // "Refresh token"; the refreshed one served the request the script then sent through the
    // signed-in account, the replaced one none.
    let issued = mock.issued_access_tokens();
    assert_eq!(issued.len(), 2, "sign-in, then one refresh: {issued:?}");
    assert_eq!(
        mock.calls(&issued[0]),
        0,
        "the replaced token served nothing"
    );
    assert_eq!(mock.calls(&issued[1]), 1, "the refreshed token served");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "the screenshot is a PNG"
    );
    if std::env::var("SUBRELAY_UPDATE_SCREENSHOT").is_ok_and(|v| v == "1") {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/overview.png");
        std::fs::write(docs, &png).unwrap();
    }
}
