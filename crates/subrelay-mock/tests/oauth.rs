//! Token endpoints: rotation, `invalid_grant` on reuse or revocation, grant and body rules, the
//! answer delay, and counting apart from API calls.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use subrelay_mock::MockUpstream;
use support::*;

fn grant(refresh_token: &str) -> Value {
    json!({
        "grant_type": "refresh_token",
        "client_id": "app_test",
        "refresh_token": refresh_token,
    })
}

async fn refresh(mock: &MockUpstream, path: &str, refresh_token: &str) -> (u16, Value) {
    let response = post_with(&mock.url(), path, &[], &grant(refresh_token)).await;
    let status = response.status().as_u16();
    (status, json_of(response).await)
}

#[tokio::test]
async fn refresh_rotates_both_tokens_and_refuses_a_spent_one() {
    let mock = MockUpstream::start().await;
    let (status, first) = refresh(&mock, OPENAI_TOKEN, "rt-seed").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 3600);
    let id_token = first["id_token"].as_str().unwrap();
    assert_eq!(id_token.split('.').count(), 3, "JWT-shaped: {id_token}");
    let (access, rotated) = (
        first["access_token"].as_str().unwrap().to_owned(),
        first["refresh_token"].as_str().unwrap().to_owned(),
    );
    assert_ne!(rotated, "rt-seed");

    // The rotated token works once, on either endpoint, and issues fresh tokens.
    let (status, second) = refresh(&mock, ANTHROPIC_TOKEN, &rotated).await;
    assert_eq!(status, 200);
    assert_ne!(second["access_token"], access.as_str());
    assert_ne!(second["refresh_token"], rotated.as_str());

    for spent in ["rt-seed", rotated.as_str()] {
        let (status, error) = refresh(&mock, OPENAI_TOKEN, spent).await;
        assert_eq!(status, 400);
        assert_eq!(error["error"], "invalid_grant");
        assert!(error["error_description"].is_string());
    }
    let (status, error) = refresh(&mock, ANTHROPIC_TOKEN, "revoked-by-user").await;
    assert_eq!((status, &error["error"]), (400, &json!("invalid_grant")));

    assert_eq!(
        mock.issued_access_tokens(),
        [access, second["access_token"].as_str().unwrap().to_owned()]
    );
    assert_eq!(mock.token_calls(), 5);
    assert_eq!(
        (mock.total_calls(), mock.completed()),
        (0, 0),
        "token requests are not API calls"
    );
    let records = mock.requests();
    assert_eq!(records.len(), 5, "but they are recorded");
    assert!(records.iter().all(|r| r.credential.is_none()));
    assert_eq!(records[1].path, ANTHROPIC_TOKEN);
}

#[tokio::test]
async fn grant_type_body_and_lifetime_rules() {
    let mock = MockUpstream::start().await;
    let password = json!({"grant_type": "password", "client_id": "c", "refresh_token": "r"});
    let response = post_with(&mock.url(), OPENAI_TOKEN, &[], &password).await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        json_of(response).await,
        json!({"error": "unsupported_grant_type"})
    );
    for missing in ["refresh_token", "client_id"] {
        let body = without(&grant("r"), missing);
        let response = post_with(&mock.url(), ANTHROPIC_TOKEN, &[], &body).await;
        assert_eq!(response.status(), 400, "{missing}");
        assert_eq!(json_of(response).await["error"], "invalid_request");
    }

    // OpenAI's endpoint also takes a form body; Anthropic's only JSON.
    mock.set_token_lifetime(60);
    let form =
        "grant_type=refresh_token&client_id=app_x&refresh_token=rt%2Bform&scope=openid+profile";
    let send_form = |path: &str| {
        reqwest::Client::new()
            .post(format!("{}{path}", mock.url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
    };
    let response = send_form(OPENAI_TOKEN).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json_of(response).await["expires_in"], 60);
    let response = send_form(ANTHROPIC_TOKEN).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(json_of(response).await["error"], "invalid_request");
    // The form's `rt%2Bform` was decoded to `rt+form` and is now spent.
    let (status, error) = refresh(&mock, OPENAI_TOKEN, "rt+form").await;
    assert_eq!((status, &error["error"]), (400, &json!("invalid_grant")));
    assert_eq!(mock.token_calls(), 6);
}

