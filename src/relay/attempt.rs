//! One attempt on one account: credential → build → send → classify.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::time::Instant;

use super::failure::AttemptFailure;
use super::route::{self, Direction, Route};
use super::writer::DownstreamWriter;
use super::{respond, Endpoint, Outcome, RequestContext};
use crate::domain::{AccountKind, Secret};
use crate::http::refusal::Refusal;
use crate::pool::quota::{self, QuotaSnapshot};
use crate::pool::{Account, AccountEffect};
use crate::protocol::errors::{self, ErrorShape};
use crate::protocol::responses::{self, BodyEdits};
use crate::protocol::{anthropic, chat, Protocol, Wire};
use crate::state::AppState;
use crate::store::tokens::{self, TokenError};
use crate::translate::{Target, Untranslatable};
use crate::upstream::{self, SessionRewrite};

/// Largest upstream error body kept (for the log and for passing a 4xx through).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an error body may take to arrive once its headers came.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// An attempt whose answer was delivered.
pub(super) struct Attempted {
    pub status: u16,
    /// What the client got (a success, or a stream whose own terminal event says it failed).
    pub outcome: Outcome,
    /// What the answer's headers said about the account's quota.
    pub quota: Option<QuotaSnapshot>,
    /// When the upstream request went out (for time to first token).
    pub since_send: Instant,
}

/// Runs one attempt. A 401 on a sign-in account refreshes its token and tries the same account
/// once more before the failure counts. `Err` is a failure the client has not seen.
pub(super) async fn run(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    account: &Account,
) -> Result<Attempted, AttemptFailure> {
    // native or translated: selection only offers accounts that can do one of them
    let Some(route) = route::route(ctx.endpoint, &account.spec) else {
        let mut failure =
            AttemptFailure::bad_answer("the account speaks no API this request can use");
        failure.effect = AccountEffect::None;
        return Err(failure);
    };
    ctx.upstream_protocol = Some(route.upstream(ctx.endpoint));
    // credential
    let (credential, generation) = tokens::fresh(state.tokens(), account)
        .await
        .map_err(token_failure)?;
    let result = match send(state, ctx, writer, account, route, &credential, None).await {
        Err(failure)
            if failure.status == Some(StatusCode::UNAUTHORIZED) && writer.can_fail_over() =>
        {
            match tokens::refresh_rejected(state.tokens(), account, generation).await {
                None => Err(failure),
                Some(Err(refresh_failure)) => Err(token_failure(refresh_failure)),
                Some(Ok((renewed, _))) => {
                    tracing::info!(request_id = %ctx.id, account = %account.spec.name, "upstream refused the token; retrying once with a refreshed one");
                    send(state, ctx, writer, account, route, &renewed, None).await
                }
            }
        }
        other => other,
    };
    match result {
        Err(failure)
            if route == Route::Native
                && is_foreign_thinking_signature(ctx, &failure)
                && writer.can_fail_over() =>
        {
            let Some(stripped) = anthropic::strip_thinking(&ctx.body) else {
                return Err(failure);
            };
            tracing::warn!(
                request_id = %ctx.id,
                account = %account.spec.name,
                "the upstream refused thinking blocks signed by another account; retrying once without them"
            );
            send(
                state,
                ctx,
                writer,
                account,
                route,
                &credential,
                Some(stripped),
            )
            .await
        }
        other => other,
    }
}

/// A refresh that failed, as the attempt's failure: a refused refresh token disables the account.
fn token_failure(e: TokenError) -> AttemptFailure {
    let refused = matches!(e, TokenError::Refused(_));
    let mut failure = AttemptFailure::bad_answer(e.to_string());
    if refused {
        failure.effect = AccountEffect::Disable("refresh token refused (invalid_grant)");
    }
    failure
}

/// A 400 about thinking-block signatures: the conversation moved here from another account.
fn is_foreign_thinking_signature(ctx: &RequestContext, failure: &AttemptFailure) -> bool {
    ctx.endpoint.protocol() == Protocol::Messages
        && failure.status == Some(StatusCode::BAD_REQUEST)
        && failure
            .passthrough
            .as_ref()
            .is_some_and(|(_, body)| anthropic::is_foreign_signature_error(body))
}

