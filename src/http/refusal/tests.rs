#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::*;

fn s(text: &str) -> String {
    text.to_owned()
}

fn upstream(why: UpstreamWhy, tried: usize, code: &str) -> Refusal {
    Refusal::Upstream(Box::new(UpstreamRefusal {
        why,
        tried,
        code: s(code),
        request_id: s("req_1"),
        passthrough: None,
    }))
}

/// A refusal, its status, kind, code, message and `Retry-After` in seconds.
type Row = (
    Refusal,
    u16,
    &'static str,
    Option<&'static str>,
    String,
    Option<u64>,
);

/// One row per variant: status, kind, code, message and `Retry-After` in seconds, as the wire
/// had them before the enum (the wording is copied from the call sites it replaced).
fn table() -> Vec<Row> {
    let secs = Duration::from_secs;
    vec![
        (Refusal::MissingApiKey, 401, "invalid_request_error", Some("missing_api_key"), s("missing API key: send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"), None),
        (Refusal::InvalidApiKey, 401, "invalid_request_error", Some("invalid_api_key"), s("invalid API key"), None),
        (Refusal::ApiKeyDisabled, 401, "invalid_request_error", Some("api_key_disabled"), s("this API key is disabled"), None),
        (Refusal::ApiKeyExpired, 401, "invalid_request_error", Some("api_key_expired"), s("this API key has expired"), None),
        (Refusal::BodyTooLarge { limit: 1024 }, 413, "invalid_request_error", Some("request_too_large"), s("the request body is larger than gateway.max_body_size (1024 bytes)"), None),
        (Refusal::BodyTimeout { after: secs(30) }, 408, "invalid_request_error", Some("request_timeout"), s("the request body took longer than server.body_read_timeout (30 s) to arrive"), None),
        (Refusal::BodyUnreadable(s("reset")), 400, "invalid_request_error", None, s("could not read the request body: reset"), None),
        (Refusal::UnsupportedEncoding(s("br")), 415, "invalid_request_error", None, s("unsupported Content-Encoding \"br\": send identity, gzip or zstd"), None),
        (Refusal::BadEncoding { codec: "gzip", detail: s("bad header") }, 400, "invalid_request_error", None, s("the request body is not valid gzip: bad header"), None),
        (Refusal::InflateFailed, 500, "server_error", None, s("could not decompress the request body (the gateway is shutting down)"), None),
        (Refusal::InvalidRequest(s("missing model")), 400, "invalid_request_error", None, s("missing model"), None),
        (Refusal::PreviousResponseNotFound { id: s("resp_1") }, 400, "invalid_request_error", Some("previous_response_not_found"), s("previous_response_id \"resp_1\" is not a response of this WebSocket: a socket continues only the responses it answered itself; send the whole conversation without previous_response_id"), None),
        (Refusal::UnknownRoute { method: s("GET"), path: s("/nope") }, 404, "invalid_request_error", Some("unknown_route"), s("no route for GET /nope"), None),
        (Refusal::MethodNotAllowed { method: s("GET"), path: s("/v1/messages") }, 405, "invalid_request_error", Some("method_not_allowed"), s("GET is not allowed on /v1/messages"), None),
        (Refusal::WrongPlatform { group: s("g"), platform: Platform::Anthropic, endpoint: "responses" }, 404, "not_found_error", Some("route_not_served_by_key_group"), s("this API key's group 'g' is served by anthropic accounts, which cannot serve responses; use /v1/messages"), None),
        (Refusal::WrongPlatform { group: s("g"), platform: Platform::OpenAi, endpoint: "messages" }, 404, "not_found_error", Some("route_not_served_by_key_group"), s("this API key's group 'g' is served by openai accounts, which cannot serve messages; use /v1/responses or /v1/chat/completions"), None),
        (Refusal::UsageNotRecordable { request_id: s("req_1") }, 503, "service_unavailable", Some("usage_not_recordable"), s("usage cannot be recorded: the gateway's storage is full or failing, so it serves no new request until it can record them again; retry later (request req_1)"), Some(5)),
        (Refusal::RelayFailed, 500, "server_error", None, s("the gateway failed while relaying this request"), None),
        (Refusal::ModelNotAllowed { model: s("o3"), allowed: vec![s("a"), s("b")] }, 403, "permission_error", Some("model_not_allowed"), s("this API key may not use model \"o3\"; allowed: a, b"), None),
        (Refusal::ModelUnpriced { model: s("m") }, 403, "permission_error", Some("model_unpriced"), s("this API key has a spending limit, and model \"m\" has no price, so its cost could not be counted against the limit; use a priced model, or give it a price under `prices:` in the config (USD per million tokens, see docs/CONFIG.md)"), None),
        (Refusal::SpendingLimit { period: SpendPeriod::Daily, limit: 1.0, spent: 1.23456, wait: Duration::from_millis(1500) }, 429, "rate_limit_error", Some("key_daily_spend_limit"), s("this API key reached its daily spending limit of $1.00 (spent $1.2346); it resets at 00:00 UTC"), Some(2)),
        (Refusal::SpendingLimit { period: SpendPeriod::Monthly, limit: 20.0, spent: 20.5, wait: secs(86_400) }, 429, "rate_limit_error", Some("key_monthly_spend_limit"), s("this API key reached its monthly spending limit of $20.00 (spent $20.5000); it resets at the first day of next month (UTC)"), Some(86_400)),
        (Refusal::RpmLimit { limit: 3, wait: Duration::from_millis(200) }, 429, "rate_limit_error", Some("key_rpm_limit"), s("this API key reached its rate limit of 3 requests per minute; retry in 1 s"), Some(1)),
        (Refusal::KeyBusy { request_id: s("req_1") }, 429, "rate_limit_error", Some("key_concurrency_limit"), s("this API key already has its maximum of requests in flight; retry shortly (request req_1)"), Some(1)),
        (Refusal::NoChatAccount { group: s("g"), model: s("m"), request_id: s("req_1") }, 404, "invalid_request_error", Some("no_chat_account"), s("no API-key account of group 'g' serves model 'm': Chat Completions needs an account of type apikey (ChatGPT sign-in accounts serve only the Responses API) (request req_1)"), None),
        (Refusal::NoAccount { group: s("g"), model: s("m"), request_id: s("req_1") }, 503, "service_unavailable", Some("no_account"), s("no enabled account of group 'g' serves model 'm' (request req_1)"), None),
        (Refusal::AccountsCooling { group: s("g"), earliest: Some(secs(42)), request_id: s("req_1") }, 503, "service_unavailable", Some("accounts_cooling_down"), s("every account of group 'g' is cooling down; the first recovers in 42 s (request req_1)"), Some(42)),
        (Refusal::AccountsCooling { group: s("g"), earliest: None, request_id: s("req_1") }, 503, "service_unavailable", Some("accounts_cooling_down"), s("every account of group 'g' is disabled; see `subrelay accounts` (request req_1)"), None),
        (Refusal::PoolBusy { group: s("g"), queue_full: true, request_id: s("req_1") }, 429, "rate_limit_error", Some("pool_busy"), s("the account pool of group 'g' is busy: every account is at its concurrency limit and the wait queue is full; retry shortly (request req_1)"), Some(1)),
        (Refusal::PoolBusy { group: s("g"), queue_full: false, request_id: s("req_1") }, 429, "rate_limit_error", Some("pool_busy"), s("the account pool of group 'g' is busy: every account is at its concurrency limit and no slot freed up in time; retry shortly (request req_1)"), Some(1)),
        (Refusal::AdminOff, 404, "not_found_error", Some("admin_api_off"), s("the admin API is off: set admin.token in the config to turn it on"), None),
        (Refusal::InvalidAdminToken, 401, "authentication_error", Some("invalid_admin_token"), s("missing or wrong admin token (send `Authorization: Bearer <admin.token>`)"), None),
        (Refusal::WrongAdminToken, 401, "authentication_error", Some("invalid_admin_token"), s("wrong admin token"), None),
        (Refusal::AdminThrottled { wait: Duration::from_millis(2500) }, 429, "rate_limit_error", Some("admin_auth_throttled"), s("too many failed admin authentications from this address; wait for Retry-After"), Some(3)),
        (Refusal::SessionExpired, 401, "authentication_error", Some("session_expired"), s("the dashboard session expired or was signed out; sign in again"), None),
        (Refusal::CsrfRefused("cross-site request refused"), 403, "permission_error", Some("csrf_refused"), s("cross-site request refused"), None),
        (Refusal::AdminBadRequest(s("limit: must be 1–1000")), 400, "invalid_request_error", Some("invalid_request"), s("limit: must be 1–1000"), None),
        (Refusal::AdminNotFound { what: "account", name: s("a") }, 404, "not_found_error", Some("unknown_account"), s("no account named \"a\""), None),
        (Refusal::Conflict(s("a key named \"k\" exists")), 409, "conflict_error", Some("conflict"), s("a key named \"k\" exists"), None),
        (Refusal::Untranslatable { field: s("messages[0].content[1]"), message: s("document blocks have no Chat form"), upstream: "chat" }, 400, "invalid_request_error", Some("untranslatable"), s("messages[0].content[1]: document blocks have no Chat form (the request is translated for an account speaking the chat API, which has no form for it)"), None),
        (Refusal::DeclaredInConfig { what: "key", name: s("k") }, 409, "conflict_error", Some("declared_in_config"), s("key \"k\" is declared in the config file; change it there and reload (SIGHUP or `subrelay reload`; the store rewrites config entries at every start and reload)"), None),
        (Refusal::StoreNotFound(s("k")), 404, "not_found_error", Some("not_found"), s("not found: k"), None),
        (Refusal::StoreUnavailable, 503, "server_error", Some("store_unavailable"), s("the store is unavailable; try again"), None),
        (Refusal::CannotSeal, 503, "server_error", None, s("cannot encrypt the credentials"), None),
        (Refusal::NoRefreshToken { account: s("a") }, 409, "invalid_request_error", None, s("account \"a\" has no refresh token"), None),
        (Refusal::RefreshFailed(s("refresh refused")), 502, "upstream_error", None, s("refresh refused"), None),
        (Refusal::SignInFailed(s("token endpoint unreachable")), 502, "upstream_error", Some("sign_in_failed"), s("token endpoint unreachable"), None),
        (Refusal::ReloadRefused(s("gateway.max_body_size = -1: must be ...")), 422, "invalid_request_error", Some("config_reload_refused"), s("gateway.max_body_size = -1: must be ..."), None),
        // The upstream's failures, one per reason the relay can give.
        (upstream(UpstreamWhy::RateLimited { retry_after: Some(secs(7)) }, 2, "upstream_status_429"), 429, "rate_limit_error", Some("upstream_status_429"), s("upstream rate limit reached on all 2 accounts tried (request req_1)"), Some(7)),
        (upstream(UpstreamWhy::CredentialsRejected { status: 403 }, 1, "upstream_status_403"), 502, "upstream_error", Some("upstream_status_403"), s("upstream rejected the credentials of the account tried (status 403); the gateway's operator must renew them (request req_1)"), None),
        (upstream(UpstreamWhy::Billing, 1, "upstream_status_402"), 502, "upstream_error", Some("upstream_status_402"), s("upstream refused the account tried for billing reasons (status 402) (request req_1)"), None),
        (upstream(UpstreamWhy::Overloaded, 3, "upstream_status_529"), 503, "overloaded_error", Some("upstream_status_529"), s("upstream overloaded on all 3 accounts tried (status 529) (request req_1)"), None),
        (upstream(UpstreamWhy::Status { status: 500 }, 1, "upstream_status_500"), 502, "upstream_error", Some("upstream_status_500"), s("upstream error on the account tried (status 500) (request req_1)"), None),
        (upstream(UpstreamWhy::Unreachable, 1, "connect_error"), 502, "upstream_error", Some("connect_error"), s("could not connect to the upstream of the account tried (request req_1)"), None),
        (upstream(UpstreamWhy::NoHeaders, 1, "header_timeout"), 504, "timeout_error", Some("header_timeout"), s("the upstream of the account tried did not answer in time (request req_1)"), None),
        (upstream(UpstreamWhy::Broken, 1, "transport_error"), 502, "upstream_error", Some("transport_error"), s("the upstream connection broke on the account tried (request req_1)"), None),
        (upstream(UpstreamWhy::Stalled, 1, "stream_stalled"), 504, "timeout_error", Some("stream_stalled"), s("the upstream stream stalled on the account tried (request req_1)"), None),
        (upstream(UpstreamWhy::NoFirstToken, 2, "first_token_timeout"), 504, "timeout_error", Some("first_token_timeout"), s("the upstream stream of all 2 accounts tried sent no output in time (request req_1)"), None),
        (upstream(UpstreamWhy::RequestRefused { detail: s("bad input") }, 1, "invalid_prompt"), 400, "invalid_request_error", Some("invalid_prompt"), s("upstream refused the request: bad input (request req_1)"), None),
        (upstream(UpstreamWhy::ResponseFailed, 1, "server_error"), 502, "upstream_error", Some("server_error"), s("the upstream response failed on the account tried (request req_1)"), None),
        (upstream(UpstreamWhy::Unusable { detail: s("too big") }, 1, "bad_upstream_answer"), 502, "upstream_error", Some("bad_upstream_answer"), s("unusable upstream answer on the account tried: too big (request req_1)"), None),
        (upstream(UpstreamWhy::ClientGone, 1, "orphan_read_limit"), 502, "upstream_error", Some("orphan_read_limit"), s("the client went away before the upstream answer ended (request req_1)"), None),
        (upstream(UpstreamWhy::OutOfResources, 1, "gateway_out_of_resources"), 503, "service_unavailable", Some("gateway_out_of_resources"), s("the gateway is out of local resources (open files or sockets) and cannot reach an upstream now; retry shortly (request req_1)"), None),
        (upstream(UpstreamWhy::NotJson { status: StatusCode::NOT_FOUND, summary: s(": <html>") }, 1, "upstream_status_404"), 404, "invalid_request_error", Some("upstream_status_404"), s("the upstream refused the request (status 404): <html> (request req_1)"), None),
    ]
}

