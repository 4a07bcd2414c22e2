//! A scripted fake upstream for subrelay: it stands in for the Codex backend
//! (`https://chatgpt.com/backend-api/codex`), the OpenAI API (`https://api.openai.com/v1`), the
//! Anthropic API (`https://api.anthropic.com`) and both providers' token endpoints in end-to-end
//! tests, the README demo and benchmarks.
//!
//! Why it exists: failover, keepalive, stream handling and token refresh can only be tested
//! against an upstream that misbehaves on demand (slow headers, streams cut or hanging mid-way,
//! rate-limit answers with their headers, refresh tokens that rotate and can be spent) and that
//! counts what it received. It follows the wire facts of `shared/PROTOCOLS.md`, including each
//! upstream's request rules, so tests also prove that the gateway normalises what it forwards.
//!
//! Two ways to drive it:
//! - in-process ([`MockUpstream::start`]) where a test queues [`Behavior`]s per credential with
//!   [`MockUpstream::script`] and asserts on [`MockUpstream::calls`] and friends;
//! - as the `subrelay-mock` binary, where the behaviour comes from options in the model name
//!   (`gpt-5.1-codex+delay_ms=200+events=20+interval_ms=5`, on every API route) and counts are
//!   read from `GET /__mock/calls`.
//!
//! Routes (anything else is a 404 in OpenAI's error shape):
//!
//! | route | imitates | answers |
//! | --- | --- | --- |
//! | `POST /backend-api/codex/responses` | Codex backend | stream only; needs `stream:true`, `store:false`, `instructions` |
//! | `POST /backend-api/codex/responses/compact` | Codex backend | JSON compaction; refuses `stream`/`store` |
//! | `POST /v1/responses` | OpenAI Responses | stream or JSON |
//! | `POST /v1/responses/compact` | OpenAI Responses | JSON compaction |
//! | `POST /v1/chat/completions` | OpenAI Chat Completions | `data:` chunks ending `data: [DONE]` (usage chunk only with `stream_options.include_usage`), or JSON |
//! | `POST /v1/messages` (any query, e.g. `?beta=true`) | Anthropic Messages | SSE stream or JSON; `x-api-key`, or Bearer + `anthropic-beta: oauth-2025-04-20`; `anthropic-version` required; thinking blocks signed `sig:<credential>` and checked |
//! | `POST /v1/messages/count_tokens` | Anthropic | `{"input_tokens": N}`; same header rules |
//! | `GET /oauth/authorize` | `auth.openai.com`, `claude.ai` | sign-in page: PKCE (S256) required; signs in at once and redirects (302) to `redirect_uri?code=…&state=…` |
//! | `POST /oauth/token` | `auth.openai.com` | refresh-token and authorization-code (PKCE-checked, single-use) grants, JSON or form; rotates refresh tokens |
//! | `POST /v1/oauth/token` | `console.anthropic.com` | refresh-token and authorization-code grants, JSON; rotates refresh tokens |
//! | `GET /v1/models`, `GET /backend-api/codex/models` | model lists | a free call (health probes); counted; a scripted error status is answered |
//! | `GET /backend-api/codex/responses`, `GET /v1/responses` with `Upgrade: websocket` | the Responses WebSocket transport | one `response.create` message per turn, scripted and checked like a POST on the route, events as text frames; `previous_response_id` of a response completed on the socket; refused with a status by [`MockUpstream::refuse_websocket`]; counted in [`MockUpstream::websocket_upgrades`] / [`MockUpstream::websocket_turns`] (turns also in `calls`, recorded with the method `WS`), POSTs in [`MockUpstream::posts`] (see `websocket`) |
//! | `GET /__mock/calls`, `POST /__mock/reset` | — | counts as JSON; reset |
//!
//! Quota windows that move with use: [`MockUpstream::set_quota`] gives a credential a [`Quota`];
//! its answers then report the windows (`x-codex-*`, `anthropic-ratelimit-unified-*`), each call
//! uses some, and a full window answers 429 (see `quota`).
//!
//! Hostile modes (an upstream that attacks the gateway; [`Behavior`] fields, or model options):
//!
//! | option | field | what the mock does |
//! | --- | --- | --- |
//! | `huge_line=N` | `huge_line` | a stream with one `data:` line of N bytes and no newline until its end (64 KiB chunks, generated as sent), after `at=K` events (default 1: before any output) |
//! | `preamble_bytes=N` | `preamble_bytes` | a stream whose first event is repeated until N bytes went, before any output |
//! | `endless` | `endless` | a stream that never ends: every event but the terminal one, then the last of them forever, `interval_ms` apart (at least 1 ms) |
//! | `status=101`, `status=302`, ... | `status` | any status 101 or 300–999; hyper writes a 101 without a body, 3xx come with a JSON error body |
//! | `echo_auth` | `echo_credential` | an error answer quotes the request's `Authorization` / `x-api-key` headers in its message |
//! | `text_error` | `text_error` | an error answer is an HTML page (`text/html`), not JSON |
//!
//! TLS ([`MockUpstream::start_tls`] with a [`MockTls`], or `--tls-cert`/`--tls-key`): rustls with
//! ALPN `h2` and `http/1.1`, hyper's HTTP/2 server, an optional low `max_concurrent_streams`;
//! [`TestCa`] makes the certificates at test time. Every connection is recorded
//! ([`MockUpstream::connections`]: SNI, ALPN, handshake outcome), and [`MockUpstream::goaway`]
//! sends open connections a GOAWAY. `refuse_stream` ([`Behavior::refuse_stream`]) answers
//! RST_STREAM REFUSED_STREAM.
//!
//! Function calls: `calls=N` ([`Behavior::tool_calls`]) answers a request that declares tools
//! with N calls of them, on every API, stream or JSON, until the request carries a tool's
//! result (see `tools`).
//!
//! A Chat stream failing midway: `error_chunk=N` ([`Behavior::error_chunk_after`]) sends an
//! error chunk after N chunks (the first carries the role), then `data: [DONE]`, as
//! OpenAI-compatible servers do; `legacy_error` ([`Behavior::legacy_error_chunk`]) writes it in
//! older vLLM's top-level `{"object":"error",…}` shape.
//!
//! A corrupted stream: `malformed=N` ([`Behavior::malformed_event_at`]) sends event N (0 for the
//! first) with its data cut in half, on every API.
//!
//! API routes count in [`MockUpstream::calls`] / [`MockUpstream::total_calls`]; token endpoints
//! count apart in [`MockUpstream::token_calls`]. Everything but the control routes is in
//! [`MockUpstream::requests`].
//!
//! Layout: `server` listens, `handle` walks one request through its phases, `request` routes and
//! reads credentials (and checks Responses bodies), `model_options` turns a model name into a
//! [`Behavior`]. One module per API builds its answers: `answer` (+ shapes in `wire`) for
//! Responses, `anthropic` (+ `anthropic::request`, `anthropic::wire`), `chat` (+ `chat::wire`),
//! `oauth` for the token endpoints. They share `reply` (reply type, JSON and output text), `sse`
//! (event streams, cuts and hangs), `errors` (each API's error shape) and `body` (pacing); `ledger`
//! counts and records.

#![allow(
    clippy::disallowed_methods,
    clippy::print_stderr,
    reason = "a test tool, not the gateway: its connection tasks end with the test's runtime, \
              its skip log is a file it appends to, and it reports on stderr"
)]

mod answer;
mod anthropic;
mod behavior;
mod body;
mod certs;
mod chat;
mod errors;
mod handle;
mod ids;
mod ledger;
mod model_options;
mod oauth;
mod quota;
mod reply;
mod request;
mod server;
pub mod skip;
mod sse;
mod tls;
mod tools;
mod websocket;
mod wire;

pub use behavior::{Behavior, Usage, DEFAULT_EVENTS, DEFAULT_TEXT};
pub use certs::{Leaf, TestCa};
pub use ledger::RecordedRequest;
pub use quota::Quota;
pub use server::MockUpstream;
pub use tls::{ConnectionRecord, MockTls};