/// Build → send → classify, with a given credential (and, for a retry, a given body).
async fn send(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    account: &Account,
    route: Route,
    credential: &Secret,
    body_override: Option<Bytes>,
) -> Result<Attempted, AttemptFailure> {
    // build
    let (uri, headers, body) = match route {
        Route::Native => build(state, ctx, account, credential, body_override)?,
        Route::Translated(direction) => {
            build_translated(state, ctx, account, credential, direction)?
        }
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;

    // send — the wait is real from here on, so keepalive may start
    let since_send = Instant::now();
    let limit = ctx.gateway.response_header_timeout;
    // A streaming client's first output is due `gateway.first_token_timeout` after the send:
    // headers that have not come by then are no output either.
    let first_token = ctx
        .gateway
        .first_token_timeout
        .filter(|_| ctx.client_streams())
        .map(|after| respond::FirstToken {
            deadline: since_send + after,
            after,
        });
    let header_wait = first_token.map_or(limit, |ft| ft.after.min(limit));
    let send = send_request(state, ctx, account, route, request);
    let response = match writer.wait(tokio::time::timeout(header_wait, send)).await {
        Err(_) if header_wait < limit => {
            return Err(AttemptFailure::first_token_timeout(header_wait))
        }
        Err(_) => return Err(AttemptFailure::header_timeout(limit)),
        Ok(Err(e)) if e.local => return Err(AttemptFailure::local_resources(&e)),
        Ok(Err(e)) if e.connect => return Err(AttemptFailure::connect(&e)),
        Ok(Err(e)) => return Err(AttemptFailure::transport(&e)),
        Ok(Ok(response)) => response,
    };

    // classify
    let status = response.status();
    if !(status.is_success() || status.is_client_error() || status.is_server_error()) {
        return Err(AttemptFailure::not_an_answer(status));
    }
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = writer.wait(read_error_body(response)).await;
        // Some upstreams quote the credential they were sent; it must reach neither the
        // client nor the log.
        let body = redact(body, credential.expose());
        let mut failure =
            AttemptFailure::from_status(status, &headers, body, account.spec.platform);
        if let Route::Translated(direction) = route {
            reshape_passthrough(&mut failure, ctx, direction);
        }
        return Err(failure);
    }
    let quota = quota::from_headers(response.headers(), SystemTime::now());
    let outcome = respond::answer(state, ctx, writer, response, first_token, route)
        .await
        .map_err(|failure| redact_failure(failure, credential.expose()))?;
    Ok(Attempted {
        status: status.as_u16(),
        outcome,
        quota,
        since_send,
    })
}

/// Sends the request: over the WebSocket turn's upstream socket when the account's backend
/// speaks that transport (`upstream::websocket`), else as the POST it is. An upstream that
/// refuses the upgrade is remembered and this turn (and later ones) go as POSTs.
async fn send_request(
    state: &AppState,
    ctx: &RequestContext,
    account: &Account,
    route: Route,
    request: http::Request<Bytes>,
) -> Result<upstream::Response, upstream::SendError> {
    if let Some(turn) = websocket_turn(state, ctx, account, route) {
        let limits = upstream::websocket::Limits {
            connect_timeout: ctx.gateway.connect_timeout,
            max_message: ctx.gateway.max_event_bytes,
            keepalive: ctx.gateway.stream_keepalive_interval,
        };
        let name = &account.spec.name;
        // Boxed, like the POST below: a WebSocket turn's send is the next largest state.
        let sent = Box::pin(upstream::websocket::send(
            turn,
            name,
            request.uri(),
            request.headers(),
            request.body(),
            limits,
            account.spec.proxy.as_ref(),
        ))
        .await?;
        match sent {
            upstream::websocket::Sent::Answer(response) => return Ok(response),
            upstream::websocket::Sent::Refused(status) => {
                tracing::info!(
                    request_id = %ctx.id,
                    account = %name,
                    status = status.as_u16(),
                    "the upstream refused the WebSocket upgrade; this account's turns go over HTTP for an hour"
                );
                state.websocket_refusals.remember(name, status.as_u16());
            }
        }
    }
    // Boxed: the send's future (hyper's client, the HTTP/2 pool, reqwest) is the largest state
    // of the relay future (7.6 of its 20.9 KiB in a debug build), yet it ends when the answer's
    // head arrives; inline, every open stream would keep its room for the stream's whole life.
    Box::pin(account.sender.send(request)).await
}