#[tokio::test]
async fn delay_holds_the_answer_but_the_first_refresh_wins_on_arrival() {
    let mock = MockUpstream::start().await;
    mock.set_token_delay(Duration::from_millis(120));
    let started = Instant::now();
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let url = mock.url();
            tokio::spawn(async move {
                let response = post_with(&url, OPENAI_TOKEN, &[], &grant("rt-shared")).await;
                response.status().as_u16()
            })
        })
        .collect();
    while mock.token_calls() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        racers.iter().all(|racer| !racer.is_finished()),
        "counted on arrival, answers still held"
    );
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400, 400], "one refresh token, one winner");
    assert!(started.elapsed() >= Duration::from_millis(120));
    assert_eq!(mock.issued_access_tokens().len(), 1);

    // Reset forgets calls and spent tokens, keeps numbering (tokens never repeat).
    let before = mock.issued_access_tokens();
    mock.set_token_delay(Duration::ZERO);
    mock.reset();
    assert_eq!(mock.token_calls(), 0);
    assert!(mock.issued_access_tokens().is_empty());
    let (status, again) = refresh(&mock, OPENAI_TOKEN, "rt-shared").await;
    assert_eq!(status, 200);
    assert!(!before.contains(&again["access_token"].as_str().unwrap().to_owned()));
}

/// Unpadded base64url, for the PKCE challenge.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// `GET /oauth/authorize` without following the redirect: the status and the `Location`.
#[allow(
    clippy::unwrap_used,
    reason = "test helper: a failed step fails the test"
)]
async fn authorize(mock: &MockUpstream, query: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let response = client
        .get(format!("{}/oauth/authorize?{query}", mock.url()))
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

#[allow(
    clippy::unwrap_used,
    reason = "test helper: a failed step fails the test"
)]
fn code_of(location: &str) -> String {
    let query = location.split_once('?').unwrap().1;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn authorization_code_with_pkce() {
    use sha2::Digest;
    let mock = MockUpstream::start().await;
    let verifier = "a-verifier-of-enough-entropy-0123456789-abcdefghijklmnop";
    let challenge = b64url(&sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = "http://localhost:1455/auth/callback";
    let query = format!(
        "response_type=code&client_id=app_test&redirect_uri={}&code_challenge={challenge}&code_challenge_method=S256&state=st%2F1&scope=openid",
        "http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback"
    );
    let (status, location) = authorize(&mock, &query).await;
    assert_eq!(status, 302);
    assert!(
        location.starts_with(&format!("{redirect}?code=code-")),
        "{location}"
    );
    assert!(location.ends_with("&state=st%2F1"), "{location}");
    let code = code_of(&location);

    let exchange = |code: &str, verifier: &str, redirect: &str| {
        json!({
            "grant_type": "authorization_code",
            "client_id": "app_test",
            "code": code,
            "code_verifier": verifier,
            "redirect_uri": redirect,
        })
    };
    // A wrong verifier is refused and spends the code (as a real server may).
    let (status, location2) = authorize(&mock, &query).await;
    assert_eq!(status, 302);
    let code2 = code_of(&location2);
    let response = post_with(
        &mock.url(),
        OPENAI_TOKEN,
        &[],
        &exchange(&code2, "not-the-verifier", redirect),
    )
    .await;
    assert_eq!(response.status(), 400);
    let error = json_of(response).await;
    assert_eq!(error["error"], "invalid_grant");
    assert!(error["error_description"]
        .as_str()
        .unwrap()
        .contains("PKCE"));
    // Another redirect URI is refused.
    let response = post_with(
        &mock.url(),
        ANTHROPIC_TOKEN,
        &[],
        &exchange(&code, verifier, "http://elsewhere/"),
    )
    .await;
    assert_eq!(response.status(), 400);

    // Refused attempts spend their codes; a fresh code with the right verifier works, once.
    let (_, location3) = authorize(&mock, &query).await;
    let code3 = code_of(&location3);
    let response = post_with(
        &mock.url(),
        ANTHROPIC_TOKEN,
        &[],
        &exchange(&code3, verifier, redirect),
    )
    .await;
    assert_eq!(response.status(), 200);
    let tokens = json_of(response).await;
    let access = tokens["access_token"].as_str().unwrap();
    assert!(tokens["refresh_token"].as_str().unwrap().starts_with("rt-"));
    let claims = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    assert!(!claims.is_empty());
    assert_eq!(mock.issued_access_tokens(), [access.to_owned()]);
    let again = post_with(
        &mock.url(),
        ANTHROPIC_TOKEN,
        &[],
        &exchange(&code3, verifier, redirect),
    )
    .await;
    assert_eq!(again.status(), 400, "a code works once");

    // Without PKCE there is no code.
    let (status, _) = authorize(
        &mock,
        "response_type=code&client_id=app_test&redirect_uri=http%3A%2F%2Fx%2F",
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = authorize(
        &mock,
        &format!("response_type=code&client_id=c&redirect_uri=http%3A%2F%2Fx%2F&code_challenge={challenge}&code_challenge_method=plain"),
    )
    .await;
    assert_eq!(status, 400);
}