/// Fails to compile when a variant is added without a row above (every arm names one).
fn has_a_row(refusal: &Refusal) {
    match refusal {
        Refusal::MissingApiKey
        | Refusal::InvalidApiKey
        | Refusal::ApiKeyDisabled
        | Refusal::ApiKeyExpired
        | Refusal::BodyTooLarge { .. }
        | Refusal::BodyTimeout { .. }
        | Refusal::BodyUnreadable(_)
        | Refusal::UnsupportedEncoding(_)
        | Refusal::BadEncoding { .. }
        | Refusal::InflateFailed
        | Refusal::InvalidRequest(_)
        | Refusal::PreviousResponseNotFound { .. }
        | Refusal::UnknownRoute { .. }
        | Refusal::MethodNotAllowed { .. }
        | Refusal::WrongPlatform { .. }
        | Refusal::UsageNotRecordable { .. }
        | Refusal::RelayFailed
        | Refusal::ModelNotAllowed { .. }
        | Refusal::ModelUnpriced { .. }
        | Refusal::SpendingLimit { .. }
        | Refusal::RpmLimit { .. }
        | Refusal::KeyBusy { .. }
        | Refusal::NoChatAccount { .. }
        | Refusal::NoAccount { .. }
        | Refusal::AccountsCooling { .. }
        | Refusal::PoolBusy { .. }
        | Refusal::Upstream(_)
        | Refusal::Untranslatable { .. }
        | Refusal::AdminOff
        | Refusal::InvalidAdminToken
        | Refusal::WrongAdminToken
        | Refusal::AdminThrottled { .. }
        | Refusal::SessionExpired
        | Refusal::CsrfRefused(_)
        | Refusal::AdminBadRequest(_)
        | Refusal::AdminNotFound { .. }
        | Refusal::Conflict(_)
        | Refusal::DeclaredInConfig { .. }
        | Refusal::StoreNotFound(_)
        | Refusal::StoreUnavailable
        | Refusal::CannotSeal
        | Refusal::NoRefreshToken { .. }
        | Refusal::RefreshFailed(_)
        | Refusal::SignInFailed(_)
        | Refusal::ReloadRefused(_) => {}
    }
}

fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn every_refusal_has_its_status_kind_code_message_and_retry_after() {
    let rows = table();
    // Every variant has at least one row (the upstream's reasons have one each).
    let variants: std::collections::HashSet<_> = rows
        .iter()
        .map(|(r, ..)| {
            has_a_row(r);
            std::mem::discriminant(r)
        })
        .collect();
    assert_eq!(variants.len(), 45, "a variant was added or lost a row");
    for (refusal, status, kind, code, message, retry) in rows {
        let name = format!("{refusal:?}");
        assert_eq!(refusal.status().as_u16(), status, "{name}");
        assert_eq!(refusal.kind(), kind, "{name}");
        assert_eq!(refusal.code().as_deref(), code, "{name}");
        assert_eq!(refusal.message(), message, "{name}");
        let header = refusal.headers();
        let header = header
            .get(http::header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        assert_eq!(header, retry, "{name}");
    }
}

#[test]
fn every_refusal_renders_in_both_shapes() {
    for (refusal, status, kind, code, message, _) in table() {
        let name = format!("{refusal:?}");
        let openai = json(&refusal.body(ErrorShape::OpenAi));
        assert_eq!(openai["error"]["type"], kind, "{name}");
        assert_eq!(openai["error"]["message"], message.as_str(), "{name}");
        assert_eq!(openai["error"]["code"].as_str(), code, "{name}");
        assert!(openai.get("type").is_none(), "{name}: {openai}");

        let anthropic = json(&refusal.body(ErrorShape::Anthropic));
        assert_eq!(anthropic["type"], "error", "{name}");
        let status = StatusCode::from_u16(status).unwrap();
        assert_eq!(
            anthropic["error"]["type"],
            crate::protocol::errors::anthropic_error_type(status),
            "{name}"
        );
        assert_eq!(anthropic["error"]["message"], message.as_str(), "{name}");
    }
}

#[test]
fn a_response_carries_status_headers_and_the_shape_asked_for() {
    let refusal = Refusal::MethodNotAllowed {
        method: s("GET"),
        path: s("/v1/messages"),
    };
    let response = refusal.response(ErrorShape::Anthropic);
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "application/json"
    );
    // The admin API's answer is the OpenAI shape.
    let admin = Refusal::AdminOff.into_response();
    assert_eq!(admin.status(), StatusCode::NOT_FOUND);
}

