//! Configuration: defaults → YAML file → environment overrides, validated once at start-up.
//!
//! [`load`] is the only entry point. It returns a [`Config`] of runtime types (durations,
//! enums, resolved secrets), so code after start-up never re-validates, or a [`ConfigError`]
//! whose message names the key, the value given and what is allowed.

mod env;
mod raw;
pub mod reference;
pub mod reload;
mod secret;
mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::{env_name, Environment, MapEnv, ProcessEnv};
pub use raw::RawConfig;
pub use reload::{ReloadReply, ReloadReport, ReloadRequest, ReloadRequests};
pub use secret::{Secret, SecretRef};

use crate::domain::{AccountSpec, KeySpec, Platform};

/// `groups[].model_fallback` by group: a model → the models to try instead, in order, when no
/// account of the group can serve it now (every one cooling, disabled or past its quota).
pub type ModelFallback =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// The groups' routing settings (`groups[].translate`, `groups[].model_map`,
/// `groups[].model_fallback`): read once by each request, replaced whole when the store's groups
/// change (admin API, configuration reload, another instance on a shared store).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSettings {
    /// The groups that translate or map model names.
    pub routing: std::collections::BTreeMap<String, crate::domain::GroupRouting>,
    /// `groups[].model_fallback`, by group.
    pub model_fallback: ModelFallback,
}

impl GroupSettings {
    /// The routing settings of `group` (none: no translation, no model map).
    pub fn routing(&self, group: &str) -> Option<&crate::domain::GroupRouting> {
        self.routing.get(group)
    }

    /// Whether keys of `group` may call every client API (`groups[].translate`).
    pub fn translates(&self, group: &str) -> bool {
        self.routing(group).is_some_and(|r| r.translate)
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub gateway: GatewayConfig,
    pub upstream: UpstreamConfig,
    pub log: LogConfig,
    pub oauth: OAuthConfig,
    pub storage: StorageConfig,
    pub state: StateConfig,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
    /// `config.*`: the configuration file itself.
    pub config_file: ConfigFileConfig,
    /// Every group a key or an account names, with the platform that serves it.
    pub groups: std::collections::BTreeMap<String, Platform>,
    /// `groups[].model_fallback`, by group.
    pub model_fallback: ModelFallback,
    /// The groups that translate or map model names (`groups[].translate`, `groups[].model_map`).
    pub group_routing: std::collections::BTreeMap<String, crate::domain::GroupRouting>,
    pub accounts: Vec<AccountSpec>,
    pub api_keys: Vec<KeySpec>,
    /// The config's `prices:`, by model (written into the store at start; the running table is
    /// the shipped defaults plus the store's rows).
    pub prices: std::collections::BTreeMap<String, crate::pricing::PriceSpec>,
    /// Where the values came from, for the start-up log and `check-config`.
    pub origin: ConfigOrigin,
}

impl Config {
    /// The groups' routing settings, as the running gateway holds them.
    pub fn group_settings(&self) -> GroupSettings {
        GroupSettings {
            routing: self.group_routing.clone(),
            model_fallback: self.model_fallback.clone(),
        }
    }

    /// The shipped prices with the config's `prices:` (before the store adds its own rows).
    pub fn price_table(&self) -> crate::pricing::PriceTable {
        crate::pricing::PriceTable::with_specs(self.prices.iter().map(|(m, s)| (m.as_str(), s)))
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    pub shutdown_timeout: Duration,
    /// Event-loop threads, each with its own listening socket (`SO_REUSEPORT`); at least 1.
    pub workers: usize,
    /// The request head must arrive within this (from the connection's start or the next
    /// request's first byte).
    pub header_read_timeout: Duration,
    /// A kept-alive connection between requests is closed after this.
    pub idle_timeout: Duration,
    /// One request body must be read within this, in all.
    pub body_read_timeout: Duration,
    /// Client connections at once; `None`: derived from the file limit at start.
    pub max_connections: Option<usize>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// After SIGTERM: readiness says 503 and the listener stays open this long.
    pub drain_delay: Duration,
}

/// Trace export.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP traces URL (`<telemetry.otlp_endpoint>/v1/traces`); `None`: off.
    pub otlp_traces_url: Option<String>,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// `None`: off.
    pub listen: Option<std::net::SocketAddr>,
}

/// Gateway behaviour. `None` means "off" for the settings whose 0 switches them off.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    pub response_header_timeout: Duration,
    /// How long a new upstream connection (TCP, and TLS for the direct path) may take.
    pub connect_timeout: Duration,
    /// A streaming answer with no real output this long after the send fails over.
    pub first_token_timeout: Option<Duration>,
    pub stream_keepalive_interval: Option<Duration>,
    pub stream_data_interval_timeout: Option<Duration>,
    pub compact_nonstream_keepalive_interval: Option<Duration>,
    pub nonstream_keepalive_interval: Option<Duration>,
    pub max_account_switches: usize,
    pub max_body_size: usize,
    pub upstream_response_read_max_bytes: usize,
    pub sticky_session_ttl: Option<Duration>,
    pub sticky_slow_ttft: Option<Duration>,
    pub sticky_slow_strikes: u32,
    /// `gateway.probe_interval`: how often accounts out for an error are probed; `None` = off.
    pub probe_interval: Option<Duration>,
    /// `gateway.quota_reserve_percent`: 0 = off.
    pub quota_reserve_percent: u8,
    pub queue_wait_timeout: Duration,
    pub queue_max_waiting: usize,
    pub overload_cooldown: Duration,
    pub max_cooldown: Duration,
    /// Largest upstream SSE event, and largest preamble held back before output.
    pub max_event_bytes: usize,
    /// After the client left, how long the upstream is still read for usage.
    pub orphan_read_timeout: Duration,
    /// After the client left, how many more bytes of the upstream are read for usage.
    pub orphan_read_max_bytes: usize,
    /// What one Responses WebSocket keeps of its conversation (earlier turns' input and output
    /// items) to rebuild a turn that names `previous_response_id`.
    pub websocket_max_history_bytes: usize,
}

