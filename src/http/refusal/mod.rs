//! Every refusal the gateway answers, and the one place that renders them.
//!
//! A [`Refusal`] says what went wrong; its status, error type (`kind`), code, wording and
//! `Retry-After` are decided here, exhaustively, per variant. It is rendered in the shape the
//! caller names (the route's: OpenAI's JSON, Anthropic's JSON, or an in-stream failure event
//! once a stream is committed), never in a default one — except [`IntoResponse`], which is the
//! admin API's answer (always the OpenAI shape, see `admin/mod.rs`).

mod upstream;

use std::borrow::Cow;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::body::BodyReadTimeout;
use crate::domain::Platform;
use crate::protocol::errors::{anthropic_error_body, openai_error_body, ErrorShape};
use crate::protocol::{Protocol, Wire};
pub use upstream::{UpstreamRefusal, UpstreamWhy};

/// A spending window of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendPeriod {
    Daily,
    Monthly,
}

impl SpendPeriod {
    fn as_str(self) -> &'static str {
        match self {
            SpendPeriod::Daily => "daily",
            SpendPeriod::Monthly => "monthly",
        }
    }

    fn resets(self) -> &'static str {
        match self {
            SpendPeriod::Daily => "00:00 UTC",
            SpendPeriod::Monthly => "the first day of next month (UTC)",
        }
    }
}

