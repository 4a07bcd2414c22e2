//! Phase 5 for an upstream that answered 2xx: pass a stream through, aggregate a stream into
//! JSON, or pass JSON through. Each reads the upstream inside [`DownstreamWriter::wait`], so
//! keepalives continue while the upstream is silent.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::failure::AttemptFailure;
use super::route::{Direction, Route};
use super::writer::DownstreamWriter;
use super::{Outcome, RequestContext};
use crate::config::GatewayConfig;
use crate::protocol::model_name::ModelRewrite;
use crate::protocol::responses::{self, Aggregator};
use crate::protocol::sse::{SseEvent, SseScanner};
use crate::protocol::{EventRole, Protocol, StreamWatch, Terminal, TokenUsage, Wire};
use crate::state::AppState;
use crate::translate::StreamTranslator;
use crate::upstream::{self, SendError};

/// When the client is gone and no idle timeout is configured, the upstream is still read for
/// usage, but not forever.
const ORPHAN_IDLE_LIMIT: Duration = Duration::from_secs(300);

/// `gateway.first_token_timeout` for one attempt: a stream with no real output by `deadline`
/// (`after` the send) fails over.
#[derive(Debug, Clone, Copy)]
pub(super) struct FirstToken {
    pub deadline: Instant,
    pub after: Duration,
}

pub(super) async fn answer(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    first_token: Option<FirstToken>,
    route: Route,
) -> Result<Outcome, AttemptFailure> {
    let is_sse = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if let Route::Translated(direction) = route {
        return translated(state, ctx, writer, response, direction, is_sse, first_token).await;
    }
    let protocol = ctx.endpoint.protocol();
    // The group's `model_map` sent the request upstream under another name: the answer says
    // the client's (a translated answer is written with it).
    let model = ctx
        .client_model
        .as_deref()
        .map(|client| ModelRewrite::new(protocol, client));
    match (ctx.client_streams(), is_sse) {
        (true, true) => {
            let drop_usage_chunk = protocol == Protocol::Chat && !ctx.inspected.include_usage;
            let watch = protocol.stream_watch(drop_usage_chunk);
            let mapper = Native {
                drop_events: watch.filters(),
                model,
            };
            stream(state, ctx, writer, response, watch, mapper, first_token).await
        }
        (false, true) if protocol == Protocol::Responses => {
            aggregate(state, ctx, writer, response, model).await
        }
        (false, true) => Err(AttemptFailure::bad_answer(
            "the upstream answered a stream to a request for JSON",
        )),
        (_, false) => json_through(state, ctx, writer, response, model).await,
    }
}

/// Upstream headers worth showing the client: the usage windows Codex CLI displays, and the
/// OpenAI API's rate-limit figures.
fn client_headers(upstream: &HeaderMap, content_type: &'static str) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        let n = name.as_str();
        if n.starts_with("x-codex-") || n.starts_with("x-ratelimit-") {
            out.append(name.clone(), detached(value));
        }
    }
    out.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    out
}

/// A copy that does not share the connection's read buffer.
fn detached(value: &HeaderValue) -> HeaderValue {
    HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone())
}

