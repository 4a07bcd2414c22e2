//! Token endpoints: the refresh-token and authorization-code grants of
//! `auth.openai.com/oauth/token` and `console.anthropic.com/v1/oauth/token`, and the sign-in page
//! `GET /oauth/authorize` that hands out codes.
//!
//! Sign-in (authorization code with PKCE, RFC 7636): `GET /oauth/authorize` with
//! `response_type=code`, `client_id`, an http(s) `redirect_uri`, `code_challenge` and
//! `code_challenge_method=S256` signs the user in at once and redirects (302) to
//! `redirect_uri?code=...&state=...`. The `authorization_code` grant then needs that `code`
//! (once), the same `client_id` and `redirect_uri`, and a `code_verifier` whose base64url
//! SHA-256 is the challenge; anything else is `invalid_grant`. A bad authorize request is a 400
//! `invalid_request`. Issued tokens are those of a refresh, and the `id_token` carries the
//! ChatGPT account id (`https://api.openai.com/auth`.`chatgpt_account_id`) as the real one does.
//!
//! Why it exists: sign-in accounts hold short-lived access tokens, and the gateway must refresh
//! them once per account (single-flight), store the rotated refresh token, and give up on an
//! account whose refresh token was refused. Like the real endpoints, the mock rotates: every
//! success issues a new access token *and* a new refresh token and spends the one presented, so a
//! gateway that refreshes twice with the same token, or forgets to store the rotated one, gets
//! `invalid_grant`. A delay holds the answer back so a test can pile requests onto one refresh.
//!
//! Rules, in order: a body that cannot be read is `invalid_request`; a `grant_type` other than
//! `refresh_token` is `unsupported_grant_type`; a missing `refresh_token` or `client_id` is
//! `invalid_request`; a spent refresh token, or one starting with `revoked`, is `invalid_grant`.
//! All refusals are 400 `{"error","error_description"}`. The OpenAI endpoint takes JSON or
//! `application/x-www-form-urlencoded`; the Anthropic one takes JSON only.
//!
//! Token requests are recorded with the others but counted apart ([`TokenDesk::calls`]), so the
//! API call counts of failover tests keep their meaning.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids;
use crate::reply::{to_json, Reply};
use crate::request::Issuer;

/// `expires_in` of issued access tokens unless a test sets another.
const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// The token endpoints' memory: what was issued, what was spent, how to answer.
#[derive(Debug)]
pub(crate) struct TokenDesk {
    book: Mutex<TokenBook>,
    /// Numbers issued tokens; never reset, so tokens stay unique for the mock's whole life.
    next: AtomicU64,
}

#[derive(Debug)]
struct TokenBook {
    /// Refresh requests received, whatever their outcome.
    calls: usize,
    /// Refresh tokens already presented successfully (rotated away).
    spent: HashSet<String>,
    /// Access tokens issued, in order.
    issued_access: Vec<String>,
    /// `expires_in` of the next tokens.
    lifetime_secs: u64,
    /// Wait before answering.
    delay: Duration,
    /// Authorization codes handed out by `/oauth/authorize` and not yet exchanged.
    codes: HashMap<String, PendingCode>,
}

/// What an authorization code was issued for.
#[derive(Debug)]
struct PendingCode {
    client_id: String,
    redirect_uri: String,
    challenge: String,
}

/// The fields of a refresh-token grant.
#[derive(Debug, Default, Deserialize)]
struct Grant {
    #[serde(default)]
    grant_type: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
}

/// A successful refresh.
#[derive(Serialize)]
struct Issued<'a> {
    access_token: &'a str,
    refresh_token: &'a str,
    id_token: &'a str,
    expires_in: u64,
    token_type: &'static str,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Serialize)]
struct OAuthError<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_description: Option<&'a str>,
}

impl TokenDesk {
    pub(crate) fn new() -> Self {
        Self {
            book: Mutex::new(TokenBook {
                calls: 0,
                spent: HashSet::new(),
                issued_access: Vec::new(),
                lifetime_secs: DEFAULT_LIFETIME_SECS,
                delay: Duration::ZERO,
                codes: HashMap::new(),
            }),
            next: AtomicU64::new(1),
        }
    }

