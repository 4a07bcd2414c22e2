//! The relay: the life of a request, phase by phase.
//!
//! [`handle_responses`] reads top to bottom as the phases of DESIGN.md:
//!
//! 1. **accept** — request id, declared body size.
//! 2. **authenticate** — the client's API key → its group.
//! 3. **inspect** — body read (size limit, decompression), routing facts (model, stream).
//! 4. **attempt loop** — select an account → hold its slot → credential → build the upstream
//!    request → send → classify; a failure the client has not seen moves to the next account.
//! 5. **respond** — through the [`DownstreamWriter`], the only owner of the client connection.
//! 6. **record** — one usage record, whatever happened.
//!
//! Phases 4–6 run in a task of their own (tracked for shutdown), because the answer's head can
//! go out (a keepalive commit, a stream) long before they end, and because a client that goes
//! away must not stop them: the upstream is still read to learn the usage.

mod attempt;
pub mod failure;
mod respond;
pub mod writer;

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::http::auth::ApiKey;
use crate::http::body::read_body;
use crate::pool::{Platform, Selection};
use crate::protocol::responses::{self, Inspected, TokenUsage};
use crate::state::AppState;
use crate::usage::{AttemptRecord, UsageRecord};
use failure::{AttemptFailure, ClientError};
use writer::{BodyMode, DownstreamWriter, WriterState};

/// Which Responses endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Responses,
    Compact,
}

/// Everything one request carries through the phases.
pub struct RequestContext {
    pub id: String,
    pub started: Instant,
    pub endpoint: Endpoint,
    pub key: Arc<ApiKey>,
    pub client_headers: HeaderMap,
    pub body: Bytes,
    pub inspected: Inspected,
    /// The body rewritten for the Codex backend, made once on first need.
    codex_body: Option<Bytes>,
    pub attempts: Vec<AttemptRecord>,
    pub first_output_at: Option<Instant>,
    pub tokens: TokenUsage,
    /// What the client got: status and whether it was a success.
    pub status: StatusCode,
    pub success: bool,
}

impl RequestContext {
    /// Whether the client asked for a stream. Compact answers are always plain JSON.
    pub fn client_streams(&self) -> bool {
        self.inspected.stream && self.endpoint == Endpoint::Responses
    }
}

/// The life of a `/responses` or `/responses/compact` request.
pub async fn handle_responses(
    state: Arc<AppState>,
    endpoint: Endpoint,
    request: http::Request<Body>,
) -> Response {
    // 1. accept
    let id = new_request_id();
    let started = Instant::now();
    let (parts, body) = request.into_parts();

    // 2. authenticate
    let key = match state.keys.authenticate(&parts.headers) {
        Ok(key) => key,
        Err(error) => return error.into_response(),
    };

    // 3. inspect
    let body = match read_body(body, &parts.headers, state.gateway.max_body_size).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let inspected = match responses::inspect(&body) {
        Ok(inspected) => inspected,
        Err(message) => {
            return ClientError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
                .into_response()
        }
    };
    let ctx = RequestContext {
        id,
        started,
        endpoint,
        key,
        client_headers: parts.headers,
        body,
        inspected,
        codex_body: None,
        attempts: Vec::new(),
        first_output_at: None,
        tokens: TokenUsage::default(),
        status: StatusCode::OK,
        success: false,
    };

    // 4–6: attempt loop, respond and record, in a task that outlives the head of the answer.
    let (mode, keepalive) = if ctx.client_streams() {
        (BodyMode::Sse, state.gateway.stream_keepalive_interval)
    } else if endpoint == Endpoint::Compact {
        (
            BodyMode::Json,
            state.gateway.compact_nonstream_keepalive_interval,
        )
    } else {
        (BodyMode::Json, state.gateway.nonstream_keepalive_interval)
    };
    let (writer, head) = DownstreamWriter::new(mode, keepalive, &ctx.id);
    let task_state = Arc::clone(&state);
    state
        .tasks
        .spawn(async move { relay(task_state, ctx, writer).await });
    head.await.unwrap_or_else(|_| {
        ClientError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the gateway failed while relaying this request",
        )
        .into_response()
    })
}

/// Phases 4–6.
async fn relay(state: Arc<AppState>, mut ctx: RequestContext, mut writer: DownstreamWriter) {
    // 4. attempt loop, with 5. respond inside each successful attempt
    if let Err(error) = attempt_loop(&state, &mut ctx, &mut writer).await {
        // 5. respond, with the final failure
        respond_error(&mut ctx, &mut writer, error).await;
    }
    // 6. record
    state.usage.record(usage_record(&ctx, &writer));
}