/// How subrelay reaches the providers.
#[derive(Debug, Clone, Default)]
pub struct UpstreamConfig {
    /// `upstream.ca_file`, resolved (relative to the config file's directory).
    pub ca_file: Option<PathBuf>,
    /// Its certificates, each checked to be usable as a trust anchor: trusted beside the
    /// built-in roots by every upstream client (relay, proxies, token refresh, sign-in).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
}

/// Sign-in token refresh.
#[derive(Debug, Clone)]
pub struct OAuthConfig {
    pub openai_token_url: String,
    pub openai_client_id: String,
    pub anthropic_token_url: String,
    pub anthropic_client_id: String,
    /// `None`: refresh only when a token is expired or rejected.
    pub refresh_ahead: Option<Duration>,
    /// Where the dashboard and `accounts login` send people to sign an account in.
    pub openai_authorize_url: String,
    /// The redirect URI registered for the client id; the user pastes back where it led.
    pub openai_redirect_uri: String,
    pub anthropic_authorize_url: String,
    pub anthropic_redirect_uri: String,
}

/// The built-in defaults, for tests (the running gateway's come from `validate::config`).
#[cfg(test)]
impl Default for OAuthConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used, reason = "tests: the built-in defaults are valid")]
        validate::oauth(&raw::RawOAuth::default()).expect("the built-in defaults are valid")
    }
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// `None`: the key in `data_dir/encryption.key` (generated on first start).
    pub encryption_key: Option<Secret>,
    /// How often queued usage rows are written to the store.
    pub usage_batch_interval: Duration,
    /// Usage rows kept in memory before they are only in the spool file.
    pub usage_queue_capacity: usize,
    /// Where groups, keys, accounts and usage live.
    pub backend: StorageBackend,
    /// `storage.change_poll_ms`: how often a shared store's change counter is read (`None`:
    /// 300 ms, or 1 s when Redis announces changes).
    pub change_poll: Option<Duration>,
}

/// `storage.backend`.
#[derive(Debug, Clone)]
pub enum StorageBackend {
    /// `subrelay.db` in `storage.data_dir`.
    Sqlite,
    /// A PostgreSQL database that several instances share.
    Postgres {
        /// `storage.postgres_url`: `postgres://user:password@host:port/database`.
        url: Secret,
        /// `storage.postgres_max_connections`.
        max_connections: u32,
    },
}

/// `state.*`: where runtime state lives.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// `None`: in this process (`state.backend: local`); `Some(url)`: in Redis.
    pub redis_url: Option<Secret>,
    pub redis_prefix: String,
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `None`: the admin API is off.
    pub token: Option<Secret>,
    /// How long a dashboard session lasts after sign-in (`admin.session_ttl`).
    pub session_ttl: Duration,
    /// How long the audit trail keeps a row (`admin.audit_retention_days`).
    pub audit_retention: Duration,
}

/// The days the audit trail keeps a row unless `admin.audit_retention_days` says otherwise.
pub const AUDIT_RETENTION_DAYS: u64 = 365;

/// `config.*`.
#[derive(Debug, Clone, Default)]
pub struct ConfigFileConfig {
    /// `config.watch`: reload when the file changes (src/server/watch.rs).
    pub watch: bool,
}

/// How long a dashboard session lasts after sign-in unless `admin.session_ttl` says otherwise.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            session_ttl: SESSION_TTL,
            audit_retention: Duration::from_secs(AUDIT_RETENTION_DAYS * 86_400),
        }
    }
}