    /// A poisoned lock only means a panicking test thread; the book is still meaningful.
    fn book(&self) -> MutexGuard<'_, TokenBook> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn calls(&self) -> usize {
        self.book().calls
    }

    pub(crate) fn issued_access_tokens(&self) -> Vec<String> {
        self.book().issued_access.clone()
    }

    pub(crate) fn set_lifetime(&self, secs: u64) {
        self.book().lifetime_secs = secs;
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        self.book().delay = delay;
    }

    /// Forgets calls, issued and spent tokens; keeps the lifetime, the delay and the numbering.
    pub(crate) fn reset(&self) {
        let mut book = self.book();
        book.calls = 0;
        book.spent.clear();
        book.issued_access.clear();
        book.codes.clear();
    }

    /// `GET /oauth/authorize`: the user "signs in" at once. The 302's `Location`, or a 400.
    pub(crate) fn authorize(
        &self,
        query: &str,
    ) -> Result<(Reply, Option<String>), serde_json::Error> {
        let pairs = match parse_pairs(query.as_bytes()) {
            Ok(pairs) => pairs,
            Err(description) => return Ok((refuse("invalid_request", Some(&description))?, None)),
        };
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let problem = if get("response_type").as_deref() != Some("code") {
            Some("response_type must be code")
        } else if get("client_id").is_none() {
            Some("Missing required parameter: client_id")
        } else if !get("redirect_uri")
            .is_some_and(|u| u.starts_with("http://") || u.starts_with("https://"))
        {
            Some("redirect_uri must be an http(s) URL")
        } else if get("code_challenge").is_none() {
            Some("Missing required parameter: code_challenge (PKCE is required)")
        } else if get("code_challenge_method").as_deref() != Some("S256") {
            Some("code_challenge_method must be S256")
        } else {
            None
        };
        if let Some(description) = problem {
            return Ok((refuse("invalid_request", Some(description))?, None));
        }
        let redirect_uri = get("redirect_uri").unwrap_or_default();
        let code = format!("code-{}", self.next.fetch_add(1, Ordering::Relaxed));
        self.book().codes.insert(
            code.clone(),
            PendingCode {
                client_id: get("client_id").unwrap_or_default(),
                redirect_uri: redirect_uri.clone(),
                challenge: get("code_challenge").unwrap_or_default(),
            },
        );
        let separator = if redirect_uri.contains('?') { '&' } else { '?' };
        let mut location = format!("{redirect_uri}{separator}code={}", percent_encode(&code));
        if let Some(state) = get("state") {
            location.push_str(&format!("&state={}", percent_encode(&state)));
        }
        let reply = Reply::json(StatusCode::FOUND, bytes::Bytes::from_static(b"{}"));
        Ok((reply, Some(location)))
    }

    /// Answers one refresh request. The outcome is decided (and the presented token spent) on
    /// arrival, before the delay, so two overlapping refreshes with one token cannot both win.
    pub(crate) async fn answer(&self, issuer: Issuer, headers: &HeaderMap, body: &[u8]) -> Reply {
        let (reply, delay) = self.decide(issuer, headers, body);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        reply.unwrap_or_else(|_| Reply::unwritable())
    }

    fn decide(
        &self,
        issuer: Issuer,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Result<Reply, serde_json::Error>, Duration) {
        let mut book = self.book();
        book.calls += 1;
        let delay = book.delay;
        let grant = match read_grant(issuer, headers, body) {
            Ok(grant) => grant,
            Err(description) => return (refuse("invalid_request", Some(&description)), delay),
        };
        if grant.grant_type.as_deref() == Some("authorization_code") {
            let outcome = redeem(&mut book, &grant);
            return match outcome {
                Ok(client_id) => {
                    let reply = self.issue(book, &client_id);
                    (reply, delay)
                }
                Err(description) => (refuse("invalid_grant", Some(description)), delay),
            };
        }
        if grant.grant_type.as_deref() != Some("refresh_token") {
            return (refuse("unsupported_grant_type", None), delay);
        }
        let Some(presented) = grant.refresh_token.filter(|t| !t.is_empty()) else {
            return (
                refuse(
                    "invalid_request",
                    Some("Missing required parameter: refresh_token"),
                ),
                delay,
            );
        };
        let Some(client_id) = grant.client_id.filter(|c| !c.is_empty()) else {
            return (
                refuse(
                    "invalid_request",
                    Some("Missing required parameter: client_id"),
                ),
                delay,
            );
        };
        if presented.starts_with("revoked") {
            let reply = refuse("invalid_grant", Some("Refresh token has been revoked"));
            return (reply, delay);
        }
        if !book.spent.insert(presented) {
            let reply = refuse(
                "invalid_grant",
                Some("Refresh token has already been used to issue new tokens"),
            );
            return (reply, delay);
        }
        (self.issue(book, &client_id), delay)
    }

    /// New tokens (access, refresh, id), recorded as issued.
    fn issue(
        &self,
        mut book: MutexGuard<'_, TokenBook>,
        client_id: &str,
    ) -> Result<Reply, serde_json::Error> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let access_token = format!("at-{n}");
        let refresh_token = format!("rt-{n}");
        book.issued_access.push(access_token.clone());
        let lifetime = book.lifetime_secs;
        drop(book);

        let id_token = id_token(client_id, &access_token, lifetime);
        let issued = Issued {
            access_token: &access_token,
            refresh_token: &refresh_token,
            id_token: &id_token,
            expires_in: lifetime,
            token_type: "Bearer",
        };
        to_json(&issued, 512).map(|bytes| Reply::json(StatusCode::OK, bytes))
    }
}

