//! Usage records: one per request that reached (or tried to reach) an upstream.
//!
//! The relay hands each record to a [`UsageSink`] off the request's critical path (after the
//! answer is written): `store::usage_writer::StoreUsageSink`, which prices the record, logs it
//! ([`log_record`]) and stores it.

use serde::Serialize;

use crate::protocol::TokenUsage;

#[derive(Debug, Clone, Serialize)]
pub struct UsageRecord {
    pub request_id: String,
    pub key: String,
    /// The account that answered (or the last one tried).
    pub account: Option<String>,
    /// `responses`, `responses_compact`, `chat_completions`, `messages`, `count_tokens`.
    pub endpoint: &'static str,
    /// The model the request is priced by: the upstream model (after the group's `model_map`).
    pub model: String,
    /// The model the client asked for, when the group's `model_map` changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_model: Option<String>,
    /// The tokens are counted the Anthropic way (input excludes cache reads): the upstream that
    /// answered spoke Messages, whatever the client spoke.
    #[serde(skip)]
    pub anthropic_tokens: bool,
    pub stream: bool,
    pub compact: bool,
    /// The status the client received (200 also when an error followed keepalive bytes).
    pub status: u16,
    /// Whether the request succeeded from the client's point of view.
    pub success: bool,
    pub tokens: TokenUsage,
    pub duration_ms: u64,
    /// Time to the first semantic byte written downstream.
    pub ttft_ms: Option<u64>,
    /// Every account tried, in order, with its outcome.
    pub attempts: Vec<AttemptRecord>,
    pub client_disconnected: bool,
    /// How the client reached the gateway: an HTTP request, or one turn of a WebSocket.
    pub transport: Transport,
    /// The key had a daily or monthly spending limit when the request was admitted: only then
    /// is the cost counted against it (with Redis, a script per record; keys without a limit
    /// send nothing, and a limit added later is seeded from the store, `Limits::follow_keys`).
    #[serde(skip)]
    pub spend_limited: bool,
}

/// How a request reached the gateway; one usage row per HTTP request or per WebSocket turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    #[default]
    Http,
    /// One `response.create` turn of a Responses WebSocket (`relay::websocket`).
    WebSocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::WebSocket => "websocket",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub account: String,
    /// Upstream status, when it answered one.
    pub status: Option<u16>,
    /// `ok`, or the failure kind.
    pub outcome: &'static str,
}

pub trait UsageSink: Send + Sync {
    fn record(&self, record: UsageRecord);

    /// Whether a new request's record can be kept. False while the storage can take no more
    /// (the spool cannot be written and the in-memory queue is full): the relay then refuses new
    /// requests at admission instead of serving them unrecorded.
    fn accepting(&self) -> bool {
        true
    }
}

/// The record as it is logged: with its cost when it was priced.
#[derive(Serialize)]
struct Logged<'a> {
    #[serde(flatten)]
    record: &'a UsageRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    /// False: the model has no price, the cost is recorded as 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    priced: Option<bool>,
}

/// One `usage` log line at debug level; `cost` is `(usd, priced)` when the store's sink priced
/// the record. Debug, because the store keeps every record and a formatted line per request is a
/// cost the hot path should not pay by default (`log.level: info,usage=debug` turns it on).
pub fn log_record(record: &UsageRecord, cost: Option<(f64, bool)>) {
    if !tracing::enabled!(target: "usage", tracing::Level::DEBUG) {
        return;
    }
    let logged = Logged {
        record,
        cost_usd: cost.map(|c| c.0),
        priced: cost.map(|c| c.1),
    };
    let json = serde_json::to_string(&logged).unwrap_or_default();
    tracing::debug!(
        target: "usage",
        request_id = %record.request_id,
        key = %record.key,
        account = record.account.as_deref().unwrap_or("-"),
        model = %record.model,
        status = record.status,
        input_tokens = record.tokens.input,
        output_tokens = record.tokens.output,
        record = %json,
        "usage"
    );
}