enum ReadError {
    Idle(Duration),
    /// No real output by `gateway.first_token_timeout` (this long after the send).
    NoFirstToken(Duration),
    Transport(SendError),
    /// The client is gone and a bound on reading for it was hit (or the gateway is stopping).
    Orphan(&'static str),
}

impl ReadError {
    fn into_failure(self) -> AttemptFailure {
        match self {
            ReadError::Idle(after) => AttemptFailure::stalled(after),
            ReadError::NoFirstToken(after) => AttemptFailure::first_token_timeout(after),
            ReadError::Transport(e) => AttemptFailure::transport(&e),
            ReadError::Orphan(why) => AttemptFailure::abandoned(why),
        }
    }
}

/// Bounds on reading an upstream for a client that went away: the upstream is read on only to
/// learn the usage, for at most `gateway.orphan_read_timeout` and
/// `gateway.orphan_read_max_bytes` after the client left, and not past the start of shutdown.
#[derive(Default)]
struct Orphan {
    since: Option<Instant>,
    bytes: usize,
}

impl Orphan {
    /// Reads the next chunk, within the orphan bounds once the client is gone, and by
    /// `first_token`'s deadline if one applies (a client still waiting for its first output).
    async fn next(
        &mut self,
        state: &AppState,
        writer: &mut DownstreamWriter,
        body: &mut upstream::Body,
        ctx: &RequestContext,
        first_token: Option<FirstToken>,
    ) -> Result<Option<Bytes>, ReadError> {
        let idle = idle_limit(&ctx.gateway, writer);
        if !writer.client_gone() {
            // Inside `wait`, so keepalives go on until the deadline.
            return writer
                .wait(by_first_token(first_token, next_chunk(body, idle)))
                .await;
        }
        let since = *self.since.get_or_insert_with(|| {
            tracing::info!(
                request_id = %ctx.id,
                "the client went away; reading the upstream on for its usage (within gateway.orphan_read_timeout and gateway.orphan_read_max_bytes)"
            );
            Instant::now()
        });
        let deadline = since + ctx.gateway.orphan_read_timeout;
        let read = tokio::select! {
            read = tokio::time::timeout_at(deadline, next_chunk(body, idle)) => read,
            () = state.shutdown.cancelled() => {
                return Err(ReadError::Orphan("the gateway is shutting down"));
            }
        };
        let chunk = read.map_err(|_| ReadError::Orphan("gateway.orphan_read_timeout"))??;
        if let Some(chunk) = &chunk {
            self.bytes += chunk.len();
            if self.bytes > ctx.gateway.orphan_read_max_bytes {
                return Err(ReadError::Orphan("gateway.orphan_read_max_bytes"));
            }
        }
        Ok(chunk)
    }
}

/// `read`, given up at the first-token deadline if there is one.
async fn by_first_token<F>(
    first_token: Option<FirstToken>,
    read: F,
) -> Result<Option<Bytes>, ReadError>
where
    F: std::future::Future<Output = Result<Option<Bytes>, ReadError>>,
{
    match first_token {
        Some(ft) => tokio::time::timeout_at(ft.deadline, read)
            .await
            .unwrap_or(Err(ReadError::NoFirstToken(ft.after))),
        None => read.await,
    }
}

/// The stream's unfinished event or held-back preamble is larger than `gateway.max_event_bytes`.
fn oversized(what: &str, limit: usize) -> AttemptFailure {
    AttemptFailure::bad_answer(format!(
        "the upstream stream's {what} exceeds gateway.max_event_bytes ({limit} bytes)"
    ))
}

/// Taking the body out of the response drops its head, whose header bytes would otherwise pin a
/// read buffer for the stream's whole life.
fn body_of(response: upstream::Response) -> upstream::Body {
    response.into_body()
}

async fn next_chunk(
    body: &mut upstream::Body,
    idle: Option<Duration>,
) -> Result<Option<Bytes>, ReadError> {
    let next = async { body.chunk().await.transpose() };
    match idle {
        Some(limit) => match tokio::time::timeout(limit, next).await {
            Err(_) => Err(ReadError::Idle(limit)),
            Ok(read) => read.map_err(ReadError::Transport),
        },
        None => next.await.map_err(ReadError::Transport),
    }
}

fn idle_limit(gateway: &GatewayConfig, writer: &DownstreamWriter) -> Option<Duration> {
    let configured = gateway.stream_data_interval_timeout;
    if writer.client_gone() {
        Some(configured.unwrap_or(ORPHAN_IDLE_LIMIT))
    } else {
        configured
    }
}

// === The stream loop ===

/// What the client gets for an upstream stream's events: the upstream's own ([`Native`]) or a
/// translator's ([`Translated`]). [`stream`] is the one loop over both; it is generic over the
/// mapper, so the native path pays for no indirection, and [`Native`] passes the upstream's
/// chunks through as they came unless it must drop or rewrite events.
trait EventMapper {
    /// Whether the client's bytes for `chunk` are built event by event (into the `out` that
    /// [`EventMapper::event`] gets); otherwise the chunk goes out as it came. `carried`: the
    /// chunk completes an event whose start came in an earlier chunk.
    fn reframes(&self, chunk: &[u8], carried: bool) -> bool;

    /// One upstream event, as the upstream protocol's watch classified it (and, for a terminal
    /// event, read it: `read`): writes what the client gets for it into `out` (given when the
    /// mapper reframes) and says whether the client's real output has begun.
    fn event(
        &mut self,
        event: &SseEvent<'_>,
        role: &EventRole,
        read: Option<responses::TerminalRead>,
        out: Option<&mut BytesMut>,
    ) -> bool;