/// The built-in defaults, for tests (the running gateway's come from `validate::config`).
#[cfg(test)]
impl Default for GatewayConfig {
    fn default() -> Self {
        #[allow(clippy::expect_used, reason = "tests: the built-in defaults are valid")]
        validate::gateway(&raw::RawGateway::default()).expect("the built-in defaults are valid")
    }
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// One `access` line per request.
    pub access: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigOrigin {
    pub file: Option<PathBuf>,
    /// Dotted keys whose value came from the environment.
    pub from_env: Vec<&'static str>,
    /// The effective configuration as YAML, secrets redacted.
    pub effective_yaml: String,
}

/// A configuration that cannot be used. The message is meant for the person who wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Loads the configuration: built-in defaults, then the file (if any), then the environment.
pub fn load(file: Option<&Path>, env: &dyn Environment) -> Result<Config, ConfigError> {
    let mut tree = match file {
        Some(path) => read_yaml(path)?,
        None => serde_yaml::Value::Mapping(Default::default()),
    };
    let from_env = apply_env_overrides(&mut tree, env)?;
    let raw: RawConfig = serde_path_to_error::deserialize(tree.clone())
        .map_err(|e| explain_type_error(&e, &tree, &from_env))?;
    let effective_yaml = serde_yaml::to_string(&raw).unwrap_or_default();
    let origin = ConfigOrigin {
        file: file.map(Path::to_path_buf),
        from_env,
        effective_yaml,
    };
    validate::config(raw, env, origin)
}

#[allow(
    clippy::disallowed_methods,
    reason = "the configuration is read at start-up, before any request"
)]
fn read_yaml(path: &Path) -> Result<serde_yaml::Value, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let tree: serde_yaml::Value = serde_yaml::from_str(&text)
        .map_err(|e| ConfigError(format!("{} is not valid YAML: {e}", path.display())))?;
    match tree {
        serde_yaml::Value::Null => Ok(serde_yaml::Value::Mapping(Default::default())),
        serde_yaml::Value::Mapping(mut sections) => {
            // `gateway:` with every line below it commented out means "defaults", not an error.
            sections.retain(|_, value| !value.is_null());
            Ok(serde_yaml::Value::Mapping(sections))
        }
        _ => Err(ConfigError(format!(
            "{}: the top level must be a mapping of sections (server:, gateway:, log:, accounts:, api_keys:)",
            path.display()
        ))),
    }
}

/// Writes every set environment override into the YAML tree. Only keys of the reference are
/// read, so a stray variable can never change something unexpected.
fn apply_env_overrides(
    tree: &mut serde_yaml::Value,
    env: &dyn Environment,
) -> Result<Vec<&'static str>, ConfigError> {
    let mut applied = Vec::new();
    for key in reference::KEYS {
        let name = env_name(key.path);
        let Some(text) = env.var(&name) else { continue };
        // Parsed as a YAML scalar so that `5` is a number and `abc` a string, as in the file.
        let value = serde_yaml::from_str::<serde_yaml::Value>(&text)
            .unwrap_or(serde_yaml::Value::String(text));
        set_path(tree, key.path, value).map_err(|section| {
            ConfigError(format!(
                "{name} overrides {}, but `{section}` in the config file is not a mapping",
                key.path
            ))
        })?;
        applied.push(key.path);
    }
    Ok(applied)
}

fn set_path(
    tree: &mut serde_yaml::Value,
    path: &str,
    value: serde_yaml::Value,
) -> Result<(), String> {
    let mut node = tree;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let serde_yaml::Value::Mapping(map) = node else {
            return Err(part.to_owned());
        };
        let key = serde_yaml::Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return Ok(());
        }
        node = map
            .entry(key)
            .or_insert_with(|| serde_yaml::Value::Mapping(Default::default()));
    }
    Ok(())
}

fn get_path<'a>(tree: &'a serde_yaml::Value, path: &str) -> Option<&'a serde_yaml::Value> {
    path.split('.').try_fold(tree, |node, part| node.get(part))
}

/// Turns a deserialisation error into a message that names the key. For keys of the reference
/// the message also gives the value and what is allowed, like the range checks do.
fn explain_type_error(
    err: &serde_path_to_error::Error<serde_yaml::Error>,
    tree: &serde_yaml::Value,
    from_env: &[&'static str],
) -> ConfigError {
    let path = err.path().to_string();
    if let Some(key) = reference::find(&path) {
        let given = get_path(tree, &path)
            .map(show_value)
            .unwrap_or_else(|| "?".to_owned());
        return ConfigError(validate::out_of_range(key.path, &given, from_env));
    }
    let inner = err.inner().to_string();
    if path == "." || path.is_empty() {
        ConfigError(inner)
    } else {
        ConfigError(format!("{path}: {inner}"))
    }
}

/// A value as it would be written in YAML, for error messages.
pub(crate) fn show_value(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => format!("{s:?}"),
        serde_yaml::Value::Null => "null (empty)".to_owned(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_owned())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