/// The WebSocket turn to send over a socket: a native Responses turn of a downstream socket, to
/// a sign-in account reached directly or through its own proxy (a proxy only from the
/// environment keeps the account on HTTP), whose upstream has not refused the upgrade.
fn websocket_turn<'c>(
    state: &AppState,
    ctx: &'c RequestContext,
    account: &Account,
    route: Route,
) -> Option<&'c upstream::websocket::Turn> {
    let turn = ctx.upstream_socket.as_ref()?;
    let usable = route == Route::Native
        && ctx.endpoint == Endpoint::Responses
        && account.spec.kind == AccountKind::OAuth
        && (matches!(account.sender, upstream::Sender::Direct(_)) || account.spec.proxy.is_some())
        && !state.websocket_refusals.refused(&account.spec.name);
    usable.then_some(turn)
}

/// The upstream request for this account: URL, headers and body by protocol and account kind.
fn build(
    state: &AppState,
    ctx: &RequestContext,
    account: &Account,
    credential: &Secret,
    body_override: Option<Bytes>,
) -> Result<(http::Uri, http::HeaderMap, Bytes), AttemptFailure> {
    let spec = &account.spec;
    let mapped = account.upstream_model(&ctx.inspected.model);
    // The body names the client's model; the group's and the account's maps may both change it.
    let model = (mapped != ctx.client_model()).then_some(mapped);
    let streams = ctx.client_streams();
    let built = match ctx.endpoint.protocol() {
        Protocol::Responses => {
            let compact = ctx.endpoint == Endpoint::Compact;
            let codex = spec.kind == AccountKind::OAuth;
            // The Codex backend only streams (compact answers JSON).
            let wants_stream = if codex { !compact } else { streams };
            let cache_key = ctx
                .inspected
                .prompt_cache_key
                .as_deref()
                .map(|k| state.sessions.derive(&ctx.key.id, k));
            let edits = BodyEdits {
                codex: codex.then_some(compact),
                model,
                prompt_cache_key: cache_key.as_deref(),
            };
            let body = if edits.is_empty() {
                Ok(ctx.body.clone())
            } else {
                responses::rewrite(&ctx.body, &edits)
            };
            let sessions = SessionRewrite {
                ids: &state.sessions,
                key_id: &ctx.key.id,
            };
            let headers = upstream::upstream_headers(
                spec,
                credential,
                &ctx.client_headers,
                wants_stream,
                compact,
                &sessions,
            );
            body.map(|b| (account.endpoints.responses(compact), headers, b))
        }
        Protocol::Chat => {
            // Ask for the usage chunk; the client's stream will not show it unless it asked.
            let request_usage = streams && !ctx.inspected.include_usage;
            let body = if model.is_none() && !request_usage {
                Ok(ctx.body.clone())
            } else {
                chat::rewrite(&ctx.body, model, request_usage)
            };
            let headers = upstream::chat_headers(credential, &ctx.client_headers, streams);
            body.map(|b| (account.endpoints.chat(), headers, b))
        }
        Protocol::Messages => {
            let base = body_override.unwrap_or_else(|| ctx.body.clone());
            let body = match model {
                Some(m) => anthropic::rewrite_model(&base, m),
                None => Ok(base),
            };
            let url = account.endpoints.messages(
                spec,
                ctx.endpoint == Endpoint::CountTokens,
                ctx.query.as_deref(),
            );
            let headers =
                upstream::anthropic_headers(spec, credential, &ctx.client_headers, streams);
            body.map(|b| (url, headers, b))
        }
    };
    built.map_err(|message| {
        let mut failure = AttemptFailure::bad_answer(message.clone());
        failure.retryable = false;
        failure.effect = AccountEffect::None;
        let refusal = Refusal::InvalidRequest(message);
        let body = refusal.body(ctx.endpoint.protocol().error_shape());
        failure.passthrough = Some((StatusCode::BAD_REQUEST, body));
        failure
    })
}