/// What the client is refused, and why. Fields are what the wording needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    // --- the client's API key (http/auth.rs) ---
    MissingApiKey,
    InvalidApiKey,
    ApiKeyDisabled,
    ApiKeyExpired,
    // --- the request body (http/body.rs) ---
    BodyTooLarge {
        limit: usize,
    },
    /// The body did not arrive within `server.body_read_timeout`.
    BodyTimeout {
        after: Duration,
    },
    /// The body's transfer broke.
    BodyUnreadable(String),
    UnsupportedEncoding(String),
    /// The body is not valid gzip or zstd.
    BadEncoding {
        codec: &'static str,
        detail: String,
    },
    /// The decompression task could not run (the gateway is stopping).
    InflateFailed,
    /// The body is not a request of the route's protocol (no model, not JSON, ...).
    InvalidRequest(String),
    /// A translated request (issue 16) carries content the account's API has no form for.
    Untranslatable {
        /// The field, as a JSON path in the client's body.
        field: String,
        message: String,
        /// The API the request was to be translated for (`responses`, `chat`, `messages`).
        upstream: &'static str,
    },
    /// A Responses WebSocket turn named a `previous_response_id` the socket does not remember
    /// (relay/websocket).
    PreviousResponseNotFound {
        id: String,
    },
    // --- routing (http/mod.rs, relay/mod.rs) ---
    UnknownRoute {
        method: String,
        path: String,
    },
    MethodNotAllowed {
        method: String,
        path: String,
    },
    /// The key's group is served by the other platform: as if the route did not exist for it.
    WrongPlatform {
        group: String,
        platform: Platform,
        endpoint: &'static str,
    },
    /// The storage can take no more usage records (SECURITY.md, "Usage records when storage
    /// fails").
    UsageNotRecordable {
        request_id: String,
    },
    /// The relay task ended without answering (it panicked).
    RelayFailed,
    // --- the key's limits (limits.rs, relay admission) ---
    ModelNotAllowed {
        model: String,
        allowed: Vec<String>,
    },
    /// A spending-limited key asked for a model without a price.
    ModelUnpriced {
        model: String,
    },
    SpendingLimit {
        period: SpendPeriod,
        limit: f64,
        spent: f64,
        /// Until the window resets.
        wait: Duration,
    },
    RpmLimit {
        limit: u32,
        wait: Duration,
    },
    /// The key's concurrency slots stayed full.
    KeyBusy {
        request_id: String,
    },
    // --- the account pool (relay/mod.rs) ---
    /// Chat Completions found no API-key account (sign-in accounts serve only Responses).
    NoChatAccount {
        group: String,
        model: String,
        request_id: String,
    },
    NoAccount {
        group: String,
        model: String,
        request_id: String,
    },
    /// Every account is cooling down (`earliest` recovers first) or disabled (`None`).
    AccountsCooling {
        group: String,
        earliest: Option<Duration>,
        request_id: String,
    },
    PoolBusy {
        group: String,
        queue_full: bool,
        request_id: String,
    },
    /// Every account tried failed.
    Upstream(Box<UpstreamRefusal>),
    // --- the admin API and dashboard (admin/) ---
    AdminOff,
    InvalidAdminToken,
    /// The dashboard's sign-in form got a wrong token.
    WrongAdminToken,
    AdminThrottled {
        wait: Duration,
    },
    SessionExpired,
    CsrfRefused(&'static str),
    AdminBadRequest(String),
    AdminNotFound {
        what: &'static str,
        name: String,
    },
    Conflict(String),
    /// Config rows are rewritten from the file at every start: an edit would vanish.
    DeclaredInConfig {
        what: &'static str,
        name: String,
    },
    StoreNotFound(String),
    StoreUnavailable,
    CannotSeal,
    NoRefreshToken {
        account: String,
    },
    RefreshFailed(String),
    SignInFailed(String),
    /// A configuration reload refused the file (it does not load or validate, or the store
    /// could not take it); the running configuration stays.
    ReloadRefused(String),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::MissingApiKey
            | Refusal::InvalidApiKey
            | Refusal::ApiKeyDisabled
            | Refusal::ApiKeyExpired
            | Refusal::InvalidAdminToken
            | Refusal::WrongAdminToken
            | Refusal::SessionExpired => StatusCode::UNAUTHORIZED,
            Refusal::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refusal::BodyUnreadable(_)
            | Refusal::BadEncoding { .. }
            | Refusal::InvalidRequest(_)
            | Refusal::Untranslatable { .. }
            | Refusal::PreviousResponseNotFound { .. }
            | Refusal::AdminBadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::InflateFailed | Refusal::RelayFailed => StatusCode::INTERNAL_SERVER_ERROR,
            Refusal::UnknownRoute { .. }
            | Refusal::WrongPlatform { .. }
            | Refusal::NoChatAccount { .. }
            | Refusal::AdminOff
            | Refusal::AdminNotFound { .. }
            | Refusal::StoreNotFound(_) => StatusCode::NOT_FOUND,
            Refusal::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::UsageNotRecordable { .. }
            | Refusal::NoAccount { .. }
            | Refusal::AccountsCooling { .. }
            | Refusal::StoreUnavailable
            | Refusal::CannotSeal => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::ModelNotAllowed { .. }
            | Refusal::ModelUnpriced { .. }
            | Refusal::CsrfRefused(_) => StatusCode::FORBIDDEN,
            Refusal::SpendingLimit { .. }
            | Refusal::RpmLimit { .. }
            | Refusal::KeyBusy { .. }
            | Refusal::PoolBusy { .. }
            | Refusal::AdminThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Conflict(_)
            | Refusal::DeclaredInConfig { .. }
            | Refusal::NoRefreshToken { .. } => StatusCode::CONFLICT,
            Refusal::RefreshFailed(_) | Refusal::SignInFailed(_) => StatusCode::BAD_GATEWAY,
            Refusal::ReloadRefused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Upstream(upstream) => upstream.status(),
        }
    }

    /// The OpenAI error `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::MissingApiKey
            | Refusal::InvalidApiKey
            | Refusal::ApiKeyDisabled
            | Refusal::ApiKeyExpired
            | Refusal::BodyTooLarge { .. }
            | Refusal::BodyTimeout { .. }
            | Refusal::BodyUnreadable(_)
            | Refusal::UnsupportedEncoding(_)
            | Refusal::BadEncoding { .. }
            | Refusal::InvalidRequest(_)
            | Refusal::Untranslatable { .. }
            | Refusal::PreviousResponseNotFound { .. }
            | Refusal::UnknownRoute { .. }
            | Refusal::MethodNotAllowed { .. }
            | Refusal::NoChatAccount { .. }
            | Refusal::AdminBadRequest(_)
            | Refusal::ReloadRefused(_)
            | Refusal::NoRefreshToken { .. } => "invalid_request_error",
            Refusal::InflateFailed
            | Refusal::RelayFailed
            | Refusal::StoreUnavailable
            | Refusal::CannotSeal => "server_error",
            Refusal::WrongPlatform { .. }
            | Refusal::AdminOff
            | Refusal::AdminNotFound { .. }
            | Refusal::StoreNotFound(_) => "not_found_error",
            Refusal::UsageNotRecordable { .. }
            | Refusal::NoAccount { .. }
            | Refusal::AccountsCooling { .. } => "service_unavailable",
            Refusal::ModelNotAllowed { .. }
            | Refusal::ModelUnpriced { .. }
            | Refusal::CsrfRefused(_) => "permission_error",
            Refusal::SpendingLimit { .. }
            | Refusal::RpmLimit { .. }
            | Refusal::KeyBusy { .. }
            | Refusal::PoolBusy { .. }
            | Refusal::AdminThrottled { .. } => "rate_limit_error",
            Refusal::InvalidAdminToken | Refusal::WrongAdminToken | Refusal::SessionExpired => {
                "authentication_error"
            }
            Refusal::Conflict(_) | Refusal::DeclaredInConfig { .. } => "conflict_error",
            Refusal::RefreshFailed(_) | Refusal::SignInFailed(_) => "upstream_error",
            Refusal::Upstream(upstream) => upstream.kind(),
        }
    }

    /// The OpenAI error `code`: what a program tests.
    pub fn code(&self) -> Option<Cow<'_, str>> {
        let code = match self {
            Refusal::MissingApiKey => "missing_api_key",
            Refusal::InvalidApiKey => "invalid_api_key",
            Refusal::ApiKeyDisabled => "api_key_disabled",
            Refusal::ApiKeyExpired => "api_key_expired",
            Refusal::BodyTooLarge { .. } => "request_too_large",
            Refusal::BodyTimeout { .. } => "request_timeout",
            Refusal::PreviousResponseNotFound { .. } => "previous_response_not_found",
            Refusal::UnknownRoute { .. } => "unknown_route",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::WrongPlatform { .. } => "route_not_served_by_key_group",
            Refusal::Untranslatable { .. } => "untranslatable",
            Refusal::UsageNotRecordable { .. } => "usage_not_recordable",
            Refusal::ModelNotAllowed { .. } => "model_not_allowed",
            Refusal::ModelUnpriced { .. } => "model_unpriced",
            Refusal::SpendingLimit { period, .. } => match period {
                SpendPeriod::Daily => "key_daily_spend_limit",
                SpendPeriod::Monthly => "key_monthly_spend_limit",
            },
            Refusal::RpmLimit { .. } => "key_rpm_limit",
            Refusal::KeyBusy { .. } => "key_concurrency_limit",
            Refusal::NoChatAccount { .. } => "no_chat_account",
            Refusal::NoAccount { .. } => "no_account",
            Refusal::AccountsCooling { .. } => "accounts_cooling_down",
            Refusal::PoolBusy { .. } => "pool_busy",
            Refusal::Upstream(upstream) => return Some(Cow::Borrowed(&upstream.code)),
            Refusal::AdminOff => "admin_api_off",
            Refusal::InvalidAdminToken | Refusal::WrongAdminToken => "invalid_admin_token",
            Refusal::AdminThrottled { .. } => "admin_auth_throttled",
            Refusal::SessionExpired => "session_expired",
            Refusal::CsrfRefused(_) => "csrf_refused",
            Refusal::AdminBadRequest(_) => "invalid_request",
            Refusal::AdminNotFound { what, .. } => {
                return Some(Cow::Owned(format!("unknown_{what}")))
            }
            Refusal::Conflict(_) => "conflict",
            Refusal::DeclaredInConfig { .. } => "declared_in_config",
            Refusal::StoreNotFound(_) => "not_found",
            Refusal::StoreUnavailable => "store_unavailable",
            Refusal::SignInFailed(_) => "sign_in_failed",
            Refusal::ReloadRefused(_) => "config_reload_refused",
            Refusal::BodyUnreadable(_)
            | Refusal::UnsupportedEncoding(_)
            | Refusal::BadEncoding { .. }
            | Refusal::InflateFailed
            | Refusal::InvalidRequest(_)
            | Refusal::RelayFailed
            | Refusal::CannotSeal
            | Refusal::NoRefreshToken { .. }
            | Refusal::RefreshFailed(_) => return None,
        };
        Some(Cow::Borrowed(code))
    }

    /// What a person reads: what went wrong and what to do.
    pub fn message(&self) -> Cow<'_, str> {
        let text = match self {
            Refusal::MissingApiKey => {
                "missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
            }
            Refusal::InvalidApiKey => "invalid API key",
            Refusal::ApiKeyDisabled => "this API key is disabled",
            Refusal::ApiKeyExpired => "this API key has expired",
            Refusal::BodyTooLarge { limit } => {
                return Cow::Owned(format!(
                    "the request body is larger than gateway.max_body_size ({limit} bytes)"
                ))
            }
            Refusal::BodyTimeout { after } => {
                return Cow::Owned(BodyReadTimeout(*after).to_string())
            }
            Refusal::BodyUnreadable(detail) => {
                return Cow::Owned(format!("could not read the request body: {detail}"))
            }
            Refusal::UnsupportedEncoding(encoding) => {
                return Cow::Owned(format!(
                    "unsupported Content-Encoding {encoding:?}: send identity, gzip or zstd"
                ))
            }
            Refusal::BadEncoding { codec, detail } => {
                return Cow::Owned(format!("the request body is not valid {codec}: {detail}"))
            }
            Refusal::InflateFailed => {
                "could not decompress the request body (the gateway is shutting down)"
            }
            Refusal::InvalidRequest(message)
            | Refusal::AdminBadRequest(message)
            | Refusal::Conflict(message)
            | Refusal::RefreshFailed(message)
            | Refusal::SignInFailed(message)
            | Refusal::ReloadRefused(message) => message,
            Refusal::Untranslatable {
                field,
                message,
                upstream,
            } => {
                let at = if field.is_empty() {
                    String::new()
                } else {
                    format!("{field}: ")
                };
                return Cow::Owned(format!(
                    "{at}{message} (the request is translated for an account speaking the {upstream} API, which has no form for it)"
                ));
            }
            Refusal::UnknownRoute { method, path } => {
                return Cow::Owned(format!("no route for {method} {path}"))
            }
            Refusal::PreviousResponseNotFound { id } => {
                return Cow::Owned(format!(
                    "previous_response_id {id:?} is not a response of this WebSocket: a socket continues only the responses it answered itself; send the whole conversation without previous_response_id"
                ))
            }
            Refusal::MethodNotAllowed { method, path } => {
                return Cow::Owned(format!("{method} is not allowed on {path}"))
            }
            Refusal::WrongPlatform {
                group,
                platform,
                endpoint,
            } => {
                let hint = match platform {
                    Platform::OpenAi => "use /v1/responses or /v1/chat/completions",
                    Platform::Anthropic => "use /v1/messages",
                };
                return Cow::Owned(format!(
                    "this API key's group '{group}' is served by {} accounts, which cannot serve {endpoint}; {hint}",
                    platform.as_str()
                ));
            }
            Refusal::UsageNotRecordable { request_id } => {
                return Cow::Owned(format!(
                    "usage cannot be recorded: the gateway's storage is full or failing, so it serves no new request until it can record them again; retry later (request {request_id})"
                ))
            }
            Refusal::RelayFailed => "the gateway failed while relaying this request",
            Refusal::ModelNotAllowed { model, allowed } => {
                return Cow::Owned(format!(
                    "this API key may not use model {model:?}; allowed: {}",
                    allowed.join(", ")
                ))
            }
            Refusal::ModelUnpriced { model } => {
                return Cow::Owned(format!(
                    "this API key has a spending limit, and model {model:?} has no price, so its cost could not be counted against the limit; use a priced model, or give it a price under `prices:` in the config (USD per million tokens, see docs/CONFIG.md)"
                ))
            }
            Refusal::SpendingLimit {
                period,
                limit,
                spent,
                ..
            } => {
                return Cow::Owned(format!(
                    "this API key reached its {} spending limit of ${limit:.2} (spent ${spent:.4}); it resets at {}",
                    period.as_str(),
                    period.resets()
                ))
            }
            Refusal::RpmLimit { limit, wait } => {
                return Cow::Owned(format!(
                    "this API key reached its rate limit of {limit} requests per minute; retry in {} s",
                    wait.as_secs().max(1)
                ))
            }
            Refusal::KeyBusy { request_id } => {
                return Cow::Owned(format!(
                    "this API key already has its maximum of requests in flight; retry shortly (request {request_id})"
                ))
            }
            Refusal::NoChatAccount {
                group,
                model,
                request_id,
            } => {
                return Cow::Owned(format!(
                    "no API-key account of group '{group}' serves model '{model}': Chat Completions needs an account of type apikey (ChatGPT sign-in accounts serve only the Responses API) (request {request_id})"
                ))
            }
            Refusal::NoAccount {
                group,
                model,
                request_id,
            } => {
                return Cow::Owned(format!(
                    "no enabled account of group '{group}' serves model '{model}' (request {request_id})"
                ))
            }
            Refusal::AccountsCooling {
                group,
                earliest,
                request_id,
            } => {
                return Cow::Owned(match earliest {
                    Some(after) => format!(
                        "every account of group '{group}' is cooling down; the first recovers in {} s (request {request_id})",
                        after.as_secs().max(1)
                    ),
                    None => format!(
                        "every account of group '{group}' is disabled; see `subrelay accounts` (request {request_id})"
                    ),
                })
            }
            Refusal::PoolBusy {
                group,
                queue_full,
                request_id,
            } => {
                let why = if *queue_full {
                    "the wait queue is full"
                } else {
                    "no slot freed up in time"
                };
                return Cow::Owned(format!(
                    "the account pool of group '{group}' is busy: every account is at its concurrency limit and {why}; retry shortly (request {request_id})"
                ));
            }
            Refusal::Upstream(upstream) => return upstream.message(),
            Refusal::AdminOff => "the admin API is off: set admin.token in the config to turn it on",
            Refusal::InvalidAdminToken => {
                "missing or wrong admin token (send `Authorization: Bearer <admin.token>`)"
            }
            Refusal::WrongAdminToken => "wrong admin token",
            Refusal::AdminThrottled { .. } => {
                "too many failed admin authentications from this address; wait for Retry-After"
            }
            Refusal::SessionExpired => {
                "the dashboard session expired or was signed out; sign in again"
            }
            Refusal::CsrfRefused(why) => why,
            Refusal::AdminNotFound { what, name } => {
                return Cow::Owned(format!("no {what} named {name:?}"))
            }
            Refusal::DeclaredInConfig { what, name } => {
                return Cow::Owned(format!(
                    "{what} {name:?} is declared in the config file; change it there and reload (SIGHUP or `subrelay reload`; the store rewrites config entries at every start and reload)"
                ))
            }
            Refusal::StoreNotFound(name) => return Cow::Owned(format!("not found: {name}")),
            Refusal::StoreUnavailable => "the store is unavailable; try again",
            Refusal::CannotSeal => "cannot encrypt the credentials",
            Refusal::NoRefreshToken { account } => {
                return Cow::Owned(format!("account {account:?} has no refresh token"))
            }
        };
        Cow::Borrowed(text)
    }

    /// How long the client should wait before retrying (`Retry-After`), when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Refusal::UsageNotRecordable { .. } => Some(Duration::from_secs(5)),
            Refusal::KeyBusy { .. } | Refusal::PoolBusy { .. } => Some(Duration::from_secs(1)),
            Refusal::SpendingLimit { wait, .. } => Some(*wait),
            Refusal::RpmLimit { wait, .. } => Some((*wait).max(Duration::from_secs(1))),
            Refusal::AccountsCooling { earliest, .. } => *earliest,
            Refusal::AdminThrottled { wait } => Some(*wait),
            Refusal::Upstream(upstream) => upstream.retry_after(),
            _ => None,
        }
    }

    // --- rendering: the one place a refusal becomes bytes ---

    /// The JSON body in `shape` (an upstream's own 4xx body as it came, when there is one).
    pub fn body(&self, shape: ErrorShape) -> Bytes {
        if let Refusal::Upstream(upstream) = self {
            if let Some((_, body)) = &upstream.passthrough {
                return body.clone();
            }
        }
        match shape {
            ErrorShape::OpenAi => {
                openai_error_body(&self.message(), self.kind(), self.code().as_deref())
            }
            ErrorShape::Anthropic => anthropic_error_body(self.status(), &self.message()),
        }
    }

    /// `Content-Type: application/json`, and `Retry-After` in whole seconds when known.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(after) = self.retry_after() {
            // Round up: a client retrying early finds the pool still cooling.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, secs.max(1).into());
        }
        headers
    }

    /// The whole answer, in the route's shape.
    pub fn response(&self, shape: ErrorShape) -> Response {
        let mut response = Response::new(axum::body::Body::from(self.body(shape)));
        *response.status_mut() = self.status();
        *response.headers_mut() = self.headers();
        response
    }

    /// The in-protocol failure event that ends a stream already committed with 200.
    pub fn stream_event(&self, protocol: Protocol) -> Bytes {
        let code = self.code();
        protocol
            .stream_watch(false)
            .failure_event(code.as_deref().unwrap_or("upstream_error"), &self.message())
    }
}

/// The admin API's and dashboard's answers, always in the OpenAI shape (their documented
/// `ErrorBody`). Client routes render with [`Refusal::response`] and their route's shape.
impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        self.response(ErrorShape::OpenAi)
    }
}

#[cfg(test)]
mod tests;