/// Spends an authorization code after checking the PKCE verifier; the client id on success.
fn redeem(book: &mut TokenBook, grant: &Grant) -> Result<String, &'static str> {
    let code = grant.code.as_deref().unwrap_or_default();
    let Some(pending) = book.codes.remove(code) else {
        return Err("Unknown, expired or already used authorization code");
    };
    if grant.client_id.as_deref() != Some(pending.client_id.as_str()) {
        return Err("client_id does not match the authorization request");
    }
    if grant.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str()) {
        return Err("redirect_uri does not match the authorization request");
    }
    let verifier = grant.code_verifier.as_deref().unwrap_or_default();
    if verifier.is_empty() || base64url(&Sha256::digest(verifier.as_bytes())) != pending.challenge {
        return Err("PKCE verification failed: code_verifier does not match code_challenge");
    }
    Ok(pending.client_id)
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(text: &str) -> String {
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

fn refuse(error: &'static str, description: Option<&str>) -> Result<Reply, serde_json::Error> {
    let body = OAuthError {
        error,
        error_description: description,
    };
    to_json(&body, 128).map(|bytes| Reply::json(StatusCode::BAD_REQUEST, bytes))
}

/// Reads the grant: JSON, or (OpenAI only) a form body when the content type says so.
fn read_grant(issuer: Issuer, headers: &HeaderMap, body: &[u8]) -> Result<Grant, String> {
    let form = issuer == Issuer::OpenAi
        && headers
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
    if form {
        return read_form(body);
    }
    serde_json::from_slice(body).map_err(|err| format!("The request body is not valid JSON: {err}"))
}

/// Reads the grant fields from an `application/x-www-form-urlencoded` body.
fn read_form(body: &[u8]) -> Result<Grant, String> {
    let mut grant = Grant::default();
    for (key, value) in parse_pairs(body)? {
        let slot = match key.as_str() {
            "grant_type" => &mut grant.grant_type,
            "refresh_token" => &mut grant.refresh_token,
            "client_id" => &mut grant.client_id,
            "code" => &mut grant.code,
            "code_verifier" => &mut grant.code_verifier,
            "redirect_uri" => &mut grant.redirect_uri,
            _ => continue,
        };
        *slot = Some(value);
    }
    Ok(grant)
}

/// The decoded `key=value` pairs of a form body or a query string.
fn parse_pairs(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for pair in text.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        pairs.push((percent_decode(key)?, percent_decode(value)?));
    }
    Ok(pairs)
}

/// Decodes one form component (`+` is a space, `%XX` a byte).
fn percent_decode(text: &[u8]) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next(), bytes.next()];
                let byte = match hex {
                    [Some(&hi), Some(&lo)] => std::str::from_utf8(&[hi, lo])
                        .ok()
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok()),
                    _ => None,
                };
                out.push(byte.ok_or("The form body has a bad percent escape")?);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "The form body is not UTF-8".to_owned())
}

/// An unsigned JWT-shaped `id_token` (`alg: none`): clients may decode its claims, none may
/// trust it.
fn id_token(client_id: &str, access_token: &str, lifetime: u64) -> String {
    let now = ids::now_unix();
    let claims = serde_json::json!({
        "iss": "subrelay-mock",
        "aud": client_id,
        "sub": format!("user-{access_token}"),
        "iat": now,
        "exp": now.saturating_add(lifetime),
        "https://api.openai.com/auth": { "chatgpt_account_id": format!("acct-{access_token}") },
    });
    format!(
        "{}.{}.",
        base64url(br#"{"alg":"none","typ":"JWT"}"#),
        base64url(claims.to_string().as_bytes())
    )
}

/// Unpadded base64url.
fn base64url(bytes: &[u8]) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_values() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn form_bodies_are_decoded() {
        let grant = read_form(
            b"grant_type=refresh_token&refresh_token=a%2Bb+c&client_id=x&scope=openid+email",
        )
        .unwrap();
        assert_eq!(grant.grant_type.as_deref(), Some("refresh_token"));
        assert_eq!(grant.refresh_token.as_deref(), Some("a+b c"));
        assert_eq!(grant.client_id.as_deref(), Some("x"));
        assert!(read_form(b"refresh_token=%zz").is_err());
        assert!(read_form(b"refresh_token=%2").is_err());
    }
}
