//! The configuration as written: YAML with defaults, unknown keys refused.
//!
//! These types only describe the file. [`super::validate`] turns them into the runtime
//! [`super::Config`], so nothing after start-up re-checks a value.

use serde::{Deserialize, Serialize};

use super::secret::SecretRef;
use crate::domain::{AccountKind, Platform, Protocol};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub gateway: RawGateway,
    pub upstream: RawUpstream,
    pub log: RawLog,
    pub oauth: RawOAuth,
    pub storage: RawStorage,
    pub state: RawState,
    pub admin: RawAdmin,
    pub metrics: RawMetrics,
    pub telemetry: RawTelemetry,
    pub config: RawConfigFile,
    pub groups: Vec<RawGroup>,
    pub accounts: Vec<RawAccount>,
    pub api_keys: Vec<RawApiKey>,
    /// Model → price per million tokens; added to (or replacing) the shipped defaults.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub prices: std::collections::BTreeMap<String, RawPrice>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub host: String,
    pub port: i64,
    pub shutdown_timeout: i64,
    pub workers: i64,
    pub header_read_timeout: i64,
    pub idle_timeout: i64,
    pub body_read_timeout: i64,
    /// 0 = derived from the file limit.
    pub max_connections: i64,
    /// IPs and CIDRs, comma- or space-separated, whose `X-Forwarded-For` is believed; absent:
    /// none.
    pub trusted_proxies: Option<String>,
    /// Seconds between SIGTERM (readiness 503) and closing the listener.
    pub drain_delay: i64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            shutdown_timeout: 30,
            workers: 1,
            header_read_timeout: 30,
            idle_timeout: 120,
            body_read_timeout: 60,
            max_connections: 0,
            trusted_proxies: None,
            drain_delay: 0,
        }
    }
}

/// Numbers are read as `i64` so that a negative or out-of-range value reaches validation and
/// gets the message that names the allowed range, instead of a bare type error.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGateway {
    pub response_header_timeout: i64,
    pub connect_timeout: i64,
    pub first_token_timeout: i64,
    pub stream_keepalive_interval: i64,
    pub stream_data_interval_timeout: i64,
    pub openai_compact_nonstream_keepalive_interval: i64,
    pub nonstream_keepalive_interval: i64,
    pub max_account_switches: i64,
    pub max_body_size: i64,
    pub upstream_response_read_max_bytes: i64,
    pub sticky_session_ttl: i64,
    pub sticky_slow_ttft_ms: i64,
    pub sticky_slow_strikes: i64,
    pub quota_reserve_percent: i64,
    pub probe_interval: i64,
    pub queue_wait_timeout: i64,
    pub queue_max_waiting: i64,
    pub overload_cooldown: i64,
    pub max_cooldown: i64,
    pub max_event_bytes: i64,
    pub orphan_read_timeout: i64,
    pub orphan_read_max_bytes: i64,
    pub websocket_max_history_bytes: i64,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            response_header_timeout: 600,
            connect_timeout: 10,
            first_token_timeout: 0,
            stream_keepalive_interval: 10,
            stream_data_interval_timeout: 180,
            openai_compact_nonstream_keepalive_interval: 0,
            nonstream_keepalive_interval: 0,
            max_account_switches: 10,
            max_body_size: 256 * 1024 * 1024,
            upstream_response_read_max_bytes: 128 * 1024 * 1024,
            sticky_session_ttl: 3600,
            sticky_slow_ttft_ms: 0,
            sticky_slow_strikes: 3,
            quota_reserve_percent: 0,
            probe_interval: 60,
            queue_wait_timeout: 30,
            queue_max_waiting: 100,
            overload_cooldown: 600,
            max_cooldown: 6 * 3600,
            max_event_bytes: 16 * 1024 * 1024,
            orphan_read_timeout: 600,
            orphan_read_max_bytes: 64 * 1024 * 1024,
            websocket_max_history_bytes: 32 * 1024 * 1024,
        }
    }
}

/// How subrelay reaches the providers.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    /// PEM file of extra trust anchors; absent: the built-in roots only.
    pub ca_file: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
    pub level: String,
    pub access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".to_owned(),
            level: "info".to_owned(),
            access: true,
        }
    }
}

/// Trace export.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTelemetry {
    /// Base URL of an OTLP/HTTP collector; empty = off.
    pub otlp_endpoint: String,
}

/// The configuration file itself.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfigFile {
    /// Reload when the file changes (as on SIGHUP).
    pub watch: bool,
}

/// The Prometheus endpoint.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    /// `host:port` of the `/metrics` listener; empty = off.
    pub listen: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOAuth {
    pub openai_token_url: String,
    pub openai_client_id: String,
    pub anthropic_token_url: String,
    pub anthropic_client_id: String,
    pub refresh_ahead: i64,
    pub openai_authorize_url: String,
    pub openai_redirect_uri: String,
    pub anthropic_authorize_url: String,
    pub anthropic_redirect_uri: String,
}