    /// The upstream sent an event the mapper cannot accept (a translator's
    /// [`StreamTranslator::malformed`]): the stream is a bad answer from here on.
    fn malformed(&self) -> Option<&str>;

    /// The upstream stream reached its terminal event: writes what closes the client's.
    fn finish(&mut self, out: &mut BytesMut);

    /// The client protocol's event that ends a stream which cannot go on after output.
    fn fail(&mut self, watch: &dyn StreamWatch, code: &str, message: &str) -> Bytes;

    /// The attempt's failure when the upstream reported one before any output. `held`: the
    /// client's events held back so far, the failing one's included.
    fn failed_early(&self, terminal: Terminal, held: BytesMut, usage: TokenUsage)
        -> AttemptFailure;
}

/// The upstream's events, in the client's (same) protocol: dropped where the watch says so (a
/// usage chunk the client did not ask for), and with the client's model name where the
/// group's `model_map` changed it. Only chunks that may hold such an event are re-framed (with a
/// model map: every Chat chunk, else those mentioning `"model"`); the rest pass as they came.
struct Native {
    drop_events: bool,
    model: Option<ModelRewrite>,
}

impl EventMapper for Native {
    fn reframes(&self, chunk: &[u8], carried: bool) -> bool {
        self.drop_events
            || self
                .model
                .as_ref()
                .is_some_and(|model| carried || model.may_carry(chunk))
    }

    fn event(
        &mut self,
        event: &SseEvent<'_>,
        role: &EventRole,
        _read: Option<responses::TerminalRead>,
        out: Option<&mut BytesMut>,
    ) -> bool {
        let output = match role {
            EventRole::Drop => return false,
            EventRole::Output => true,
            EventRole::Hold | EventRole::FailBeforeOutput(_) => false,
        };
        if let Some(out) = out {
            match &self.model {
                Some(model) => model.write_event(event, out),
                None => {
                    out.extend_from_slice(event.raw());
                    out.extend_from_slice(b"\n\n");
                }
            }
        }
        output
    }

    fn malformed(&self) -> Option<&str> {
        // The client's protocol is the upstream's: what the upstream sent is the client's to read.
        None
    }

    fn finish(&mut self, _out: &mut BytesMut) {}

    fn fail(&mut self, watch: &dyn StreamWatch, code: &str, message: &str) -> Bytes {
        watch.failure_event(code, message)
    }

    fn failed_early(
        &self,
        terminal: Terminal,
        held: BytesMut,
        _usage: TokenUsage,
    ) -> AttemptFailure {
        // The upstream's own failure stream is valid in the client's protocol: a streaming
        // client whose every account fails this way gets it.
        AttemptFailure::stream_failed(terminal, held.freeze())
    }
}

/// The direction's translator: every upstream event, held ones included, is translated; the
/// client's events are whole, and output begins when the translator says so (a Chat
/// upstream's role chunk, say, is only `response.created` for a Responses client).
struct Translated(Box<dyn StreamTranslator>);

impl EventMapper for Translated {
    fn reframes(&self, _chunk: &[u8], _carried: bool) -> bool {
        true
    }

    fn event(
        &mut self,
        event: &SseEvent<'_>,
        role: &EventRole,
        read: Option<responses::TerminalRead>,
        out: Option<&mut BytesMut>,
    ) -> bool {
        if let Some(out) = out.filter(|_| !matches!(role, EventRole::FailBeforeOutput(_))) {
            self.0.event_read(event, read, out);
        }
        self.0.has_output()
    }

    fn malformed(&self) -> Option<&str> {
        self.0.malformed()
    }

    fn finish(&mut self, out: &mut BytesMut) {
        self.0.finish(out);
    }

    fn fail(&mut self, _watch: &dyn StreamWatch, code: &str, message: &str) -> Bytes {
        let mut out = BytesMut::new();
        self.0.fail(code, message, &mut out);
        out.freeze()
    }

