//! Signing a ChatGPT (Codex) or Claude account in: OAuth 2.0 authorization code with PKCE
//! (RFC 7636, S256) against the `oauth.*` endpoints.
//!
//! `POST /admin/api/oauth/start` makes a verifier and a state, keeps them for [`FLOW_TTL`], and
//! answers the provider's authorization link. The user signs in there and pastes back the URL the
//! provider redirected to (or the bare code; Anthropic shows `code#state`).
//! `POST /admin/api/oauth/finish` checks the state, exchanges the code at the token endpoint
//! (once: a flow is spent by its first attempt) and creates the account through the same path as
//! `POST /admin/api/accounts`. Both calls are admin API calls (token or dashboard session).
//!
//! Started flows are runtime state ([`Flows`] in `AppState`, keyed by the flow id), so with a
//! shared backend a sign-in started on one instance can finish on another.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::accounts::{self, CreateAccount};
use super::super::{bad_request, Admin, AdminJson, ErrorBody};
use crate::domain::{AccountKind, Platform};
use crate::http::refusal::Refusal;
use crate::runtime_state::{Expiring, ExpiringMap, RuntimeState};
use crate::state::AppState;

/// How long a started sign-in may wait for its code.
pub const FLOW_TTL: Duration = Duration::from_secs(15 * 60);
const TIMEOUT: Duration = Duration::from_secs(30);
const OPENAI_SCOPE: &str = "openid profile email offline_access";
const ANTHROPIC_SCOPE: &str = "org:create_api_key user:profile user:inference";

/// A started sign-in, kept for [`FLOW_TTL`].
pub struct Flow {
    platform: Platform,
    verifier: String,
    state: String,
}

impl crate::runtime_state::SharedValue for Flow {
    fn encode(&self) -> String {
        format!(
            "{}|{}|{}",
            self.platform.as_str(),
            self.verifier,
            self.state
        )
    }
    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '|');
        Some(Self {
            platform: parts.next()?.parse().ok()?,
            verifier: parts.next()?.to_owned(),
            state: parts.next()?.to_owned(),
        })
    }
}

/// The started sign-ins, by flow id; each lives [`FLOW_TTL`] and is spent by its first finish.
pub struct Flows(ExpiringMap<String, Flow>);

impl Default for Flows {
    fn default() -> Self {
        Self::new(&RuntimeState::default())
    }
}

impl Flows {
    pub fn new(runtime: &RuntimeState) -> Self {
        Self(runtime.expiring("flow"))
    }

    fn start(&self, id: &str, flow: Flow) {
        self.0
            .update(&id.to_owned(), Some(FLOW_TTL), |slot| *slot = Some(flow));
    }

    /// The flow, if it is live; it is spent either way.
    fn take(&self, id: &str) -> Option<Flow> {
        self.0.take(&id.to_owned())
    }
}

fn random_b64url(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut bytes);
    b64url(&bytes)
}

/// Unpadded base64url (RFC 4648 §5).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
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