#[test]
fn an_upstream_body_passed_through_replaces_status_and_body_but_not_the_stream_event() {
    let body = Bytes::from_static(br#"{"error":{"message":"bad","type":"invalid_request_error"}}"#);
    let refusal = Refusal::Upstream(Box::new(UpstreamRefusal {
        why: UpstreamWhy::Status { status: 400 },
        tried: 1,
        code: s("upstream_status_400"),
        request_id: s("req_1"),
        passthrough: Some((StatusCode::BAD_REQUEST, body.clone())),
    }));
    assert_eq!(refusal.status(), StatusCode::BAD_REQUEST);
    assert_eq!(refusal.body(ErrorShape::OpenAi), body);
    assert_eq!(refusal.body(ErrorShape::Anthropic), body);
    // A stream committed before the failure is told in-protocol, with the gateway's words.
    let event = refusal.stream_event(Protocol::Responses);
    let text = std::str::from_utf8(&event).unwrap();
    assert!(text.contains("upstream_status_400"), "{text}");
    assert!(
        text.contains("upstream error on the account tried (status 400) (request req_1)"),
        "{text}"
    );
}

#[test]
fn a_refusal_without_a_code_ends_a_stream_as_an_upstream_error() {
    let event = Refusal::RelayFailed.stream_event(Protocol::Responses);
    let text = std::str::from_utf8(&event).unwrap();
    assert!(text.contains("\"upstream_error\""), "{text}");
    assert!(
        text.contains("the gateway failed while relaying this request"),
        "{text}"
    );
}
