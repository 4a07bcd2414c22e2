//! The web dashboard at `/admin/`: a sign-in page, one HTML shell and plain JavaScript that
//! calls the same admin API as the CLI. All assets are compiled into the binary.
//!
//! Sign-in trades the admin token for a session: a random id in an HttpOnly, SameSite=Strict
//! cookie (Secure behind TLS) that expires after `admin.session_ttl` (default [`SESSION_TTL`])
//! on the server and in the browser, and ends at sign-out. The
//! [`Admin`](super::Admin) extractor accepts that cookie instead of the Bearer token; a
//! state-changing request must also carry the session's CSRF token in `X-CSRF-Token` and,
//! when the browser says where it comes from (`Origin`, `Sec-Fetch-Site`), come from this
//! origin. Sessions are runtime state ([`crate::runtime_state`], keyed by the digest of their
//! id): with the local backend they live in memory, and a restart signs everyone out.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub mod settings;
pub mod signin;

use super::{admin_on, AdminJson};
use crate::http::refusal::Refusal;
use crate::runtime_state::{Expiring, ExpiringMap, RuntimeState};
use crate::state::AppState;

pub use crate::config::SESSION_TTL;
const COOKIE_NAME: &str = "subrelay_session";
/// No inline script or style, no framing, nothing loaded from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const LOGIN_HTML: &str = include_str!("assets/login.html");
const SHELL_HTML: &str = include_str!("assets/app.html");
const APP_JS: &str = include_str!("assets/app.js");
const LOGIN_JS: &str = include_str!("assets/login.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// What the server keeps of a session (it expires `admin.session_ttl` after sign-in).
struct Session {
    csrf: String,
}

impl crate::runtime_state::SharedValue for Session {
    fn encode(&self) -> String {
        self.csrf.clone()
    }
    fn decode(text: &str) -> Option<Self> {
        Some(Self {
            csrf: text.to_owned(),
        })
    }
}

/// The dashboard's sessions, by the SHA-256 of their id (the id itself is kept only by the
/// browser), and how long each lasts. Part of the shared state, so every test server has its own.
pub struct Sessions {
    map: ExpiringMap<[u8; 32], Session>,
    ttl: Duration,
}

/// The dashboard's own runtime state: signed-in sessions and started account sign-ins. It sits
/// above `AppState` (which knows nothing of the dashboard) and reaches the handlers as a request
/// extension that [`super::routes`] adds.
pub struct Console {
    pub sessions: Sessions,
    pub flows: signin::Flows,
}

impl Console {
    /// Sessions lasting `session_ttl` and sign-in flows, both kept in `runtime`.
    pub fn new(session_ttl: Duration, runtime: &RuntimeState) -> Self {
        Self {
            sessions: Sessions::with_state(session_ttl, runtime),
            flows: signin::Flows::new(runtime),
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_TTL)
    }
}

impl Sessions {
    /// No sessions yet; each one opened lasts `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self::with_state(ttl, &RuntimeState::default())
    }

    /// Sessions kept in `runtime`.
    pub fn with_state(ttl: Duration, runtime: &RuntimeState) -> Self {
        Self {
            map: runtime.expiring("session"),
            ttl,
        }
    }

    /// The live session's CSRF token, if the request carries a session cookie that has not
    /// expired or been signed out.
    fn live(&self, headers: &HeaderMap) -> Option<String> {
        let id = session_id(headers)?;
        self.map.update(&digest(&id), None, |session| {
            session.as_ref().map(|s| s.csrf.clone())
        })
    }

    /// With a shared state backend: reads the request's session from Redis when this instance
    /// does not know it (opened before it started). One round trip, on a miss only.
    pub(super) async fn load(&self, headers: &HeaderMap) {
        if let Some(id) = session_id(headers) {
            self.map.fetch(&digest(&id)).await;
        }
    }

    /// Opens a session and returns its id (for the cookie).
    fn open(&self) -> String {
        let id = random_hex();
        self.insert(&id, random_hex());
        id
    }

    fn insert(&self, id: &str, csrf: String) {
        self.map.update(&digest(id), Some(self.ttl), |session| {
            *session = Some(Session { csrf })
        });
    }

    fn close(&self, id: &str) {
        self.map.remove(&digest(id));
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_owned())
}

/// Whether a browser request comes from this origin. A request without `Origin` and without
/// `Sec-Fetch-Site` is not a browser's cross-site request (browsers send `Origin` on every
/// cross-origin POST), so it passes; the CSRF token still has to match.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return true;
    };
    let Some(host) = headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let origin = origin.to_str().unwrap_or_default();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    let forwarded_host = headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok());
    authority.eq_ignore_ascii_case(host) || forwarded_host.is_some_and(|f| authority == f)
}

fn forbidden(why: &'static str) -> Refusal {
    Refusal::CsrfRefused(why)
}