/// Decodes unpadded (or padded) base64url; `None` on a character outside the alphabet.
fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Percent-encodes all but unreserved characters (RFC 3986), for queries and form bodies.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSignIn {
    /// `openai` (ChatGPT / Codex) or `anthropic` (Claude).
    #[schema(value_type = String, pattern = "^(openai|anthropic)$")]
    pub platform: Platform,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SignInStarted {
    /// Pass back to `/admin/api/oauth/finish`.
    pub flow: String,
    /// Open this, sign in, and copy the URL it leads to.
    pub authorize_url: String,
    pub redirect_uri: String,
    /// Seconds the flow waits for its code.
    pub expires_in: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishSignIn {
    pub flow: String,
    /// The URL the provider redirected to, or the code (Anthropic: `code#state`).
    pub callback: String,
    /// The new account's name.
    pub name: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub groups: Option<Vec<String>>,
    #[serde(default)]
    pub concurrency: Option<u32>,
    #[serde(default)]
    pub priority: Option<i32>,
}

/// Starts a sign-in: the provider's authorization link (PKCE S256).
#[utoipa::path(post, path = "/admin/api/oauth/start", tag = "accounts", request_body = StartSignIn,
    responses(
        (status = 200, description = "The authorization link", body = SignInStarted),
        (status = 400, description = "Unknown platform", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
    ))]
pub async fn start(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<super::Console>>,
    AdminJson(body): AdminJson<StartSignIn>,
) -> Response {
    let oauth = &state.oauth;
    let (authorize, client_id, redirect, scope) = match body.platform {
        Platform::OpenAi => (
            &oauth.openai_authorize_url,
            &oauth.openai_client_id,
            &oauth.openai_redirect_uri,
            OPENAI_SCOPE,
        ),
        Platform::Anthropic => (
            &oauth.anthropic_authorize_url,
            &oauth.anthropic_client_id,
            &oauth.anthropic_redirect_uri,
            ANTHROPIC_SCOPE,
        ),
    };
    let verifier = random_b64url(48);
    let challenge = b64url(&Sha256::digest(verifier.as_bytes()));
    let flow_state = random_b64url(24);
    let flow = random_b64url(24);
    let separator = if authorize.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{authorize}{separator}response_type=code&client_id={}&redirect_uri={}&scope={}&code_challenge={challenge}&code_challenge_method=S256&state={flow_state}",
        encode(client_id),
        encode(redirect),
        encode(scope),
    );
    if body.platform == Platform::OpenAi {
        url.push_str("&id_token_add_organizations=true&codex_cli_simplified_flow=true");
    } else {
        url.push_str("&code=true");
    }
    console.flows.start(
        &flow,
        Flow {
            platform: body.platform,
            verifier,
            state: flow_state,
        },
    );
    Json(SignInStarted {
        flow,
        authorize_url: url,
        redirect_uri: redirect.clone(),
        expires_in: FLOW_TTL.as_secs(),
    })
    .into_response()
}

/// The code (and the state, when the pasted text carries one) from what the user pasted.
fn code_and_state(callback: &str) -> (String, Option<String>) {
    let text = callback.trim();
    let query = text.split_once('?').map_or(text, |(_, q)| q);
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    if query.contains("code=") {
        let mut code = String::new();
        let mut state = None;
        for pair in query.split('&') {
            if let Some(v) = pair.strip_prefix("code=") {
                code = decode(v);
            } else if let Some(v) = pair.strip_prefix("state=") {
                state = Some(decode(v));
            }
        }
        return (code, state);
    }
    match text.split_once('#') {
        Some((code, state)) => (code.to_owned(), Some(state.to_owned())),
        None => (text.to_owned(), None),
    }
}

/// The ChatGPT account id from an `id_token`'s claims, when it carries one.
fn chatgpt_account_id(id_token: &str) -> Option<String> {
    let claims = b64url_decode(id_token.split('.').nth(1)?)?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    claims["https://api.openai.com/auth"]["chatgpt_account_id"]
        .as_str()
        .map(str::to_owned)
}

#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
}

fn upstream_refused(message: String) -> Refusal {
    Refusal::SignInFailed(message)
}

