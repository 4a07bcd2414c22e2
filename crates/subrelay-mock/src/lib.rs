//! A scripted fake upstream for subrelay: it stands in for the Codex backend
//! (`https://chatgpt.com/backend-api/codex`) and the OpenAI API (`https://api.openai.com/v1`)
//! in end-to-end tests, the README demo and benchmarks.
//!
//! Why it exists: failover, keepalive and stream handling can only be tested against an upstream
//! that misbehaves on demand (slow headers, streams cut or hanging mid-way, rate-limit answers
//! with their headers) and that counts what it received. It follows the wire facts of
//! `shared/PROTOCOLS.md`, including the Codex backend's body rules, so tests also prove that the
//! gateway normalises what it forwards.
//!
//! Two ways to drive it:
//! - in-process ([`MockUpstream::start`]) where a test queues [`Behavior`]s per credential with
//!   [`MockUpstream::script`] and asserts on [`MockUpstream::calls`] and friends;
//! - as the `subrelay-mock` binary, where the behaviour comes from options in the model name
//!   (`gpt-5.1-codex+delay_ms=200+events=20+interval_ms=5`) and counts are read from
//!   `GET /__mock/calls`.
//!
//! Routes: `POST /backend-api/codex/responses` (streams only), `POST
//! /backend-api/codex/responses/compact`, `POST /v1/responses` (stream or JSON), `POST
//! /v1/responses/compact`, `GET /__mock/calls`, `POST /__mock/reset`; anything else is a 404.
//!
//! Layout: `server` listens, `handle` walks one request through its phases, `request` reads and
//! checks it, `model_options` turns a model name into a [`Behavior`], `answer` serializes the
//! reply using the shapes in `wire`, `body` paces it, `ledger` counts and records.

mod answer;
mod anthropic;
mod behavior;
mod body;
mod chat;
mod errors;
mod handle;
mod ids;
mod ledger;
mod model_options;
mod oauth;
mod reply;
mod request;
mod server;
mod sse;
mod wire;

pub use behavior::{Behavior, Usage, DEFAULT_EVENTS, DEFAULT_TEXT};
pub use ledger::RecordedRequest;
pub use server::MockUpstream;
