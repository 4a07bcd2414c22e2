//! The dashboard's guard: nothing answers without a session, the session cookie's flags,
//! CSRF and cross-site refusals, sign-out, and no credential in any page.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use admin_common::*;
use common::*;
use serde_json::json;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in and returns the `Set-Cookie` header and the `name=value` pair to send back.
async fn sign_in(gw: &Gateway, extra: &[(&str, &str)]) -> (String, String) {
    let mut request = no_redirects()
        .post(format!("{}/admin/login", gw.url))
        .json(&json!({ "token": ADMIN }));
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 204);
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    (set_cookie, pair)
}

/// The CSRF token the shell page carries for this session.
async fn csrf_of(gw: &Gateway, cookie: &str) -> (String, String) {
    let response = no_redirects()
        .get(format!("{}/admin/", gw.url))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    let at = html.find(r#"name="csrf-token" content=""#).unwrap() + 27;
    let token: String = html[at..].chars().take_while(|c| *c != '"').collect();
    assert_eq!(token.len(), 64, "{html}");
    (token, html)
}

async fn start() -> (MockUpstream, Gateway, tempfile::TempDir) {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, dir.path(), ""));
    (mock, gw, dir)
}

#[tokio::test]
async fn nothing_answers_without_a_session() {
    let (_mock, gw, _dir) = start().await;
    let client = no_redirects();
    let shell = client
        .get(format!("{}/admin/", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(shell.status(), 303);
    assert_eq!(shell.headers()["location"], "/admin/login");
    let script = client
        .get(format!("{}/admin/assets/app.js", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 401);
    for path in ["/admin/api/accounts", "/admin/api/keys", "/admin/api/usage"] {
        let r = client
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    // A made-up session cookie is no session.
    let forged = client
        .get(format!("{}/admin/api/keys", gw.url))
        .header("cookie", format!("subrelay_session={}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // A wrong token opens nothing.
    let wrong = client
        .post(format!("{}/admin/login", gw.url))
        .json(&json!({ "token": "not-the-token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn the_session_cookie_flags_and_sign_out() {
    let (_mock, gw, _dir) = start().await;
    let (set_cookie, cookie) = sign_in(&gw, &[]).await;
    for flag in [
        "Path=/admin",
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
    ] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    let (behind_tls, _) = sign_in(&gw, &[("x-forwarded-proto", "https")]).await;
    assert!(behind_tls.contains("; Secure"), "{behind_tls}");

    let client = no_redirects();
    let keys = client
        .get(format!("{}/admin/api/keys", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(keys.status(), 200);

    let (csrf, _) = csrf_of(&gw, &cookie).await;
    let refused = client
        .post(format!("{}/admin/logout", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403, "sign-out needs the CSRF token too");
    let out = client
        .post(format!("{}/admin/logout", gw.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie is dead server-side, whatever the browser keeps.
    let after = client
        .get(format!("{}/admin/api/keys", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    let shell = client
        .get(format!("{}/admin/", gw.url))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(shell.status(), 303);
}

#[tokio::test]
async fn forged_and_cross_site_requests_are_refused() {
    let (_mock, gw, _dir) = start().await;
    let (_, cookie) = sign_in(&gw, &[]).await;
    let (csrf, _) = csrf_of(&gw, &cookie).await;
    let host = gw.url.trim_start_matches("http://").to_owned();
    let client = no_redirects();
    let create = |name: &str, headers: Vec<(&'static str, String)>| {
        let mut request = client
            .post(format!("{}/admin/api/keys", gw.url))
            .header("cookie", &cookie)
            .json(&json!({ "name": name }));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request.send()
    };
    // The cookie alone, as a forged cross-site form would send it: refused.
    assert_eq!(create("a", vec![]).await.unwrap().status(), 403);
    assert_eq!(
        create("b", vec![("x-csrf-token", "0".repeat(64))])
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        create(
            "c",
            vec![
                ("x-csrf-token", csrf.clone()),
                ("origin", "http://evil.example".into())
            ]
        )
        .await
        .unwrap()
        .status(),
        403
    );
    assert_eq!(
        create(
            "d",
            vec![
                ("x-csrf-token", csrf.clone()),
                ("sec-fetch-site", "cross-site".into())
            ]
        )
        .await
        .unwrap()
        .status(),
        403
    );
    let (status, keys) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        keys["keys"].as_array().unwrap().len(),
        1,
        "no forged request created a key: {keys}"
    );
    // The dashboard's own request: the token, from this origin.
    let ok = create(
        "e",
        vec![
            ("x-csrf-token", csrf.clone()),
            ("origin", format!("http://{host}")),
            ("sec-fetch-site", "same-origin".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ok.status(), 201);
    // A cross-site sign-in (login CSRF) is refused too.
    let login = client
        .post(format!("{}/admin/login", gw.url))
        .header("origin", "http://evil.example")
        .json(&json!({ "token": ADMIN }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 403);
}

#[tokio::test]
async fn no_page_carries_a_credential() {
    let (_mock, gw, _dir) = start().await;
    let raw_key = create_key(&gw, json!({ "name": "colleague" })).await;
    let (_, cookie) = sign_in(&gw, &[]).await;
    let (_, shell) = csrf_of(&gw, &cookie).await;
    let client = no_redirects();
    let mut bodies = vec![shell];
    for path in [
        "/admin/assets/app.js",
        "/admin/assets/login.js",
        "/admin/assets/app.css",
        "/admin/api/accounts",
        "/admin/api/keys",
        "/admin/api/settings",
    ] {
        let r = client
            .get(format!("{}{path}", gw.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        bodies.push(r.text().await.unwrap());
    }
    let login = client
        .get(format!("{}/admin/login", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let csp = login.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    bodies.push(login.text().await.unwrap());
    for body in &bodies {
        for secret in [ADMIN, UPSTREAM_TOKEN, raw_key.as_str(), KEY] {
            assert!(!body.contains(secret), "a page carries {secret:?}");
        }
    }
}

#[tokio::test]
async fn without_an_admin_token_there_is_no_dashboard() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("a", "tok-a")], ""));
    for path in ["/admin/", "/admin/login", "/admin/assets/app.js"] {
        let r = no_redirects()
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

/// A dashboard session ends on the server after `admin.session_ttl` (here 10 s, the minimum),
/// whatever cookie the browser still sends; a session opened later still works.
#[tokio::test]
async fn a_session_expires_on_the_server_after_its_lifetime() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start_with_env(
        &store_config(&mock, dir.path(), ""),
        &[("ADMIN_SESSION_TTL", "10")],
    );
    let keys = |cookie: String| {
        let url = format!("{}/admin/api/keys", gw.url);
        async move {
            no_redirects()
                .get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let (set_cookie, old) = sign_in(&gw, &[]).await;
    assert!(
        set_cookie.split("; ").any(|a| a == "Max-Age=10"),
        "{set_cookie}"
    );
    // Positive control: the session works while it lives.
    assert_eq!(keys(old.clone()).await.status(), 200);

    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let (_, fresh) = sign_in(&gw, &[]).await;
    let expired = keys(old.clone()).await;
    assert_eq!(expired.status(), 401);
    let body: serde_json::Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["code"], "session_expired", "{body}");
    let shell = no_redirects()
        .get(format!("{}/admin/", gw.url))
        .header("cookie", &old)
        .send()
        .await
        .unwrap();
    assert_eq!(
        shell.status(),
        303,
        "the expired session is sent to sign-in"
    );
    assert_eq!(keys(fresh).await.status(), 200, "a fresh session works");
}

/// Every resource the sign-in page and the dashboard link (stylesheet, scripts, the SVG
/// favicon) answers 200 with its type: nothing a page asks for is a 404.
#[tokio::test]
async fn every_linked_resource_is_served_with_the_favicon() {
    let (_mock, gw, _dir) = start().await;
    let (_, cookie) = sign_in(&gw, &[]).await;
    let client = no_redirects();
    let login = client
        .get(format!("{}/admin/login", gw.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (_, shell) = csrf_of(&gw, &cookie).await;
    let mut linked = Vec::new();
    for html in [&login, &shell] {
        assert!(
            html.contains(r#"<link rel="icon" href="/admin/favicon.svg" type="image/svg+xml">"#),
            "{html}"
        );
        for attr in [r#"href=""#, r#"src=""#] {
            for (at, _) in html.match_indices(attr) {
                let link: String = html[at + attr.len()..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect();
                if !link.starts_with('#') {
                    linked.push(link);
                }
            }
        }
    }
    linked.sort();
    linked.dedup();
    assert_eq!(
        linked,
        [
            "/admin/assets/app.css",
            "/admin/assets/app.js",
            "/admin/assets/login.js",
            "/admin/favicon.svg",
        ],
        "the pages link these (a new link is checked here too)"
    );
    for link in &linked {
        let response = client
            .get(format!("{}{link}", gw.url))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{link}");
        let kind = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let want = match link.rsplit('.').next().unwrap() {
            "css" => "text/css",
            "js" => "text/javascript",
            _ => "image/svg+xml",
        };
        assert!(kind.starts_with(want), "{link}: {kind}");
        let body = response.text().await.unwrap();
        if want == "image/svg+xml" {
            assert!(
                body.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
                "{body}"
            );
        }
    }
}