/// Authorization by the dashboard session, for the [`Admin`](super::Admin) extractor:
/// `None` when the request carries no session cookie (the caller then asks for the token).
/// A session is named, for the audit trail, by the first characters of its id's digest
/// (`dashboard (session 1a2b3c4d)`): stable for the session, and no use to anyone who reads it.
pub(super) fn authorize_session(
    sessions: &Sessions,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Result<String, Refusal>> {
    let id = session_id(headers)?;
    let Some(csrf) = sessions.live(headers) else {
        return Some(Err(Refusal::SessionExpired));
    };
    let label = format!(
        "dashboard (session {})",
        digest(&id)[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Ok(label));
    }
    Some(check_csrf(&csrf, headers).map(|()| label))
}

fn check_csrf(csrf: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    if !same_origin(headers) {
        return Err(forbidden("cross-site request refused"));
    }
    let given = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if bool::from(given.as_bytes().ct_eq(csrf.as_bytes())) && !csrf.is_empty() {
        Ok(())
    } else {
        Err(forbidden("missing or wrong X-CSRF-Token"))
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/") }))
        .route("/admin/", get(shell))
        .route("/admin/login", get(login_page).post(login))
        .route("/admin/logout", post(logout))
        .route("/admin/assets/login.js", get(login_js))
        .route("/admin/assets/app.css", get(app_css))
        .route("/admin/assets/app.js", get(app_js))
        .route("/admin/favicon.svg", get(favicon))
        .route("/admin/api/oauth/start", post(signin::start))
        .route("/admin/api/oauth/finish", post(signin::finish))
        .route("/admin/api/settings", get(settings::get))
}

fn secure(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

fn page(body: String) -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CACHE_CONTROL, "no-store"),
            (http::header::CONTENT_SECURITY_POLICY, CSP),
            (http::header::X_FRAME_OPTIONS, "DENY"),
            (http::header::REFERRER_POLICY, "no-referrer"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, kind),
            (CACHE_CONTROL, "no-cache"),
            (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn sign_in_redirect() -> Response {
    Redirect::to("/admin/login").into_response()
}

async fn shell(
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    console.sessions.load(&headers).await;
    match console.sessions.live(&headers) {
        Some(csrf) => page(SHELL_HTML.replace("{{csrf}}", &csrf)),
        None => sign_in_redirect(),
    }
}

async fn app_js(
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    if console.sessions.live(&headers).is_none() {
        return (StatusCode::UNAUTHORIZED, "sign in first\n").into_response();
    }
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn login_js(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    asset("text/javascript; charset=utf-8", LOGIN_JS)
}

async fn app_css(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    asset("image/svg+xml", FAVICON_SVG)
}

async fn login_page(
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    if console.sessions.live(&headers).is_some() {
        return Redirect::to("/admin/").into_response();
    }
    page(LOGIN_HTML.to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

async fn login(
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<Console>>,
    extensions: http::Extensions,
    headers: HeaderMap,
    AdminJson(form): AdminJson<SignIn>,
) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    if !same_origin(&headers) {
        return forbidden("cross-site sign-in refused").into_response();
    }
    let Some(expected) = &state.admin_token else {
        return super::admin_off().into_response();
    };
    let client = state.clients.client_of(&extensions, &headers);
    let throttle = &state.clients.admin_failures;
    if let Err(e) = crate::http::throttle::gate(throttle, client) {
        return e.into_response();
    }
    let same =
        Sha256::digest(form.token.as_bytes()).ct_eq(&Sha256::digest(expected.expose().as_bytes()));
    if !bool::from(same) {
        crate::http::throttle::record_failure(throttle, client, "dashboard sign-in");
        return Refusal::WrongAdminToken.into_response();
    }
    throttle.succeeded(client);
    let id = console.sessions.open();
    let cookie = format!(
        "{COOKIE_NAME}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{}",
        console.sessions.ttl.as_secs(),
        if secure(&headers) { "; Secure" } else { "" }
    );
    tracing::info!("dashboard: signed in");
    with_cookie(StatusCode::NO_CONTENT, &cookie)
}

fn with_cookie(status: StatusCode, cookie: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

async fn logout(
    State(state): State<Arc<AppState>>,
    Extension(console): Extension<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = admin_on(&state) {
        return e.into_response();
    }
    let Some(id) = session_id(&headers) else {
        return sign_in_redirect();
    };
    let Some(csrf) = console.sessions.live(&headers) else {
        return sign_in_redirect();
    };
    if let Err(e) = check_csrf(&csrf, &headers) {
        return e.into_response();
    }
    console.sessions.close(&id);
    let cookie = format!(
        "{COOKIE_NAME}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0{}",
        if secure(&headers) { "; Secure" } else { "" }
    );
    with_cookie(StatusCode::NO_CONTENT, &cookie)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                *k,
                HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
            );
        }
        map
    }

    #[test]
    fn origin_must_match_the_host() {
        assert!(same_origin(&headers(&[
            ("host", "gw.local:8080"),
            ("origin", "http://gw.local:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gw.local:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "gw.local:8080"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&headers(&[("host", "gw.local:8080")])));
    }

    #[test]
    fn a_session_needs_the_csrf_token_to_change_state() {
        let sessions = Sessions::default();
        let id = random_hex();
        sessions.insert(&id, "c5rf".into());
        let cookie = format!("other=1; {COOKIE_NAME}={id}");
        let get = headers(&[("cookie", &cookie)]);
        assert!(matches!(
            authorize_session(&sessions, &Method::GET, &get),
            Some(Ok(_))
        ));
        assert!(matches!(
            authorize_session(&sessions, &Method::POST, &get),
            Some(Err(_))
        ));
        let post = headers(&[("cookie", &cookie), ("x-csrf-token", "c5rf")]);
        assert!(matches!(
            authorize_session(&sessions, &Method::POST, &post),
            Some(Ok(_))
        ));
        let wrong = headers(&[("cookie", &cookie), ("x-csrf-token", "c5rg")]);
        assert!(matches!(
            authorize_session(&sessions, &Method::DELETE, &wrong),
            Some(Err(_))
        ));
        assert!(authorize_session(&sessions, &Method::GET, &HeaderMap::new()).is_none());
        let stale = headers(&[("cookie", &format!("{COOKIE_NAME}=nope"))]);
        assert!(matches!(
            authorize_session(&sessions, &Method::GET, &stale),
            Some(Err(_))
        ));
    }
}