    fn failed_early(
        &self,
        terminal: Terminal,
        _held: BytesMut,
        usage: TokenUsage,
    ) -> AttemptFailure {
        // The upstream's failure stream is of the other protocol: the client gets the final
        // refusal in its own instead.
        let mut failure = AttemptFailure::stream_failed(terminal, Bytes::new());
        failure.failed_stream = None;
        failure.with_usage(usage)
    }
}

/// Streams events to the client as they arrive, through `mapper`. The upstream's events are
/// classified and metered by its protocol's `watch` (usage in upstream tokens, the end, a
/// failure); what the client gets for them is held back until the first real output, so a
/// failure before it still fails over, and `first_token`'s deadline applies until then.
/// Passed-through chunks go out as they came (the client only ever gets whole events: the
/// start of an event still arriving waits for its end).
async fn stream<M: EventMapper>(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    mut watch: Box<dyn StreamWatch>,
    mut mapper: M,
    first_token: Option<FirstToken>,
) -> Result<Outcome, AttemptFailure> {
    // Taken (not cloned) by the first write, so the map is not kept for the stream's life.
    let mut headers = client_headers(response.headers(), "text/event-stream");
    let mut body = body_of(response);
    let mut scanner = SseScanner::new();
    let mut held = BytesMut::new();
    let mut orphan = Orphan::default();
    // Set when the first real event goes out; from then on no other account may answer.
    let mut first_output_at: Option<Instant> = None;
    let max_event = ctx.gateway.max_event_bytes;
    // The start of an event still arriving, not yet written: the client only ever gets whole
    // events, so an in-protocol failure written after them is an event of its own.
    let mut unsent = BytesMut::new();
    // How many bytes at the end of `held` (before output) or `unsent` (after) are the start of
    // the scanner's unfinished event, passed through as they came: a chunk that is re-framed
    // gets that event whole from the scanner, so they are taken back first.
    let mut carried = 0usize;
    loop {
        // Until the first real output, by the first-token deadline if there is one.
        let deadline = first_token.filter(|_| first_output_at.is_none());
        let chunk = match orphan.next(state, writer, &mut body, ctx, deadline).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => {
                let failure = error.into_failure().with_usage(watch.usage());
                let Some(first_output_at) = first_output_at else {
                    return Err(failure);
                };
                return Err(end_stream_with_failure(
                    ctx,
                    writer,
                    &mut mapper,
                    watch.as_ref(),
                    failure,
                    first_output_at,
                )
                .await);
            }
        };

        let mut failed_early: Option<Terminal> = None;
        let mut starts_output = false;
        let output_started = first_output_at.is_some();
        let reframes = mapper.reframes(&chunk, scanner.pending() > 0);
        if reframes && carried > 0 {
            if output_started {
                unsent.clear();
            } else {
                held.truncate(held.len().saturating_sub(carried));
            }
        }
        let mut out = reframes.then(BytesMut::new);
        scanner.feed(&chunk, |event| {
            if failed_early.is_some() || mapper.malformed().is_some() {
                return;
            }
            let role = watch.observe(&event, output_started || starts_output);
            let read = watch.take_terminal_read();
            starts_output |= mapper.event(&event, &role, read, out.as_mut());
            if let EventRole::FailBeforeOutput(t) = role {
                failed_early = Some(t);
            }
        });
        let chunk = match out {
            Some(out) => out.freeze(),
            None => chunk,
        };
        // An event the translator cannot read: a bad answer. Before the client's first output
        // (in the upstream's order, however the bytes were chunked) nothing of this attempt
        // reached the client and another account may answer; after it, the output before the
        // bad event goes out and the stream ends in the client's protocol (below).
        let malformed = match mapper.malformed() {
            Some(why) if !output_started && !starts_output => {
                return Err(AttemptFailure::bad_answer(why).with_usage(watch.usage()));
            }
            Some(why) => Some(AttemptFailure::bad_answer(why)),
            None => None,
        };
        let too_large = if scanner.pending() > max_event {
            Some(oversized("unfinished event", max_event))
        } else if !output_started && !starts_output && held.len() + chunk.len() > max_event {
            Some(oversized("preamble (events before any output)", max_event))
        } else {
            None
        };
        // Reframed events are whole; passed-through chunks may end inside an event.
        let pending = if reframes { 0 } else { scanner.pending() };
        carried = pending;
        if let Some(failure) = too_large {
            let failure = failure.with_usage(watch.usage());
            let Some(first_output_at) = first_output_at else {
                return Err(failure);
            };
            // The whole events before the oversized one still go out, in order.
            let whole = whole_events(&mut unsent, chunk, pending);
            if !whole.is_empty() {
                writer.write_output(HeaderMap::new(), whole).await;
            }
            return Err(end_stream_with_failure(
                ctx,
                writer,
                &mut mapper,
                watch.as_ref(),
                failure,
                first_output_at,
            )
            .await);
        }

        if output_started {
            let whole = whole_events(&mut unsent, chunk, pending);
            if !whole.is_empty() {
                writer.write_output(HeaderMap::new(), whole).await;
            }
        } else if let Some(t) = failed_early {
            held.extend_from_slice(&chunk);
            return Err(mapper.failed_early(t, held, watch.usage()));
        } else if starts_output {
            first_output_at = Some(Instant::now());
            ctx.release_request();
            let bytes = if held.is_empty() {
                chunk
            } else {
                held.extend_from_slice(&chunk);
                // `take`, not `split`: a split-off `Bytes` shares its allocation with what stays
                // behind, so the preamble's buffer would live as long as `held`, i.e. the stream.
                std::mem::take(&mut held).freeze()
            };
            let whole = whole_events(&mut unsent, bytes, pending);
            writer
                .write_output(std::mem::take(&mut headers), whole)
                .await;
        } else {
            held.extend_from_slice(&chunk);
        }
        if let (Some(failure), Some(first_output_at)) = (malformed, first_output_at) {
            return Err(end_stream_with_failure(
                ctx,
                writer,
                &mut mapper,
                watch.as_ref(),
                failure.with_usage(watch.usage()),
                first_output_at,
            )
            .await);
        }
        if watch.finished() && scanner.pending() == 0 {
            // The terminal event is the last one that matters; do not wait for the upstream
            // to close its side.
            break;
        }
    }