/// Tries accounts in the pool's order until one answers or the request may not switch again.
async fn attempt_loop(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
) -> Result<(), ClientError> {
    let mut tried = Vec::new();
    let mut last_failure: Option<AttemptFailure> = None;
    loop {
        if tried.len() > state.gateway.max_account_switches {
            break;
        }
        let selection = state.pool.select(
            &ctx.key.group,
            Platform::OpenAi,
            &ctx.inspected.model,
            &tried,
        );
        let slot = match selection {
            Selection::Slot(slot) => slot,
            Selection::NoAccount => {
                return Err(ClientError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    format!(
                        "no enabled account of group '{}' serves model '{}' (request {})",
                        ctx.key.group, ctx.inspected.model, ctx.id
                    ),
                )
                .with_code("no_account"))
            }
            Selection::AllCooling { earliest } if last_failure.is_none() => {
                return Err(ClientError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                    format!(
                        "every account of group '{}' is cooling down; the first recovers in {} s (request {})",
                        ctx.key.group,
                        earliest.as_secs().max(1),
                        ctx.id
                    ),
                )
                .with_code("accounts_cooling_down")
                .with_retry_after(Some(earliest)))
            }
            Selection::AllBusy if last_failure.is_none() => {
                return Err(ClientError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!(
                        "every account of group '{}' is at its concurrency limit; the pool is busy, retry shortly (request {})",
                        ctx.key.group, ctx.id
                    ),
                )
                .with_code("pool_busy")
                .with_retry_after(Some(std::time::Duration::from_secs(1))))
            }
            Selection::Exhausted | Selection::AllCooling { .. } | Selection::AllBusy => break,
        };
        let account = Arc::clone(slot.account());
        tried.push(account.id);

        let result = attempt::run(state, ctx, writer, &account).await;
        drop(slot);
        match result {
            Ok(status) => {
                account.note_success();
                ctx.attempts.push(AttemptRecord {
                    account: account.spec.name.clone(),
                    status: Some(status),
                    outcome: "ok",
                });
                return Ok(());
            }
            Err(failure) => {
                account.apply(&failure.effect, &failure.message);
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
                let stop = !failure.retryable || !writer.can_fail_over() || writer.client_gone();
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
            ctx.status = StatusCode::OK;
            ctx.success = false;
            return Ok(());
        }
    }
    Err(ClientError::from_failure(
        &failure,
        ctx.attempts.len(),
        &ctx.id,
    ))
}

/// Writes the final error in the shape the writer's state allows.
async fn respond_error(
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    error: ClientError,
) {
    ctx.success = false;
    match (writer.state(), writer.mode()) {
        (WriterState::Pending, _) => {
            ctx.status = error.status;
            writer
                .finish(error.status, error.headers(), error.json_body())
                .await;
        }
        (WriterState::Committed | WriterState::Output, BodyMode::Json) => {
            tracing::warn!(
                request_id = %ctx.id,
                compact_keepalive_committed = true,
                accounts_tried = ?ctx.attempts.iter().map(|a| (&a.account, a.status)).collect::<Vec<_>>(),
                "every account failed after the keepalive committed 200; an error JSON follows the blank lines"
            );
            ctx.status = StatusCode::OK;
            writer
                .finish(StatusCode::OK, HeaderMap::new(), error.json_body())
                .await;
        }
        (WriterState::Committed | WriterState::Output, BodyMode::Sse) => {
            tracing::warn!(
                request_id = %ctx.id,
                stream_keepalive_committed = true,
                accounts_tried = ?ctx.attempts.iter().map(|a| (&a.account, a.status)).collect::<Vec<_>>(),
                "every account failed after the stream was committed; ending it with response.failed"
            );
            ctx.status = StatusCode::OK;
            let code = error.code.as_deref().unwrap_or("upstream_error");
            let event = responses::failed_event(None, code, &error.message);
            writer.write_output(HeaderMap::new(), event).await;
            writer.close();
        }
        (WriterState::Closed, _) => {}
    }
}

fn usage_record(ctx: &RequestContext, writer: &DownstreamWriter) -> UsageRecord {
    UsageRecord {
        request_id: ctx.id.clone(),
        key: ctx.key.name.clone(),
        account: ctx.attempts.last().map(|a| a.account.clone()),
        model: ctx.inspected.model.clone(),
        stream: ctx.client_streams(),
        compact: ctx.endpoint == Endpoint::Compact,
        status: ctx.status.as_u16(),
        success: ctx.success,
        tokens: ctx.tokens,
        duration_ms: millis(ctx.started.elapsed()),
        ttft_ms: ctx.first_output_at.map(|t| millis(t - ctx.started)),
        attempts: ctx.attempts.clone(),
        client_disconnected: writer.client_gone(),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `req_` and 16 hex digits: unique enough to find one request in the logs.
fn new_request_id() -> String {
    format!("req_{:016x}", rand::random::<u64>())
}
