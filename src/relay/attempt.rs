//! One attempt on one account: credential → build → send → classify.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use tokio::time::Instant;

use super::failure::AttemptFailure;
use super::writer::DownstreamWriter;
use super::{respond, Endpoint, RequestContext};
use crate::config::Secret;
use crate::pool::quota::{self, QuotaSnapshot};
use crate::pool::{Account, AccountEffect, AccountKind};
use crate::protocol::responses::{self, BodyEdits};
use crate::state::AppState;
use crate::upstream::{self, tokens, SessionRewrite};

/// Largest upstream error body kept (for the log and for passing a 4xx through).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an error body may take to arrive once its headers came.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// An attempt whose answer was delivered (its success or in-protocol failure is in `ctx`).
pub(super) struct Attempted {
    pub status: u16,
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
    // credential
    let (credential, generation) = tokens::fresh(state, account).await?;
    match send(state, ctx, writer, account, &credential).await {
        Err(failure)
            if failure.status == Some(StatusCode::UNAUTHORIZED) && writer.can_fail_over() =>
        {
            match tokens::refresh_rejected(state, account, generation).await {
                None => Err(failure),
                Some(Err(refresh_failure)) => Err(refresh_failure),
                Some(Ok((renewed, _))) => {
                    tracing::info!(request_id = %ctx.id, account = %account.spec.name, "upstream refused the token; retrying once with a refreshed one");
                    send(state, ctx, writer, account, &renewed).await
                }
            }
        }
        other => other,
    }
}

/// Build → send → classify, with a given credential.
async fn send(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    account: &Account,
    credential: &Secret,
) -> Result<Attempted, AttemptFailure> {
    let spec = &account.spec;
    let compact = ctx.endpoint == Endpoint::Compact;

    // build
    let wants_stream = match spec.kind {
        AccountKind::OAuth => !compact,
        AccountKind::ApiKey => ctx.client_streams(),
    };
    let body = upstream_body(state, ctx, account)?;
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
    let request = state
        .client_for(account)
        .post(upstream::responses_url(spec, compact))
        .headers(headers)
        .body(body);

    // send — the wait is real from here on, so keepalive may start
    let since_send = Instant::now();
    let limit = state.gateway.response_header_timeout;
    let response = match writer
        .wait(tokio::time::timeout(limit, request.send()))
        .await
    {
        Err(_) => return Err(AttemptFailure::header_timeout(limit)),
        Ok(Err(e)) if e.is_connect() => return Err(AttemptFailure::connect(&e)),
        Ok(Err(e)) => return Err(AttemptFailure::transport(&e)),
        Ok(Ok(response)) => response,
    };

    // classify
    let status = response.status();
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = writer.wait(read_error_body(response)).await;
        return Err(AttemptFailure::from_status(status, &headers, body));
    }
    let quota = quota::from_headers(response.headers(), SystemTime::now());
    respond::answer(state, ctx, writer, response).await?;
    Ok(Attempted {
        status: status.as_u16(),
        quota,
        since_send,
    })
}

/// The body for this account: the Codex rules for sign-in accounts, the account's model name,
/// and `prompt_cache_key` derived per API key. Untouched when nothing applies.
fn upstream_body(
    state: &AppState,
    ctx: &RequestContext,
    account: &Account,
) -> Result<Bytes, AttemptFailure> {
    let model = account.upstream_model(&ctx.inspected.model);
    let cache_key = ctx
        .inspected
        .prompt_cache_key
        .as_deref()
        .map(|k| state.sessions.derive(&ctx.key.id, k));
    let edits = BodyEdits {
        codex: (account.spec.kind == AccountKind::OAuth)
            .then_some(ctx.endpoint == Endpoint::Compact),
        model: (model != ctx.inspected.model).then_some(model),
        prompt_cache_key: cache_key.as_deref(),
    };
    if edits.is_empty() {
        return Ok(ctx.body.clone());
    }
    responses::rewrite(&ctx.body, &edits).map_err(|message| {
        let mut failure = AttemptFailure::bad_answer(message.clone());
        failure.retryable = false;
        failure.effect = AccountEffect::None;
        failure.passthrough = Some((
            StatusCode::BAD_REQUEST,
            crate::protocol::errors::openai_error_body(&message, "invalid_request_error", None),
        ));
        failure
    })
}

/// Reads at most [`ERROR_BODY_LIMIT`] bytes of an error answer, giving up after a while.
async fn read_error_body(mut response: reqwest::Response) -> Bytes {
    let mut body = BytesMut::new();
    let read = async {
        while let Ok(Some(chunk)) = response.chunk().await {
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
