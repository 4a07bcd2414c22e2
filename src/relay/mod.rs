//! The relay: the life of a request, phase by phase.
//!
//! [`handle`] reads top to bottom as the phases of DESIGN.md:
//!
//! 1. **accept** — request id.
//! 2. **authenticate** — the client's API key → its group and limits.
//! 3. **inspect** — body read (size limit, decompression), routing facts (model, stream,
//!    conversation identity for the sticky binding).
//! 4. **admit** — the key's rpm window and concurrency slot, taken together (waiting in the
//!    queue if the key is at its concurrency limit).
//! 5. **attempt loop** — select an account (sticky binding first) → hold its slot → credential
//!    (refreshed when due) → build the upstream request → send → classify; a failure the
//!    client has not seen moves to the next account.
//! 6. **respond** — through the [`DownstreamWriter`], the only owner of the client connection.
//! 7. **record** — one usage record, whatever happened.
//!
//! Phases 4–7 run in a task of their own (tracked for shutdown), because the answer's head can
//! go out (a keepalive commit, a stream) long before they end, and because a client that goes
//! away must not stop them: the upstream is still read to learn the usage.

mod attempt;
mod attempt_outcome;
pub mod failure;
mod outcome;
pub mod probe;
mod respond;
pub mod route;
pub mod websocket;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{GatewayConfig, GroupSettings};
use crate::domain::Platform;
use crate::http::auth::ApiKey;
use crate::http::body::read_body;
use crate::http::refusal::Refusal;
use crate::limits::Admitted;
use crate::pool::{Account, AccountId, Selection, StickyKey, Wanted};
use crate::protocol::{Inspected, Protocol, TokenUsage, Wire};
use crate::state::AppState;
use crate::upstream::SESSION_HEADERS;
use crate::usage::{AttemptRecord, Transport, UsageRecord};
use attempt::Attempted;
use failure::AttemptFailure;
use outcome::Ended;
pub use outcome::Outcome;
use writer::{BodyMode, DownstreamWriter, WriterState};