impl Default for RawOAuth {
    fn default() -> Self {
        Self {
            openai_token_url: "https://auth.openai.com/oauth/token".to_owned(),
            openai_client_id: "app_EMoamEEZ73f0CkXaXp7hrann".to_owned(),
            anthropic_token_url: "https://console.anthropic.com/v1/oauth/token".to_owned(),
            anthropic_client_id: "9d1c250a-e61b-44d9-88ed-5944d1962f5e".to_owned(),
            refresh_ahead: 1800,
            openai_authorize_url: "https://auth.openai.com/oauth/authorize".to_owned(),
            openai_redirect_uri: "http://localhost:1455/auth/callback".to_owned(),
            anthropic_authorize_url: "https://claude.ai/oauth/authorize".to_owned(),
            anthropic_redirect_uri: "https://console.anthropic.com/oauth/code/callback".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStorage {
    pub data_dir: String,
    /// Absent = a key generated into the data directory.
    pub encryption_key: Option<SecretRef>,
    pub usage_batch_interval_ms: i64,
    pub usage_queue_capacity: i64,
    /// `sqlite` (embedded) or `postgres` (shared by several instances).
    pub backend: String,
    /// Required with `backend: postgres`.
    pub postgres_url: Option<SecretRef>,
    pub postgres_max_connections: i64,
    /// Milliseconds between reads of a shared store's change counter; 0: automatic.
    pub change_poll_ms: i64,
}

/// Where runtime state lives (issue 17): this process, or Redis shared by several instances.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawState {
    pub backend: String,
    /// `redis://host:port/db` or `rediss://…`; a secret reference (`env:`, `file:`) is allowed.
    pub redis_url: Option<SecretRef>,
    pub redis_prefix: String,
    /// Seconds a concurrency lease lives without renewal.
    pub lease_ttl: i64,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: "local".to_owned(),
            redis_url: None,
            redis_prefix: "subrelay:".to_owned(),
            lease_ttl: 30,
        }
    }
}

impl Default for RawStorage {
    fn default() -> Self {
        Self {
            data_dir: "./data".to_owned(),
            encryption_key: None,
            usage_batch_interval_ms: 500,
            usage_queue_capacity: 100_000,
            backend: "sqlite".to_owned(),
            postgres_url: None,
            postgres_max_connections: 10,
            change_poll_ms: 0,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    pub output: f64,
    #[serde(default)]
    pub cache_creation: Option<f64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    /// Absent = the admin API is off.
    pub token: Option<SecretRef>,
    /// Seconds a dashboard session lasts after sign-in.
    pub session_ttl: i64,
    /// Days the audit trail keeps a row.
    pub audit_retention_days: i64,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            token: None,
            session_ttl: 43_200,
            audit_retention_days: 365,
        }
    }
}

/// An account group (pool) and the platform that serves it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: String,
    pub platform: Platform,
    /// Model → the models to try instead, in order, when no account can serve it now.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub model_fallback: std::collections::BTreeMap<String, Vec<String>>,
    // Translation (issue 16).
    /// A key of the group may call any client protocol; accounts that do not speak it get the
    /// request translated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub translate: bool,
    /// Client model name (`*` wildcards) → upstream model name, before account selection.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub model_map: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: String,
    pub platform: Platform,
    #[serde(rename = "type")]
    pub kind: AccountKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chatgpt_account_id: Option<String>,
    /// Unix seconds or an RFC 3339 time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<serde_yaml::Value>,
    #[serde(default)]
    pub priority: i64,
    #[serde(default)]
    pub concurrency: i64,
    #[serde(default = "default_groups")]
    pub groups: Vec<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Models this account serves; absent = any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Client model name → the name sent upstream; mapped names are served too.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub model_map: std::collections::BTreeMap<String, String>,
    /// Outbound proxy for this account only: http://, https://, socks5://, socks5h://.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<SecretRef>,
    /// The upstream APIs the account speaks (`responses`, `chat`, `messages`); absent = the
    /// defaults of its platform and type.
    #[serde(
        default,
        with = "crate::domain::api_names",
        skip_serializing_if = "Option::is_none"
    )]
    pub protocols: Option<Vec<Protocol>>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub key: SecretRef,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_group")]
    pub group: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Requests of this key in flight at once; 0 = unlimited.
    #[serde(default)]
    pub concurrency: i64,
    /// Unix seconds or an RFC 3339 time after which the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<serde_yaml::Value>,
    /// Requests per minute; 0 = unlimited.
    #[serde(default)]
    pub rpm_limit: i64,
    /// USD per UTC day / calendar month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_spend_limit: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_spend_limit: Option<f64>,
    /// Absent = every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
}

fn default_groups() -> Vec<String> {
    vec![default_group()]
}

fn default_group() -> String {
    "default".to_owned()
}

fn yes() -> bool {
    true
}