    if watch.finished() {
        let mut out = BytesMut::new();
        mapper.finish(&mut out);
        let first = match first_output_at {
            Some(first) => first,
            None => {
                // A stream whose terminal event came before any real output (an empty answer):
                // what was held back is the answer.
                ctx.release_request();
                held.extend_from_slice(&out);
                out = std::mem::take(&mut held);
                Instant::now()
            }
        };
        if !out.is_empty() || first_output_at.is_none() {
            writer
                .write_output(std::mem::take(&mut headers), out.freeze())
                .await;
        }
        writer.close();
        return Ok(Outcome::answered(
            watch.usage(),
            watch.succeeded(),
            Some(first),
        ));
    }
    let Some(first_output_at) = first_output_at else {
        return Err(AttemptFailure::bad_answer(
            "the upstream stream ended before any output",
        ));
    };
    let failure = AttemptFailure::bad_answer("the upstream stream ended before its final event")
        .with_usage(watch.usage());
    Err(end_stream_with_failure(
        ctx,
        writer,
        &mut mapper,
        watch.as_ref(),
        failure,
        first_output_at,
    )
    .await)
}

/// The part of `bytes` (which follows `unsent`) that ends on an event boundary, given that the
/// last `pending` bytes are an event still arriving; those wait in `unsent` (a copy, like the
/// scanner's, made only for an event cut across reads).
fn whole_events(unsent: &mut BytesMut, bytes: Bytes, pending: usize) -> Bytes {
    if unsent.is_empty() {
        let whole = bytes.len().saturating_sub(pending);
        if whole < bytes.len() {
            unsent.extend_from_slice(&bytes[whole..]);
        }
        return bytes.slice(..whole);
    }
    unsent.extend_from_slice(&bytes);
    let whole = unsent.len().saturating_sub(pending);
    let mut all = std::mem::take(unsent);
    let tail = all.split_off(whole);
    unsent.extend_from_slice(&tail);
    all.freeze()
}

/// After output, a failure can only be told in-protocol: `response.failed`, an Anthropic
/// `error` event, or a Chat error chunk (the mapper writes the client's, closing what it has
/// open first). The failure comes back with the client's answer delivered (200, not a success,
/// the usage seen so far).
async fn end_stream_with_failure<M: EventMapper>(
    ctx: &RequestContext,
    writer: &mut DownstreamWriter,
    mapper: &mut M,
    watch: &dyn StreamWatch,
    failure: AttemptFailure,
    first_output_at: Instant,
) -> AttemptFailure {
    let message = format!("{} (request {})", failure.message, ctx.id);
    let event = mapper.fail(watch, failure.kind.as_str(), &message);
    writer.write_output(HeaderMap::new(), event).await;
    writer.close();
    let tokens = failure.usage.unwrap_or_default();
    failure.after_output(Outcome::answered(tokens, false, Some(first_output_at)))
}