/// Which relayed endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/responses/compact`
    Compact,
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/messages`
    Messages,
    /// `POST /v1/messages/count_tokens`
    CountTokens,
}

impl Endpoint {
    pub fn protocol(self) -> Protocol {
        match self {
            Endpoint::Responses | Endpoint::Compact => Protocol::Responses,
            Endpoint::Chat => Protocol::Chat,
            Endpoint::Messages | Endpoint::CountTokens => Protocol::Messages,
        }
    }

    /// The platform whose accounts serve this endpoint.
    pub fn platform(self) -> Platform {
        match self.protocol() {
            Protocol::Responses | Protocol::Chat => Platform::OpenAi,
            Protocol::Messages => Platform::Anthropic,
        }
    }

    /// Whether the answer can be a stream at all.
    fn can_stream(self) -> bool {
        matches!(
            self,
            Endpoint::Responses | Endpoint::Chat | Endpoint::Messages
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Responses => "responses",
            Endpoint::Compact => "responses_compact",
            Endpoint::Chat => "chat_completions",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// Everything one request carries through the phases.
pub struct RequestContext {
    /// `gateway.*` as it was when the request came in: a configuration reload applies to the
    /// next request, never halfway through this one (and no stream chunk reads the live value).
    pub gateway: Arc<GatewayConfig>,
    /// The groups' `translate`, `model_map` and `model_fallback` as they were when the request
    /// came in (read once, like `gateway`).
    pub groups: Arc<GroupSettings>,
    /// The request's path, kept for the access log (`None` when `log.access` is off).
    pub route: Option<String>,
    pub id: String,
    pub started: Instant,
    pub endpoint: Endpoint,
    pub key: Arc<ApiKey>,
    pub client_headers: HeaderMap,
    /// The client's query string (`beta=true` on Messages is forwarded).
    pub query: Option<String>,
    pub body: Bytes,
    /// `inspected.model` is the upstream model name (after the group's `model_map`).
    pub inspected: Inspected,
    /// The model name the client asked for, when the group's `model_map` changed it: reported
    /// back in translated answers and noted on the usage row.
    pub client_model: Option<String>,
    /// The key's group translates (`groups[].translate`): accounts of other APIs may serve.
    pub translate: bool,
    /// The API the answering (or last) attempt spoke upstream: its usage counts tokens that way.
    pub upstream_protocol: Option<Protocol>,
    /// The conversation's binding key (session header or `prompt_cache_key`, scoped by key).
    pub sticky: Option<StickyKey>,
    /// The key's concurrency slot, held until the request ends.
    key_slot: Option<crate::runtime_state::Lease>,
    /// Admitted in `handle` (counted in the rpm window, holding the slot if any); false: every
    /// slot of the key was held, and the relay task waits for one.
    admitted: bool,
    pub attempts: Vec<AttemptRecord>,
    /// The model the client asked for, when `groups[].model_fallback` replaced it in
    /// `inspected.model` (the body still names this one).
    pub requested_model: Option<String>,
    /// HTTP, or one turn of a Responses WebSocket (a [`Transport`] extension on the request).
    pub transport: Transport,
    /// A WebSocket turn's link to its upstream socket: sign-in accounts are reached over it
    /// (`upstream::websocket`) instead of a POST.
    pub upstream_socket: Option<crate::upstream::websocket::Turn>,
}

impl RequestContext {
    /// Whether the client asked for a stream. Compact and count_tokens answers are plain JSON.
    pub fn client_streams(&self) -> bool {
        self.inspected.stream && self.endpoint.can_stream()
    }

    /// Frees the request's body and headers once output has started: from then on no other
    /// account may be tried, so the request is never built again, and a stream can stay open
    /// for minutes holding a body that is often hundreds of KiB (a whole conversation).
    /// The model name the client asked for.
    pub fn client_model(&self) -> &str {
        self.client_model
            .as_deref()
            .or(self.requested_model.as_deref())
            .unwrap_or(&self.inspected.model)
    }

    pub fn release_request(&mut self) {
        self.body = Bytes::new();
        self.client_headers = HeaderMap::new();
    }
}

/// The life of a relayed request (`/responses`, `/responses/compact`, `/chat/completions`,
/// `/messages`, `/messages/count_tokens`).
pub async fn handle(
    state: Arc<AppState>,
    endpoint: Endpoint,
    request: http::Request<Body>,
) -> Response {
    let shape = endpoint.protocol().error_shape();

    // 1. accept
    let id = new_request_id();
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let route = state
        .access_log
        .then(|| crate::http::access::route_of(parts.uri.path()));
    // A refusal before the relay task: answered (with its request id) and logged here.
    let refuse = |refusal: Refusal, key: Option<&ApiKey>, model: Option<&str>| {
        let mut response = refusal.response(shape);
        if let Ok(value) = http::HeaderValue::from_str(&id) {
            response.headers_mut().insert(writer::REQUEST_ID, value);
        }
        if let Some(metrics) = crate::metrics::get() {
            let group = key.map_or(crate::metrics::NO_GROUP, |k| k.group.as_str());
            let status = response.status().as_u16();
            let protocol = Some(endpoint.protocol());
            metrics.request(
                protocol,
                endpoint.as_str(),
                status,
                group,
                started.elapsed(),
                None,
            );
        }
        let key = key.map(|k| k.name.as_str());
        if state.access_log {
            crate::http::access::Access {
                request_id: &id,
                method: parts.method.as_str(),
                route: route.as_deref().unwrap_or(endpoint.as_str()),
                status: response.status().as_u16(),
                key,
                account: None,
                model,
                started,
                bytes: crate::http::access::body_len(&response),
            }
            .write();
        }
        response
    };

    // 2. authenticate
    let key = match state.keys.authenticate(&parts.headers) {
        Ok(key) => key,
        Err(error) => return refuse(error, None, None),
    };
    // The groups' settings read once: a reload applies to the next request.
    let groups = state.group_settings();
    let routing = groups.routing(&key.group);
    let translate = routing.is_some_and(|r| r.translate);
    if key.platform != endpoint.platform() && !translate {
        let refusal = Refusal::WrongPlatform {
            group: key.group.clone(),
            platform: key.platform,
            endpoint: endpoint.as_str(),
        };
        return refuse(refusal, Some(&key), None);
    }
    // Before any upstream attempt: a request whose usage cannot be kept is not served.
    if !state.usage.accepting() {
        let refusal = Refusal::UsageNotRecordable {
            request_id: id.clone(),
        };
        return refuse(refusal, Some(&key), None);
    }

    // 3. inspect (`gateway.*` read once: a reload applies to the next request)
    let gateway = state.gateway();
    let body = match read_body(body, &parts.headers, gateway.max_body_size).await {
        Ok(body) => body,
        Err(error) => return refuse(error, Some(&key), None),
    };
    let mut inspected = match endpoint.protocol().inspect(&body) {
        Ok(inspected) => inspected,
        Err(message) => return refuse(Refusal::InvalidRequest(message), Some(&key), None),
    };
    if let Err(error) = state.limits.check(&key, &inspected.model) {
        return refuse(error, Some(&key), Some(&inspected.model));
    }
    // 4. admit, first look: the rpm window and the key's slot together (one script call with a
    // shared backend); a key whose slots are all held waits in the relay task.
    let (key_slot, admitted) = match state.limits.admit(&key).await {
        Ok(Admitted::Now(lease)) => (lease, true),
        Ok(Admitted::Busy) => (None, false),
        Err(error) => return refuse(error, Some(&key), Some(&inspected.model)),
    };
    // The group's model map, before selection: accounts see the upstream name.
    let client_model = routing
        .and_then(|r| r.model_map.map(&inspected.model))
        .filter(|mapped| *mapped != inspected.model)
        .map(|mapped| std::mem::replace(&mut inspected.model, mapped.to_owned()));
    let sticky = state
        .pool
        .sticky_enabled()
        .then(|| conversation(&parts.headers, &inspected))
        .flatten()
        // By the key's name (unique, and the same on every instance sharing runtime state), not
        // its hash, whose secret may differ between instances.
        .map(|session| StickyKey::new(key.name.as_bytes(), session));
    let ctx = RequestContext {
        gateway,
        groups,
        id,
        route,
        started,
        endpoint,
        key,
        client_headers: crate::upstream::keep_used(&parts.headers),
        query: parts.uri.query().map(str::to_owned),
        body,
        inspected,
        client_model,
        translate,
        upstream_protocol: None,
        sticky,
        key_slot,
        admitted,
        attempts: Vec::new(),
        requested_model: None,
        transport: parts
            .extensions
            .get::<Transport>()
            .copied()
            .unwrap_or_default(),
        upstream_socket: parts
            .extensions
            .get::<crate::upstream::websocket::Turn>()
            .cloned(),
    };

    // 4–7: admit, attempt loop, respond and record, in a task that outlives the answer's head.
    let (mode, keepalive) = if ctx.client_streams() {
        (BodyMode::Sse, ctx.gateway.stream_keepalive_interval)
    } else if endpoint == Endpoint::Compact {
        (
            BodyMode::Json,
            ctx.gateway.compact_nonstream_keepalive_interval,
        )
    } else {
        (BodyMode::Json, ctx.gateway.nonstream_keepalive_interval)
    };
    let (writer, head) = DownstreamWriter::new(mode, keepalive, &ctx.id);
    // The request head's header values share hyper's read buffer; held until the answer's head,
    // they made hyper take a second buffer for its read-ahead on every connection.
    drop(parts);
    let task_state = Arc::clone(&state);
    // Boxed: the relay future is ~5 KiB, and spawning moves a future through several layers
    // by value (and tokio rewrites the whole task slot when it finishes); a pointer makes each
    // of those copies 8 bytes instead of 5 KiB (3% of the instructions per request).
    state.tasks.spawn(Box::pin(relay(task_state, ctx, writer)));
    // The relay task writes this request's access line when it ends.
    head.await
        .unwrap_or_else(|_| Refusal::RelayFailed.response(shape))
}

/// The conversation a request belongs to: a session header, else `prompt_cache_key`, else
/// Anthropic's `metadata.user_id`.
fn conversation<'a>(headers: &'a HeaderMap, inspected: &'a Inspected) -> Option<&'a str> {
    SESSION_HEADERS
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty())
        .or(inspected
            .prompt_cache_key
            .as_deref()
            .filter(|v| !v.is_empty()))
        .or(inspected.user_id.as_deref())
}

/// Phases 4–7.
async fn relay(state: Arc<AppState>, mut ctx: RequestContext, mut writer: DownstreamWriter) {
    let _in_flight = crate::metrics::get().map(crate::metrics::Metrics::in_flight);
    // Phases 4–6 in the request's span (the record phase's lines carry their own fields).
    let span = request_span(&ctx);
    let outcome = async {
        // 4. admit, then 5. attempt loop with 6. respond inside each successful attempt
        let ended = match admit(&state, &mut ctx, &mut writer).await {
            Ok(()) if counts_locally(&state, &ctx) => count_tokens_locally(&ctx, &mut writer).await,
            Ok(()) => attempt_loop(&state, &mut ctx, &mut writer).await,
            Err(refusal) => Ended::Refused {
                refusal,
                usage: TokenUsage::default(),
            },
        };
        match ended {
            Ended::Answered(outcome) => outcome,
            // 6. respond, with the final refusal
            Ended::Refused { refusal, usage } => {
                respond_refusal(&ctx, &mut writer, &refusal, usage).await
            }
        }
    }
    .instrument(span)
    .await;
    ctx.key_slot = None;
    // 7. record
    if let Some(metrics) = crate::metrics::get() {
        let ttft = outcome
            .first_output_at
            .map(|at| at.saturating_duration_since(ctx.started));
        metrics.request(
            Some(ctx.endpoint.protocol()),
            ctx.endpoint.as_str(),
            outcome.status.as_u16(),
            &ctx.key.group,
            ctx.started.elapsed(),
            ttft,
        );
        metrics.tokens(&outcome.tokens);
    }
    if state.access_log {
        crate::http::access::Access {
            request_id: &ctx.id,
            method: "POST",
            route: ctx.route.as_deref().unwrap_or(ctx.endpoint.as_str()),
            status: outcome.status.as_u16(),
            key: Some(&ctx.key.name),
            account: ctx.attempts.last().map(|a| a.account.as_str()),
            model: Some(&ctx.inspected.model),
            started: ctx.started,
            bytes: writer.bytes_out(),
        }
        .write();
    }
    state.usage.record(usage_record(&mut ctx, &writer, outcome));
}

/// The request's span: its id and key's name from the start; the account and the attempt's
/// number (1 = the first account) are recorded as each attempt begins. Target
/// `subrelay::request`, so `log.level` can turn it off alone (`info,subrelay::request=off`).
fn request_span(ctx: &RequestContext) -> tracing::Span {
    tracing::info_span!(
        target: crate::telemetry::REQUEST_SPAN_TARGET,
        "request",
        request_id = %ctx.id,
        key = %ctx.key.name,
        account = tracing::field::Empty,
        attempt = tracing::field::Empty,
    )
}

/// `count_tokens` of a translating group none of whose accounts speaks Messages: answered here
/// with an estimate (`translate::count_tokens`), as OpenAI accounts have no such endpoint.
fn counts_locally(state: &AppState, ctx: &RequestContext) -> bool {
    if ctx.endpoint != Endpoint::CountTokens || !ctx.translate {
        return false;
    }
    let accounts = state.pool.accounts();
    let native = crate::pool::Pool::members(&accounts, &ctx.key.group, None)
        .any(|a| a.spec.speaks(Protocol::Messages));
    !native
}

async fn count_tokens_locally(ctx: &RequestContext, writer: &mut DownstreamWriter) -> Ended {
    let body = ctx.body.clone();
    // The tokenizer is CPU work (and its first use builds its tables): off the event loop.
    let counted = writer
        .wait(tokio::task::spawn_blocking(move || {
            crate::translate::count_tokens::count_tokens_estimate(&body)
        }))
        .await;
    let refusal = match counted {
        Ok(Ok(tokens)) => {
            let body = Bytes::from(format!("{{\"input_tokens\":{tokens}}}"));
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            writer.finish(StatusCode::OK, headers, body).await;
            let outcome = Outcome::answered(TokenUsage::default(), true, Some(Instant::now()));
            return Ended::Answered(outcome);
        }
        Ok(Err(untranslatable)) => Refusal::InvalidRequest(untranslatable.to_string()),
        Err(_) => Refusal::RelayFailed,
    };
    Ended::Refused {
        refusal,
        usage: TokenUsage::default(),
    }
}

/// Warms the local token counter (its first use builds the tokenizer: seconds in a debug
/// build), so the first `count_tokens` answered locally does not wait for it.
pub fn warm_token_counter(state: &AppState) {
    if state.group_settings().routing.values().any(|r| r.translate) {
        drop(tokio::task::spawn_blocking(|| {
            let _ = crate::translate::count_tokens::count_tokens_estimate(br#"{"messages":[]}"#);
        }));
    }
}

/// Waits for the key's concurrency slot when `handle` found them all held, up to
/// `gateway.queue_wait_timeout` (each look again asks the rpm window too: counted only when the
/// slot is taken, refused if the window filled meanwhile).
async fn admit(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
) -> Result<(), Refusal> {
    if ctx.admitted {
        return Ok(());
    }
    let busy = || Refusal::KeyBusy {
        request_id: ctx.id.clone(),
    };
    let Some(wait) = state.pool.queue_room() else {
        return Err(busy());
    };
    let key = Arc::clone(&ctx.key);
    match writer
        .wait_in_queue(tokio::time::timeout(wait, state.limits.admit_waiting(&key)))
        .await
    {
        Ok(Ok(lease)) => {
            ctx.key_slot = lease;
            ctx.admitted = true;
            Ok(())
        }
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => Err(busy()),
    }
}

/// Tries accounts in the pool's order until one answers or the request may not switch again.
async fn attempt_loop(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
) -> Ended {
    let mut tried: Vec<AccountId> = Vec::new();
    let mut last_failure: Option<AttemptFailure> = None;
    // The last usage a failed stream reported: recorded if no attempt answers.
    let mut usage = TokenUsage::default();
    loop {
        if tried.len() > ctx.gateway.max_account_switches {
            break;
        }
        fall_back_if_no_room(state, ctx, &tried);
        let wanted = Wanted {
            group: &ctx.key.group,
            // A translating group's accounts may be of either platform.
            platform: (!ctx.translate).then_some(ctx.endpoint.platform()),
            protocols: route::candidates(ctx.endpoint, ctx.translate),
            model: &ctx.inspected.model,
            tried: &tried,
            sticky: ctx.sticky.as_ref(),
        };
        let selection = writer.wait_in_queue(state.pool.acquire(&wanted)).await;
        let slot = match selection {
            Selection::Slot(slot) => slot,
            Selection::NoAccount if ctx.endpoint == Endpoint::Chat && !ctx.translate => {
                let refusal = Refusal::NoChatAccount {
                    group: ctx.key.group.clone(),
                    model: ctx.inspected.model.clone(),
                    request_id: ctx.id.clone(),
                };
                return Ended::Refused { refusal, usage };
            }
            Selection::NoAccount => {
                let refusal = Refusal::NoAccount {
                    group: ctx.key.group.clone(),
                    model: ctx.inspected.model.clone(),
                    request_id: ctx.id.clone(),
                };
                return Ended::Refused { refusal, usage };
            }
            Selection::AllCooling { earliest } if last_failure.is_none() => {
                let refusal = Refusal::AccountsCooling {
                    group: ctx.key.group.clone(),
                    earliest,
                    request_id: ctx.id.clone(),
                };
                return Ended::Refused { refusal, usage };
            }
            Selection::AllBusy { queue_full } if last_failure.is_none() => {
                let refusal = Refusal::PoolBusy {
                    group: ctx.key.group.clone(),
                    queue_full,
                    request_id: ctx.id.clone(),
                };
                return Ended::Refused { refusal, usage };
            }
            Selection::Exhausted | Selection::AllCooling { .. } | Selection::AllBusy { .. } => {
                break
            }
        };
        let account = Arc::clone(slot.account());
        let demoted = slot.demoted();
        tried.push(account.id);
        let span = tracing::Span::current();
        span.record("account", account.spec.name.as_str());
        span.record("attempt", tried.len());

        let result = attempt::run(state, ctx, writer, &account).await;
        drop(slot);
        match result {
            Ok(Attempted {
                status,
                quota,
                since_send,
                outcome,
            }) => {
                let ttft = outcome
                    .first_output_at
                    .map(|first| first.saturating_duration_since(since_send));
                // A JSON answer's first output is its end: only streams say how soon an
                // account starts answering.
                let streamed_ttft = ttft.filter(|_| ctx.client_streams());
                state.pool.succeeded(&account, quota, streamed_ttft);
                if let Some(metrics) = crate::metrics::get() {
                    metrics.attempt(&account.spec.name, "ok");
                }
                ctx.attempts.push(AttemptRecord {
                    account: account.spec.name.clone(),
                    status: Some(status),
                    outcome: "ok",
                });
                keep_sticky(state, ctx, &account, ttft, demoted);
                return Ended::Answered(outcome);
            }
            Err(failure) => {
                state.pool.failed(
                    &account,
                    &failure.effect,
                    &failure.message,
                    ctx.sticky.as_ref(),
                );
                tracing::warn!(
                    request_id = %ctx.id,
                    account = %account.spec.name,
                    kind = failure.kind.as_str(),
                    status = failure.status.map(|s| s.as_u16()),
                    retryable = failure.retryable,
                    committed = writer.state() == WriterState::Committed,
                    "attempt failed: {}",
                    failure.message
                );
                ctx.attempts.push(AttemptRecord {
                    account: account.spec.name.clone(),
                    status: failure.status.map(|s| s.as_u16()),
                    outcome: failure.kind.as_str(),
                });
                if let Some(metrics) = crate::metrics::get() {
                    metrics.attempt(&account.spec.name, attempt_outcome::outcome(&failure));
                }
                // After output the stream was ended in-protocol: that was the client's answer.
                if let Some(delivered) = failure.delivered {
                    return Ended::Answered(delivered);
                }
                if let Some(reported) = failure.usage {
                    usage = reported;
                }
                let stop = !failure.retryable || !writer.can_fail_over() || writer.client_gone();
                if !stop {
                    if let Some(metrics) = crate::metrics::get() {
                        metrics.failover(ctx.endpoint.protocol());
                    }
                }
                last_failure = Some(failure);
                if stop {
                    break;
                }
            }
        }
    }
    let failure = last_failure.unwrap_or_else(|| {
        AttemptFailure::bad_answer("no attempt was possible (gateway.max_account_switches)")
    });
    // A streaming client whose every account failed with `response.failed` gets the upstream's
    // own (protocol-valid) failure stream.
    if ctx.client_streams() && writer.can_fail_over() {
        if let Some(events) = failure.failed_stream.clone() {
            writer.write_output(HeaderMap::new(), events).await;
            writer.close();
            return Ended::Answered(Outcome::refused(StatusCode::OK, usage));
        }
    }
    Ended::Refused {
        refusal: failure::refusal(&failure, ctx.attempts.len(), &ctx.id),
        usage,
    }
}

/// After a success: keep (or move) the conversation's binding to this account, unless its first
/// token (`ttft` after the send) was slow too many times in a row, or selection found it far
/// worse than its peers (`demoted`: no new binding).
fn keep_sticky(
    state: &AppState,
    ctx: &RequestContext,
    account: &Account,
    ttft: Option<Duration>,
    demoted: bool,
) {
    if state
        .pool
        .keep_sticky(ctx.sticky.as_ref(), account, ttft, demoted)
    {
        tracing::info!(request_id = %ctx.id, "sticky binding released: the account was slow to answer");
    }
}

/// Tells the client the final refusal in the shape the writer's state allows: the route's
/// error JSON with its status, the error JSON after a committed 200, or the protocol's failure
/// event ending a committed stream.
async fn respond_refusal(
    ctx: &RequestContext,
    writer: &mut DownstreamWriter,
    refusal: &Refusal,
    usage: TokenUsage,
) -> Outcome {
    let protocol = ctx.endpoint.protocol();
    let status = match (writer.state(), writer.mode()) {
        (WriterState::Pending, _) => {
            let status = refusal.status();
            writer
                .finish(
                    status,
                    refusal.headers(),
                    refusal.body(protocol.error_shape()),
                )
                .await;
            status
        }
        (WriterState::Committed | WriterState::Output, BodyMode::Json) => {
            tracing::warn!(
                request_id = %ctx.id,
                compact_keepalive_committed = true,
                accounts_tried = ?ctx.attempts.iter().map(|a| (&a.account, a.status)).collect::<Vec<_>>(),
                "every account failed after the keepalive committed 200; an error JSON follows the blank lines"
            );
            writer
                .finish(
                    StatusCode::OK,
                    HeaderMap::new(),
                    refusal.body(protocol.error_shape()),
                )
                .await;
            StatusCode::OK
        }
        (WriterState::Committed | WriterState::Output, BodyMode::Sse) => {
            tracing::warn!(
                request_id = %ctx.id,
                stream_keepalive_committed = true,
                accounts_tried = ?ctx.attempts.iter().map(|a| (&a.account, a.status)).collect::<Vec<_>>(),
                "every account failed after the stream was committed; ending it with response.failed"
            );
            writer
                .write_output(HeaderMap::new(), refusal.stream_event(protocol))
                .await;
            writer.close();
            StatusCode::OK
        }
        // The answer is complete already (nothing is left to tell).
        (WriterState::Closed, _) => StatusCode::OK,
    };
    Outcome::refused(status, usage)
}

/// `groups[].model_fallback`: when no account can serve the model asked for now (each cooling,
/// disabled, past its quota or already tried), the request goes to the first model of its list
/// that one can serve. When none can, it stays on the model it is on (and is refused as usual).
fn fall_back_if_no_room(state: &AppState, ctx: &mut RequestContext, tried: &[AccountId]) {
    let groups = Arc::clone(&ctx.groups);
    let requested = ctx
        .requested_model
        .as_deref()
        .unwrap_or(&ctx.inspected.model);
    let Some(next) = groups
        .model_fallback
        .get(&ctx.key.group)
        .and_then(|models| models.get(requested))
    else {
        return;
    };
    let has_room = |model: &str| {
        state.pool.has_room(&Wanted {
            group: &ctx.key.group,
            platform: (!ctx.translate).then_some(ctx.endpoint.platform()),
            protocols: route::candidates(ctx.endpoint, ctx.translate),
            model,
            tried,
            sticky: None,
        })
    };
    let Some(model) = std::iter::once(requested)
        .chain(next.iter().map(String::as_str))
        .find(|m| has_room(m))
    else {
        return;
    };
    if model == ctx.inspected.model {
        return;
    }
    let model = model.to_owned();
    let requested = requested.to_owned();
    tracing::info!(
        request_id = %ctx.id,
        requested = %requested,
        model = %model,
        "no account can serve the model asked for now; falling back (groups[].model_fallback)"
    );
    ctx.inspected.model = model;
    if requested != ctx.inspected.model {
        ctx.requested_model.get_or_insert(requested);
    } else {
        ctx.requested_model = None;
    }
}

/// The request's record; takes what the finished request no longer needs instead of copying it.
fn usage_record(
    ctx: &mut RequestContext,
    writer: &DownstreamWriter,
    outcome: Outcome,
) -> UsageRecord {
    let attempts = std::mem::take(&mut ctx.attempts);
    let Outcome {
        status,
        success,
        mut tokens,
        first_output_at,
    } = outcome;
    if tokens.unparsed {
        tracing::warn!(
            request_id = %ctx.id,
            key = %ctx.key.name,
            account = attempts.last().map_or("-", |a| a.account.as_str()),
            "the upstream's usage object could not be read (wrong types); the request is recorded with 0 tokens and marked unparsed"
        );
    }
    let reported = tokens;
    if tokens.clamp() {
        tracing::warn!(
            request_id = %ctx.id,
            account = attempts.last().map_or("-", |a| a.account.as_str()),
            ?reported,
            "the upstream reported more than {} tokens of one kind for one request; recorded as {}",
            TokenUsage::MAX_PER_REQUEST,
            TokenUsage::MAX_PER_REQUEST
        );
    }
    UsageRecord {
        request_id: std::mem::take(&mut ctx.id),
        key: ctx.key.name.clone(),
        account: attempts.last().map(|a| a.account.clone()),
        endpoint: ctx.endpoint.as_str(),
        model: std::mem::take(&mut ctx.inspected.model),
        client_model: ctx
            .client_model
            .take()
            .or_else(|| ctx.requested_model.take()),
        anthropic_tokens: ctx.upstream_protocol.unwrap_or(ctx.endpoint.protocol())
            == Protocol::Messages,
        stream: ctx.client_streams(),
        compact: ctx.endpoint == Endpoint::Compact,
        status: status.as_u16(),
        success,
        tokens,
        duration_ms: millis(ctx.started.elapsed()),
        ttft_ms: first_output_at.map(|t| millis(t - ctx.started)),
        attempts,
        client_disconnected: writer.client_gone(),
        transport: ctx.transport,
        spend_limited: ctx.key.limits.daily_spend_limit.is_some()
            || ctx.key.limits.monthly_spend_limit.is_some(),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `req_`, the Unix time in milliseconds (12 hex digits) and 32 random bits (8 hex digits).
///
/// Time first, so ids sort by start and each new usage row lands at the end of the store's
/// primary-key index: with random ids every row dirtied a random index page, and the usage
/// writer's batches wrote one 4 KiB page per row to SQLite's WAL (most of its CPU).
fn new_request_id() -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    // By hand: `format!` was half of the request's formatting work.
    let bits = ((now_ms & 0xffff_ffff_ffff) << 32) | u128::from(rand::random::<u32>());
    let mut id = String::with_capacity(24);
    id.push_str("req_");
    for shift in (0..20).rev() {
        let digit = ((bits >> (shift * 4)) & 0xf) as u32;
        id.push(char::from_digit(digit, 16).unwrap_or('0'));
    }
    id
}

#[cfg(test)]
mod id_tests {
    #![allow(
        clippy::disallowed_methods,
        reason = "tests may block and spawn freely"
    )]
    #![allow(clippy::unwrap_used, reason = "tests")]

    #[test]
    fn request_ids_sort_by_time() {
        let first = super::new_request_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = super::new_request_id();
        assert_eq!(first.len(), 24, "{first}");
        assert!(first.starts_with("req_"));
        assert!(first[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert!(second > first, "{second} should sort after {first}");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let at = u64::from_str_radix(&second[4..16], 16).unwrap();
        assert!(
            now_ms - at < 1000,
            "{second}: the first 12 digits are the time in ms"
        );
        assert_eq!(second, second.to_ascii_lowercase());
    }
}

#[cfg(test)]
pub(crate) mod future_sizes {
    //! The relay future lives as long as a stream is open (minutes, thousands at once): its
    //! size is memory per open stream. An async fn's future is as large as its largest state,
    //! so a large inner future that ends early (the upstream send) makes every stream pay for
    //! it for its whole life; such futures are boxed. Sizes of the debug build (the release
    //! build's are smaller).
    #![allow(
        unreachable_code,
        clippy::diverging_sub_expression,
        reason = "only the type of the future is wanted"
    )]

    use super::*;

    /// The size of the future `make` would return, without calling it.
    pub(crate) fn size<F: FnOnce() -> R, R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn the_relay_future_does_not_hold_room_for_the_upstream_send() {
        let relay = size(&|| relay(unreachable!(), unreachable!(), unreachable!()));
        // 20.9 KiB with the send inline, 8.5 KiB with it boxed (debug build).
        assert!(relay <= 10 * 1024, "the relay future is {relay} bytes");
        let send = attempt::send_request_size();
        assert!(send <= 1024, "send_request's future is {send} bytes");
    }
}
