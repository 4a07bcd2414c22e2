//! One attempt on one account: credential → build → send → classify.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::failure::AttemptFailure;
use super::writer::DownstreamWriter;
use super::{respond, Endpoint, RequestContext};
use crate::pool::{Account, AccountKind};
use crate::protocol::responses;
use crate::state::AppState;
use crate::upstream;

/// Largest upstream error body kept (for the log and for passing a 4xx through).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// How long an error body may take to arrive once its headers came.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs one attempt. `Ok` carries the upstream status of an answer that was delivered (its
/// success or in-protocol failure is in `ctx`); `Err` is a failure the client has not seen.
pub(super) async fn run(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    account: &Account,
) -> Result<u16, AttemptFailure> {
    let spec = &account.spec;
    let compact = ctx.endpoint == Endpoint::Compact;

    // credential (token refresh slots in here with the account-pool work)
    let credential = spec.credential.bearer();

    // build
    let wants_stream = match spec.kind {
        AccountKind::OAuth => !compact,
        AccountKind::ApiKey => ctx.client_streams(),
    };
    let body = match spec.kind {
        AccountKind::OAuth => codex_body(ctx)?,
        AccountKind::ApiKey => ctx.body.clone(),
    };
    let headers =
        upstream::upstream_headers(spec, credential, &ctx.client_headers, wants_stream, compact);
    let request = state
        .client
        .post(upstream::responses_url(spec, compact))
        .headers(headers)
        .body(body);

    // send — the wait is real from here on, so keepalive may start
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
    respond::answer(state, ctx, writer, response).await?;
    Ok(status.as_u16())
}

/// The request body with the Codex backend's rules applied, computed once per request.
fn codex_body(ctx: &mut RequestContext) -> Result<Bytes, AttemptFailure> {
    if let Some(body) = &ctx.codex_body {
        return Ok(body.clone());
    }
    let body = responses::normalise_for_codex(&ctx.body, ctx.endpoint == Endpoint::Compact)
        .map_err(|message| {
            let mut failure = AttemptFailure::bad_answer(message.clone());
            failure.retryable = false;
            failure.effect = crate::pool::AccountEffect::None;
            failure.passthrough = Some((
                StatusCode::BAD_REQUEST,
                crate::protocol::errors::openai_error_body(&message, "invalid_request_error", None),
            ));
            failure
        })?;
    ctx.codex_body = Some(body.clone());
    Ok(body)
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