/// Reads a whole stream and answers the client with the final `response` object.
async fn aggregate(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    model: Option<ModelRewrite>,
) -> Result<Outcome, AttemptFailure> {
    let (headers, body, usage) = collect_response(state, ctx, writer, response).await?;
    let body = match model {
        Some(model) => model.json(body),
        None => body,
    };
    let outcome = Outcome::answered(usage, true, Some(Instant::now()));
    writer.finish(StatusCode::OK, headers, body).await;
    Ok(outcome)
}

/// Reads a whole Responses stream into the final `response` object (with the headers for the
/// client and the usage).
async fn collect_response(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
) -> Result<(HeaderMap, Bytes, TokenUsage), AttemptFailure> {
    let headers = client_headers(response.headers(), "application/json");
    let mut body = body_of(response);
    let limit = ctx.gateway.upstream_response_read_max_bytes;
    let max_event = ctx.gateway.max_event_bytes;
    let mut scanner = SseScanner::new();
    let mut aggregator = Aggregator::default();
    let mut terminal: Option<(Terminal, Option<TokenUsage>)> = None;
    let mut failed: Option<Terminal> = None;
    let mut received = BytesMut::new();
    let mut read = 0usize;
    let mut orphan = Orphan::default();
    loop {
        let chunk = match orphan.next(state, writer, &mut body, ctx, None).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(error) => return Err(error.into_failure()),
        };
        read += chunk.len();
        if read > limit {
            return Err(AttemptFailure::bad_answer(format!(
                "the upstream answer exceeds gateway.upstream_response_read_max_bytes ({limit} bytes)"
            )));
        }
        scanner.feed(&chunk, |event| match responses::Event::of(event.name()) {
            responses::Event::OutputItemDone => aggregator.on_output_item_done(&event.data()),
            responses::Event::Completed | responses::Event::Incomplete => {
                aggregator.on_terminal(&event.data());
                terminal = Some(responses::read_terminal(&event.data()));
            }
            responses::Event::Failed | responses::Event::Error => {
                failed = Some(responses::read_terminal(&event.data()).0);
            }
            responses::Event::Preamble | responses::Event::Other => {}
        });
        if scanner.pending() > max_event {
            return Err(oversized("unfinished event", max_event));
        }
        if let Some(t) = failed.take() {
            received.extend_from_slice(&chunk);
            return Err(AttemptFailure::stream_failed(t, received.freeze()));
        }
        if terminal.is_some() {
            break;
        }
    }
    let Some((_, usage)) = terminal else {
        return Err(AttemptFailure::bad_answer(
            "the upstream stream ended before response.completed",
        ));
    };
    let Some(body) = aggregator.finish() else {
        return Err(AttemptFailure::bad_answer(
            "the upstream's response.completed carried no response object",
        ));
    };
    Ok((headers, body, usage.unwrap_or_default()))
}

/// Passes a JSON answer through, reading only its `usage` (and with the client's model name
/// when the group's `model_map` changed it).
async fn json_through(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    model: Option<ModelRewrite>,
) -> Result<Outcome, AttemptFailure> {
    let (headers, body, tokens) =
        collect_json(state, ctx, writer, response, ctx.endpoint.protocol()).await?;
    let body = match model {
        Some(model) => model.json(body),
        None => body,
    };
    let outcome = Outcome::answered(tokens, true, Some(Instant::now()));
    writer.finish(StatusCode::OK, headers, body).await;
    Ok(outcome)
}