/// The upstream request of a translated attempt: the direction's body (then the Codex rules and
/// the per-key `prompt_cache_key` for a Responses upstream), and the upstream API's URL and
/// headers. Content the upstream API has no form for is refused (400 in the client's shape).
fn build_translated(
    state: &AppState,
    ctx: &RequestContext,
    account: &Account,
    credential: &Secret,
    direction: Direction,
) -> Result<(http::Uri, http::HeaderMap, Bytes), AttemptFailure> {
    let spec = &account.spec;
    let upstream = direction.upstream();
    let codex = spec.kind == AccountKind::OAuth && upstream == Protocol::Responses;
    let target = Target {
        upstream_model: account.upstream_model(&ctx.inspected.model).to_owned(),
        codex_backend: codex,
    };
    let translated = direction
        .request(&ctx.body, &target)
        .map_err(|u| untranslatable(ctx, u, upstream))?;
    let streams = translated.upstream_stream;
    let built = match upstream {
        Protocol::Responses => {
            // The conversation's identity (Messages: `metadata.user_id`), derived per key as
            // for a native client.
            let cache_key = ctx
                .inspected
                .prompt_cache_key
                .as_deref()
                .or(ctx.inspected.user_id.as_deref())
                .filter(|k| !k.is_empty())
                .map(|k| state.sessions.derive(&ctx.key.id, k));
            let edits = BodyEdits {
                codex: codex.then_some(false),
                model: None,
                prompt_cache_key: cache_key.as_deref(),
            };
            let body = if edits.is_empty() {
                Ok(translated.body)
            } else {
                responses::rewrite(&translated.body, &edits)
            };
            let sessions = SessionRewrite {
                ids: &state.sessions,
                key_id: &ctx.key.id,
            };
            let headers = upstream::upstream_headers(
                spec,
                credential,
                &ctx.client_headers,
                streams,
                false,
                &sessions,
            );
            body.map(|b| (account.endpoints.responses(false), headers, b))
        }
        Protocol::Chat => {
            let headers = upstream::chat_headers(credential, &ctx.client_headers, streams);
            Ok((account.endpoints.chat(), headers, translated.body))
        }
        Protocol::Messages => {
            let url = account.endpoints.messages(spec, false, None);
            let headers =
                upstream::anthropic_headers(spec, credential, &ctx.client_headers, streams);
            Ok((url, headers, translated.body))
        }
    };
    built.map_err(|message| {
        untranslatable(
            ctx,
            Untranslatable {
                field: String::new(),
                message,
            },
            upstream,
        )
    })
}

/// A request the upstream API cannot take: refused before anything is sent, with a 400 in the
/// client's shape naming the field; another account would not do better.
fn untranslatable(ctx: &RequestContext, u: Untranslatable, upstream: Protocol) -> AttemptFailure {
    let refusal = Refusal::Untranslatable {
        field: u.field,
        message: u.message,
        upstream: upstream.api_name(),
    };
    let mut failure = AttemptFailure::bad_answer(refusal.message().into_owned());
    failure.retryable = false;
    failure.effect = AccountEffect::None;
    let body = refusal.body(ctx.endpoint.protocol().error_shape());
    failure.passthrough = Some((StatusCode::BAD_REQUEST, body));
    failure
}

/// An upstream error body passed through to the client is in the upstream's error shape: for a
/// translated attempt it is said again in the client's (same status, the upstream's message).
fn reshape_passthrough(failure: &mut AttemptFailure, ctx: &RequestContext, direction: Direction) {
    let client = ctx.endpoint.protocol().error_shape();
    if direction.upstream().error_shape() == client {
        return;
    }
    let Some((status, body)) = failure.passthrough.take() else {
        return;
    };
    let message = upstream_error_message(&body)
        .unwrap_or_else(|| format!("the upstream answered status {}", status.as_u16()));
    let body = match client {
        ErrorShape::OpenAi => {
            let code = format!("upstream_status_{}", status.as_u16());
            errors::openai_error_body(&message, openai_error_type(status), Some(&code))
        }
        ErrorShape::Anthropic => errors::anthropic_error_body(status, &message),
    };
    failure.passthrough = Some((status, body));
}