/// Exchanges the code for tokens.
async fn exchange(state: &AppState, flow: &Flow, code: &str) -> Result<Tokens, Refusal> {
    let oauth = &state.oauth;
    let client = crate::upstream::client(None, state.gateway().connect_timeout)
        .map_err(|e| upstream_refused(format!("no HTTP client: {e}")))?;
    let request = if flow.platform == Platform::OpenAi {
        let form = format!(
            "grant_type=authorization_code&code={}&redirect_uri={}&client_id={}&code_verifier={}",
            encode(code),
            encode(&oauth.openai_redirect_uri),
            encode(&oauth.openai_client_id),
            encode(&flow.verifier),
        );
        client
            .post(&oauth.openai_token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
    } else {
        client
            .post(&oauth.anthropic_token_url)
            .json(&serde_json::json!({
                "grant_type": "authorization_code",
                "code": code,
                "state": flow.state,
                "redirect_uri": oauth.anthropic_redirect_uri,
                "client_id": oauth.anthropic_client_id,
                "code_verifier": flow.verifier,
            }))
    };
    let response = request
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| upstream_refused(format!("token endpoint unreachable: {e}")))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| upstream_refused(format!("token endpoint answer unreadable: {e}")))?;
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .map(|v| {
                let error = v["error"].as_str().unwrap_or("error").to_owned();
                match v["error_description"].as_str() {
                    Some(d) => format!("{error}: {d}"),
                    None => error,
                }
            })
            .unwrap_or_else(|| format!("status {status}"));
        return Err(upstream_refused(format!(
            "the token endpoint refused the code ({detail}); start the sign-in again"
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| upstream_refused(format!("token endpoint answer is not a token: {e}")))
}

/// Finishes a sign-in: exchanges the code and creates the account.
#[utoipa::path(post, path = "/admin/api/oauth/finish", tag = "accounts", request_body = FinishSignIn,
    responses(
        (status = 201, description = "The account, created and in the pool", body = Object),
        (status = 400, description = "Unknown or expired flow, state mismatch, invalid account fields", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is off", body = ErrorBody),
        (status = 409, description = "An account with this name exists", body = ErrorBody),
        (status = 502, description = "The token endpoint refused the code", body = ErrorBody),
    ))]
pub async fn finish(
    admin: Admin,
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<super::Console>>,
    AdminJson(body): AdminJson<FinishSignIn>,
) -> Response {
    if let Err(e) = super::super::check_name("account", &body.name) {
        return e.into_response();
    }
    // A flow is spent by its first attempt, whatever the outcome.
    let Some(flow) = console.flows.take(&body.flow) else {
        return bad_request("flow: unknown, used or expired; start the sign-in again")
            .into_response();
    };
    let (code, pasted_state) = code_and_state(&body.callback);
    if code.is_empty() {
        return bad_request("callback: no authorization code in it").into_response();
    }
    if pasted_state.is_some_and(|s| s != flow.state) {
        return bad_request("callback: the state does not match this sign-in; start again")
            .into_response();
    }
    let tokens = match exchange(&state, &flow, &code).await {
        Ok(tokens) => tokens,
        Err(e) => return e.into_response(),
    };
    let chatgpt_account_id = tokens.id_token.as_deref().and_then(chatgpt_account_id);
    tracing::info!(account = %body.name, platform = %flow.platform, "sign-in completed");
    let create = CreateAccount {
        name: body.name,
        platform: flow.platform,
        kind: AccountKind::OAuth,
        base_url: body.base_url,
        api_key: None,
        access_token: Some(tokens.access_token),
        refresh_token: tokens.refresh_token,
        chatgpt_account_id,
        priority: body.priority,
        concurrency: body.concurrency,
        groups: body.groups,
        enabled: None,
        models: None,
        model_map: None,
        proxy: None,
        protocols: None,
    };
    accounts::create(admin, State(state), AdminJson(create))
        .await
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_callbacks() {
        assert_eq!(
            code_and_state("http://localhost:1455/auth/callback?code=ab%2Fc&state=xyz"),
            ("ab/c".to_owned(), Some("xyz".to_owned()))
        );
        assert_eq!(
            code_and_state(" code-1#st "),
            ("code-1".to_owned(), Some("st".to_owned()))
        );
        assert_eq!(code_and_state("code-9"), ("code-9".to_owned(), None));
    }

    #[test]
    fn base64url_round_trip_and_claims() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0xfb, 0xff]] {
            assert_eq!(b64url_decode(&b64url(bytes)).as_deref(), Some(bytes));
        }
        let claims = b64url(br#"{"https://api.openai.com/auth":{"chatgpt_account_id":"acct-9"}}"#);
        assert_eq!(
            chatgpt_account_id(&format!("e30.{claims}.")).as_deref(),
            Some("acct-9")
        );
        // RFC 7636 appendix B.
        assert_eq!(
            b64url(&Sha256::digest(
                b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
            )),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