/// Reads a whole JSON answer of `protocol` (within the read limit) and its usage.
async fn collect_json(
    state: &AppState,
    ctx: &RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    protocol: Protocol,
) -> Result<(HeaderMap, Bytes, TokenUsage), AttemptFailure> {
    let mut headers = client_headers(response.headers(), "application/json");
    if let Some(ct) = response.headers().get(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, detached(ct));
    }
    let mut body = body_of(response);
    let limit = ctx.gateway.upstream_response_read_max_bytes;
    let mut collected = BytesMut::new();
    let mut orphan = Orphan::default();
    loop {
        match orphan.next(state, writer, &mut body, ctx, None).await {
            Ok(Some(chunk)) => {
                if collected.len() + chunk.len() > limit {
                    return Err(AttemptFailure::bad_answer(format!(
                        "the upstream answer exceeds gateway.upstream_response_read_max_bytes ({limit} bytes)"
                    )));
                }
                collected.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => return Err(error.into_failure()),
        }
    }
    let body = collected.freeze();
    let tokens = protocol.usage_of_json(&body).map_err(|e| {
        AttemptFailure::bad_answer(format!(
            "the upstream answered 2xx with a body that is not a JSON object: {e}"
        ))
    })?;
    Ok((headers, body, tokens))
}

/// A translated attempt's answer (issue 16): the upstream's stream or JSON, read and metered in
/// the upstream's protocol, answered in the client's through the direction's translator.
async fn translated(
    state: &AppState,
    ctx: &mut RequestContext,
    writer: &mut DownstreamWriter,
    response: upstream::Response,
    direction: Direction,
    is_sse: bool,
    first_token: Option<FirstToken>,
) -> Result<Outcome, AttemptFailure> {
    let upstream = direction.upstream();
    let (headers, body, tokens) = match (ctx.client_streams(), is_sse) {
        (true, true) => {
            // The upstream's usage chunk (Chat) is read by the translator, which decides what
            // the client sees.
            let watch = upstream.stream_watch(false);
            let mapper = Translated(direction.stream_for(&ctx.body, ctx.client_model()));
            return stream(state, ctx, writer, response, watch, mapper, first_token).await;
        }
        (true, false) => {
            return Err(AttemptFailure::bad_answer(
                "the upstream answered JSON to a stream request",
            ))
        }
        // The Codex backend streams whatever the client asked for.
        (false, true) if upstream == Protocol::Responses => {
            collect_response(state, ctx, writer, response).await?
        }
        (false, true) => {
            return Err(AttemptFailure::bad_answer(
                "the upstream answered a stream to a request for JSON",
            ))
        }
        (false, false) => collect_json(state, ctx, writer, response, upstream).await?,
    };
    let answer = direction
        .json_for(&body, &ctx.body, ctx.client_model())
        .map_err(|e| {
            AttemptFailure::bad_answer(format!("the upstream's answer cannot be translated: {e}"))
        })?;
    let outcome = Outcome::answered(tokens, true, Some(Instant::now()));
    writer.finish(StatusCode::OK, headers, answer).await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    //! `gateway.first_token_timeout` on paused time.

    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::time::Duration;

    use tokio::time::{sleep, Instant};

    use super::super::writer::{BodyMode, DownstreamWriter};
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A silent upstream is given up at the deadline (counted from the send, not from the read),
    /// keepalives go on until then, and the attempt can still fail over.
    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_is_given_up_at_the_first_token_deadline_with_failover_open() {
        let send = Instant::now();
        let (mut writer, _head) = DownstreamWriter::new(BodyMode::Sse, Some(secs(10)), "req_1");
        sleep(secs(5)).await; // the headers took 5 s
        let ft = FirstToken {
            deadline: send + secs(30),
            after: secs(30),
        };
        let silent = std::future::pending::<Result<Option<Bytes>, ReadError>>();
        let read = writer.wait(by_first_token(Some(ft), silent)).await;
        assert!(matches!(read, Err(ReadError::NoFirstToken(after)) if after == secs(30)));
        assert_eq!(send.elapsed(), secs(30));
        assert_eq!(writer.keepalives_sent(), 2, "at 15 s and 25 s");
        assert!(writer.can_fail_over(), "only keepalives went out");
    }

    /// Control: a chunk that comes before the deadline is read as usual.
    #[tokio::test(start_paused = true)]
    async fn output_before_the_deadline_is_read() {
        let send = Instant::now();
        let ft = FirstToken {
            deadline: send + secs(25),
            after: secs(25),
        };
        let chunk = async {
            sleep(secs(24)).await;
            Ok(Some(Bytes::from_static(b"data: {}\n\n")))
        };
        let read = by_first_token(Some(ft), chunk).await;
        assert!(matches!(read, Ok(Some(_))));
    }
}