/// `error.message` (OpenAI, Anthropic), a string `error`, or a top-level `message`.
fn upstream_error_message(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = value
        .pointer("/error/message")
        .or_else(|| value.get("error").filter(|e| e.is_string()))
        .or_else(|| value.get("message"))?
        .as_str()?;
    Some(text.to_owned())
}

/// The OpenAI error `type` for an upstream status.
fn openai_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "authentication_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Shortest credential that is redacted from error bodies: a shorter one would match ordinary
/// words (real credentials are dozens of characters).
const MIN_REDACTED_LEN: usize = 4;
const REDACTED: &[u8] = b"[redacted]";

/// `body` with every occurrence of `secret` replaced by `[redacted]`.
pub(super) fn redact(body: Bytes, secret: &str) -> Bytes {
    let secret = secret.as_bytes();
    if secret.len() < MIN_REDACTED_LEN || memchr::memmem::find(&body, secret).is_none() {
        return body;
    }
    let mut out = BytesMut::with_capacity(body.len());
    let mut rest = &body[..];
    while let Some(at) = memchr::memmem::find(rest, secret) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(REDACTED);
        rest = &rest[at + secret.len()..];
    }
    out.extend_from_slice(rest);
    out.freeze()
}

/// A stream's failure before output may quote the credential too (in its `response.failed`
/// message): kept from the log line and from the failure stream a client may be given.
fn redact_failure(mut failure: AttemptFailure, secret: &str) -> AttemptFailure {
    if let Some(events) = failure.failed_stream.take() {
        failure.failed_stream = Some(redact(events, secret));
    }
    if secret.len() >= MIN_REDACTED_LEN && failure.message.contains(secret) {
        failure.message = failure.message.replace(secret, "[redacted]");
    }
    failure
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error answer, giving up after a while.
async fn read_error_body(response: upstream::Response) -> Bytes {
    let mut upstream_body = response.into_body();
    let mut body = BytesMut::new();
    let read = async {
        while let Some(Ok(chunk)) = upstream_body.chunk().await {
            let room = ERROR_BODY_LIMIT - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= ERROR_BODY_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await;
    body.freeze()
}

/// The size of [`send_request`]'s future (`relay::future_sizes`).
#[cfg(test)]
#[allow(
    unreachable_code,
    clippy::diverging_sub_expression,
    reason = "only the type of the future is wanted"
)]
pub(super) fn send_request_size() -> usize {
    super::future_sizes::size(&|| {
        send_request(
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
            unreachable!(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_replaces_every_copy_of_the_secret() {
        let body = Bytes::from_static(b"{\"m\":\"Bearer sk-secret-1 and sk-secret-1\"}");
        let out = redact(body, "sk-secret-1");
        assert_eq!(&out[..], b"{\"m\":\"Bearer [redacted] and [redacted]\"}");
        let untouched = Bytes::from_static(b"no secret here");
        assert_eq!(redact(untouched.clone(), "sk-secret-1"), untouched);
        assert_eq!(
            redact(untouched.clone(), "no"),
            untouched,
            "too short to redact"
        );
    }

    #[test]
    fn a_failed_stream_is_redacted_in_its_events_and_its_message() {
        let terminal = crate::protocol::Terminal {
            error_message: Some("bad key sk-secret-1".to_owned()),
            ..Default::default()
        };
        let events =
            Bytes::from_static(b"event: response.failed\ndata: {\"m\":\"sk-secret-1\"}\n\n");
        let failure = redact_failure(
            AttemptFailure::stream_failed(terminal, events),
            "sk-secret-1",
        );
        assert!(
            !failure.message.contains("sk-secret-1"),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("[redacted]"));
        let events = failure.failed_stream.unwrap();
        assert!(memchr::memmem::find(&events, b"sk-secret-1").is_none());
    }
}
