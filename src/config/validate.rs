//! From [`RawConfig`] to [`Config`]: every range, enum and cross-reference is checked here, once.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::raw::{
    RawAccount, RawAdmin, RawApiKey, RawGateway, RawGroup, RawLog, RawMetrics, RawOAuth, RawPrice,
    RawServer, RawState, RawStorage, RawTelemetry, RawUpstream,
};
use super::reference;
use super::{
    env_name, AdminConfig, Config, ConfigError, ConfigFileConfig, ConfigOrigin, Environment,
    GatewayConfig, LogConfig, LogFormat, MetricsConfig, OAuthConfig, RawConfig, ServerConfig,
    StateConfig, StorageBackend, StorageConfig, TelemetryConfig, UpstreamConfig,
};
use crate::domain::KeySpec;
use crate::domain::{
    AccountCredential, AccountKind, AccountSpec, GroupRouting, ModelMap, Platform,
};

pub(super) fn config(
    raw: RawConfig,
    env: &dyn Environment,
    origin: ConfigOrigin,
) -> Result<Config, ConfigError> {
    let from_env = origin.from_env.clone();
    let server = server(&raw.server).map_err(|e| e.with_origin(&from_env))?;
    let gateway = gateway(&raw.gateway).map_err(|e| e.with_origin(&from_env))?;
    let log = log(&raw.log).map_err(|e| e.with_origin(&from_env))?;
    let upstream = upstream(&raw.upstream, &origin)?;
    let oauth = oauth(&raw.oauth).map_err(|e| e.with_origin(&from_env))?;
    let metrics = metrics(&raw.metrics).map_err(|e| e.with_origin(&from_env))?;
    let telemetry = telemetry(&raw.telemetry).map_err(|e| e.with_origin(&from_env))?;
    let mut storage = storage(&raw.storage).map_err(|e| e.with_origin(&from_env))?;
    if !from_env.contains(&"storage.data_dir") {
        if let Some(file) = &origin.file {
            storage.data_dir = beside(file, &storage.data_dir);
        }
    }
    storage.encryption_key = raw
        .storage
        .encryption_key
        .as_ref()
        .map(|r| r.resolve(env))
        .transpose()
        .map_err(|msg| ConfigError(format!("storage.encryption_key: {msg}")))?;
    if let Some(secret) = &storage.encryption_key {
        let text = secret.expose();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ConfigError(out_of_range(
                "storage.encryption_key",
                "<redacted>",
                &from_env,
            )));
        }
    }
    storage.backend = storage_backend(&raw.storage, env, &from_env)?;
    if matches!(storage.backend, StorageBackend::Postgres { .. })
        && storage.encryption_key.is_none()
    {
        return Err(ConfigError(
            "storage.encryption_key: must be set explicitly when storage.backend is postgres (every instance seals and opens the shared credentials with it); generate one with `openssl rand -hex 32` and give every instance the same value, e.g. encryption_key: env:SUBRELAY_ENCRYPTION_KEY".to_owned(),
        ));
    }
    let state = state(&raw.state, env, &from_env)?;
    let prices = prices(&raw.prices)?;
    let admin = admin(&raw.admin, env, &from_env)?;
    let accounts = accounts(&raw.accounts, env)?;
    let api_keys = api_keys(&raw.api_keys, env)?;
    let group_routing = group_routing(&raw.groups)?;
    let groups = groups(&raw.groups, &group_routing, &accounts, &api_keys)?;
    let model_fallback = model_fallback(&raw.groups)?;
    Ok(Config {
        groups,
        group_routing,
        model_fallback,
        server,
        gateway,
        upstream,
        log,
        oauth,
        storage,
        state,
        admin,
        metrics,
        telemetry,
        config_file: ConfigFileConfig {
            watch: raw.config.watch,
        },
        accounts,
        api_keys,
        prices,
        origin,
    })
}

/// A range error of a reference key, before we know whether its value came from the environment.
#[derive(Debug)]
pub(super) struct KeyError {
    /// The key's path in the reference table ([`reference::KEYS`]).
    path: &'static str,
    given: String,
}

impl KeyError {
    fn with_origin(self, from_env: &[&'static str]) -> ConfigError {
        ConfigError(out_of_range(self.path, &self.given, from_env))
    }
}

/// "`gateway.x = 3: must be 0 (off) or 5–30 seconds`", naming the variable when it came from
/// there. What is allowed comes from the reference table (a test checks that every key this
/// module names is in it; a key missing there would only lose the "must be" part).
pub(super) fn out_of_range(path: &'static str, given: &str, from_env: &[&'static str]) -> String {
    let source = if from_env.contains(&path) {
        format!(" (from environment variable {})", env_name(path))
    } else {
        String::new()
    };
    match reference::find(path) {
        Some(doc) => format!("{path} = {given}{source}: must be {}", doc.allowed),
        None => format!("{path} = {given}{source}: out of range"),
    }
}

fn check(path: &'static str, value: i64, ok: bool) -> Result<i64, KeyError> {
    if ok {
        Ok(value)
    } else {
        Err(KeyError {
            path,
            given: value.to_string(),
        })
    }
}

fn in_range(path: &'static str, value: i64, lo: i64, hi: i64) -> Result<u64, KeyError> {
    check(path, value, (lo..=hi).contains(&value)).map(|v| v.unsigned_abs())
}

/// `value` in `lo..=hi`, as the type the setting is kept in (a value the type cannot hold is out
/// of range as well).
fn ranged<T: TryFrom<u64>>(
    path: &'static str,
    value: i64,
    lo: i64,
    hi: i64,
) -> Result<T, KeyError> {
    let out = || KeyError {
        path,
        given: value.to_string(),
    };
    T::try_from(in_range(path, value, lo, hi)?).map_err(|_| out())
}

fn seconds(path: &'static str, value: i64, lo: i64, hi: i64) -> Result<Duration, KeyError> {
    in_range(path, value, lo, hi).map(Duration::from_secs)
}

/// 0 means off; anything else must lie in `lo..=hi` seconds.
fn seconds_or_off(
    path: &'static str,
    value: i64,
    lo: i64,
    hi: i64,
) -> Result<Option<Duration>, KeyError> {
    let v = check(path, value, value == 0 || (lo..=hi).contains(&value))?;
    Ok((v > 0).then(|| Duration::from_secs(v.unsigned_abs())))
}

fn server(raw: &RawServer) -> Result<ServerConfig, KeyError> {
    let host_ok = raw.host.parse::<IpAddr>().is_ok()
        || (!raw.host.is_empty()
            && raw
                .host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if !host_ok {
        return Err(KeyError {
            path: "server.host",
            given: format!("{:?}", raw.host),
        });
    }
    Ok(ServerConfig {
        host: raw.host.clone(),
        port: ranged::<u16>("server.port", raw.port, 0, 65535)?,
        shutdown_timeout: seconds("server.shutdown_timeout", raw.shutdown_timeout, 1, 3600)?,
        workers: match ranged::<usize>("server.workers", raw.workers, 0, 256)? {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        },
        header_read_timeout: seconds(
            "server.header_read_timeout",
            raw.header_read_timeout,
            1,
            3600,
        )?,
        idle_timeout: seconds("server.idle_timeout", raw.idle_timeout, 1, 86400)?,
        body_read_timeout: seconds("server.body_read_timeout", raw.body_read_timeout, 1, 3600)?,
        max_connections: match ranged::<usize>(
            "server.max_connections",
            raw.max_connections,
            0,
            1_000_000,
        )? {
            0 => None,
            n => Some(n),
        },
        trusted_proxies: trusted_proxies(raw.trusted_proxies.as_deref().unwrap_or_default())?,
        drain_delay: seconds("server.drain_delay", raw.drain_delay, 0, 300)?,
    })
}

/// `10.0.0.0/8, 127.0.0.1 ::1`: CIDRs, or bare addresses (one host).
fn trusted_proxies(text: &str) -> Result<Vec<ipnet::IpNet>, KeyError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<ipnet::IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| KeyError {
                    path: "server.trusted_proxies",
                    given: format!("{text:?} ({part:?} is not an IP address or CIDR)"),
                })
        })
        .collect()
}

pub(super) fn gateway(raw: &RawGateway) -> Result<GatewayConfig, KeyError> {
    const GIB4: i64 = 4 * 1024 * 1024 * 1024;
    Ok(GatewayConfig {
        response_header_timeout: seconds(
            "gateway.response_header_timeout",
            raw.response_header_timeout,
            1,
            3600,
        )?,
        connect_timeout: seconds("gateway.connect_timeout", raw.connect_timeout, 1, 300)?,
        first_token_timeout: seconds_or_off(
            "gateway.first_token_timeout",
            raw.first_token_timeout,
            1,
            3600,
        )?,
        stream_keepalive_interval: seconds_or_off(
            "gateway.stream_keepalive_interval",
            raw.stream_keepalive_interval,
            5,
            30,
        )?,
        stream_data_interval_timeout: seconds_or_off(
            "gateway.stream_data_interval_timeout",
            raw.stream_data_interval_timeout,
            30,
            300,
        )?,
        compact_nonstream_keepalive_interval: seconds_or_off(
            "gateway.openai_compact_nonstream_keepalive_interval",
            raw.openai_compact_nonstream_keepalive_interval,
            5,
            60,
        )?,
        nonstream_keepalive_interval: seconds_or_off(
            "gateway.nonstream_keepalive_interval",
            raw.nonstream_keepalive_interval,
            5,
            60,
        )?,
        max_account_switches: in_range(
            "gateway.max_account_switches",
            raw.max_account_switches,
            0,
            100,
        )? as usize,
        max_body_size: in_range("gateway.max_body_size", raw.max_body_size, 1024, GIB4)? as usize,
        upstream_response_read_max_bytes: in_range(
            "gateway.upstream_response_read_max_bytes",
            raw.upstream_response_read_max_bytes,
            1024,
            GIB4,
        )? as usize,
        sticky_session_ttl: seconds_or_off(
            "gateway.sticky_session_ttl",
            raw.sticky_session_ttl,
            60,
            86400,
        )?,
        sticky_slow_ttft: {
            let path = "gateway.sticky_slow_ttft_ms";
            let v = check(
                path,
                raw.sticky_slow_ttft_ms,
                raw.sticky_slow_ttft_ms == 0 || (100..=600_000).contains(&raw.sticky_slow_ttft_ms),
            )?;
            (v > 0).then(|| Duration::from_millis(v.unsigned_abs()))
        },
        sticky_slow_strikes: in_range(
            "gateway.sticky_slow_strikes",
            raw.sticky_slow_strikes,
            1,
            100,
        )? as u32,
        probe_interval: seconds_or_off("gateway.probe_interval", raw.probe_interval, 1, 3600)?,
        quota_reserve_percent: in_range(
            "gateway.quota_reserve_percent",
            raw.quota_reserve_percent,
            0,
            50,
        )? as u8,
        queue_wait_timeout: seconds("gateway.queue_wait_timeout", raw.queue_wait_timeout, 0, 600)?,
        queue_max_waiting: in_range(
            "gateway.queue_max_waiting",
            raw.queue_max_waiting,
            0,
            100_000,
        )? as usize,
        overload_cooldown: seconds("gateway.overload_cooldown", raw.overload_cooldown, 1, 86400)?,
        max_cooldown: seconds("gateway.max_cooldown", raw.max_cooldown, 60, 604_800)?,
        max_event_bytes: in_range(
            "gateway.max_event_bytes",
            raw.max_event_bytes,
            1024,
            1 << 30,
        )? as usize,
        orphan_read_timeout: seconds(
            "gateway.orphan_read_timeout",
            raw.orphan_read_timeout,
            1,
            86_400,
        )?,
        orphan_read_max_bytes: in_range(
            "gateway.orphan_read_max_bytes",
            raw.orphan_read_max_bytes,
            1024,
            GIB4,
        )? as usize,
        websocket_max_history_bytes: in_range(
            "gateway.websocket_max_history_bytes",
            raw.websocket_max_history_bytes,
            65_536,
            1 << 30,
        )? as usize,
    })
}

pub(super) fn oauth(raw: &RawOAuth) -> Result<OAuthConfig, KeyError> {
    let url = |path: &'static str, value: &str| -> Result<String, KeyError> {
        let ok = (value.starts_with("http://") || value.starts_with("https://"))
            && reqwest::Url::parse(value).is_ok();
        if ok {
            Ok(value.to_owned())
        } else {
            Err(KeyError {
                path,
                given: format!("{value:?}"),
            })
        }
    };
    let non_empty = |path: &'static str, value: &str| -> Result<String, KeyError> {
        if value.trim().is_empty() {
            Err(KeyError {
                path,
                given: format!("{value:?}"),
            })
        } else {
            Ok(value.to_owned())
        }
    };
    Ok(OAuthConfig {
        openai_token_url: url("oauth.openai_token_url", &raw.openai_token_url)?,
        openai_client_id: non_empty("oauth.openai_client_id", &raw.openai_client_id)?,
        anthropic_token_url: url("oauth.anthropic_token_url", &raw.anthropic_token_url)?,
        anthropic_client_id: non_empty("oauth.anthropic_client_id", &raw.anthropic_client_id)?,
        refresh_ahead: seconds_or_off("oauth.refresh_ahead", raw.refresh_ahead, 60, 86400)?,
        openai_authorize_url: url("oauth.openai_authorize_url", &raw.openai_authorize_url)?,
        openai_redirect_uri: url("oauth.openai_redirect_uri", &raw.openai_redirect_uri)?,
        anthropic_authorize_url: url(
            "oauth.anthropic_authorize_url",
            &raw.anthropic_authorize_url,
        )?,
        anthropic_redirect_uri: url("oauth.anthropic_redirect_uri", &raw.anthropic_redirect_uri)?,
    })
}

fn storage(raw: &RawStorage) -> Result<StorageConfig, KeyError> {
    if raw.data_dir.trim().is_empty() {
        return Err(KeyError {
            path: "storage.data_dir",
            given: "\"\"".to_owned(),
        });
    }
    Ok(StorageConfig {
        data_dir: raw.data_dir.clone().into(),
        encryption_key: None,
        usage_batch_interval: Duration::from_millis(in_range(
            "storage.usage_batch_interval_ms",
            raw.usage_batch_interval_ms,
            10,
            60_000,
        )?),
        usage_queue_capacity: usize::try_from(in_range(
            "storage.usage_queue_capacity",
            raw.usage_queue_capacity,
            100,
            1_000_000,
        )?)
        .unwrap_or(100_000),
        backend: StorageBackend::Sqlite,
        change_poll: match raw.change_poll_ms {
            0 => None,
            ms => Some(Duration::from_millis(in_range(
                "storage.change_poll_ms",
                ms,
                50,
                600_000,
            )?)),
        },
    })
}

/// `storage.backend` with its PostgreSQL settings: the URL must be there (and say postgres) when
/// the backend is postgres.
fn storage_backend(
    raw: &RawStorage,
    env: &dyn Environment,
    from_env: &[&'static str],
) -> Result<StorageBackend, ConfigError> {
    let max_connections = u32::try_from(
        in_range(
            "storage.postgres_max_connections",
            raw.postgres_max_connections,
            1,
            100,
        )
        .map_err(|e| e.with_origin(from_env))?,
    )
    .unwrap_or(10);
    match raw.backend.as_str() {
        "sqlite" => Ok(StorageBackend::Sqlite),
        "postgres" => {
            let Some(reference) = &raw.postgres_url else {
                return Err(ConfigError(
                    "storage.postgres_url: required when storage.backend is postgres (e.g. env:SUBRELAY_POSTGRES_URL holding postgres://user:password@host:5432/subrelay)".to_owned(),
                ));
            };
            let url = reference
                .resolve(env)
                .map_err(|msg| ConfigError(format!("storage.postgres_url: {msg}")))?;
            let text = url.expose();
            if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
                return Err(ConfigError(out_of_range(
                    "storage.postgres_url",
                    "<redacted>",
                    from_env,
                )));
            }
            Ok(StorageBackend::Postgres {
                url,
                max_connections,
            })
        }
        other => Err(ConfigError(out_of_range(
            "storage.backend",
            &format!("{other:?}"),
            from_env,
        ))),
    }
}

/// `state.*`: a Redis URL is required (and checked) only for `state.backend: redis`.
fn state(
    raw: &RawState,
    env: &dyn Environment,
    from_env: &[&'static str],
) -> Result<StateConfig, ConfigError> {
    let lease_ttl =
        seconds("state.lease_ttl", raw.lease_ttl, 1, 3600).map_err(|e| e.with_origin(from_env))?;
    let prefix = raw.redis_prefix.clone();
    if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError(out_of_range(
            "state.redis_prefix",
            &format!("{prefix:?}"),
            from_env,
        )));
    }
    let redis_url = match raw.backend.as_str() {
        "local" => None,
        "redis" => {
            let Some(reference) = &raw.redis_url else {
                return Err(ConfigError(
                    "state.redis_url: required when state.backend is redis".to_owned(),
                ));
            };
            let url = reference
                .resolve(env)
                .map_err(|msg| ConfigError(format!("state.redis_url: {msg}")))?;
            let text = url.expose();
            if !(text.starts_with("redis://") || text.starts_with("rediss://"))
                || redis::Client::open(text).is_err()
            {
                return Err(ConfigError(out_of_range(
                    "state.redis_url",
                    "<redacted>",
                    from_env,
                )));
            }
            Some(url)
        }
        other => return Err(ConfigError(out_of_range("state.backend", other, from_env))),
    };
    Ok(StateConfig {
        redis_url,
        redis_prefix: prefix,
        lease_ttl,
    })
}

/// `upstream.ca_file`: read and checked now, so a missing file or one without a usable
/// certificate stops the start instead of failing every TLS handshake later.
#[allow(
    clippy::disallowed_methods,
    reason = "upstream.ca_file is read with the configuration, at start-up, before any request"
)]
fn upstream(raw: &RawUpstream, origin: &ConfigOrigin) -> Result<UpstreamConfig, ConfigError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let Some(given) = raw.ca_file.as_deref().filter(|p| !p.trim().is_empty()) else {
        return Ok(UpstreamConfig::default());
    };
    let source = if origin.from_env.contains(&"upstream.ca_file") {
        " (from environment variable UPSTREAM_CA_FILE)".to_owned()
    } else {
        String::new()
    };
    let path = match (&origin.file, origin.from_env.contains(&"upstream.ca_file")) {
        (Some(file), false) => beside(file, std::path::Path::new(given)),
        _ => std::path::PathBuf::from(given),
    };
    let refuse = |why: String| {
        ConfigError(format!(
            "upstream.ca_file = {given:?}{source}: {why} (it must be a PEM file of one or more CA certificates)"
        ))
    };
    let pem =
        std::fs::read(&path).map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| refuse(format!("not PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(refuse("no CERTIFICATE block in it".to_owned()));
    }
    let mut anchors = rustls::RootCertStore::empty();
    for (i, certificate) in certificates.iter().enumerate() {
        anchors.add(certificate.clone()).map_err(|e| {
            refuse(format!(
                "certificate {} cannot be a trust anchor: {e}",
                i + 1
            ))
        })?;
    }
    Ok(UpstreamConfig {
        ca_file: Some(path),
        extra_roots: certificates,
    })
}

/// A relative `storage.data_dir` written in a config file means "next to that file", so the
/// same file finds the same store from any working directory. An absolute path is kept.
fn beside(file: &std::path::Path, dir: &std::path::Path) -> std::path::PathBuf {
    if dir.is_absolute() {
        return dir.to_path_buf();
    }
    let parent = file.parent().unwrap_or(std::path::Path::new(""));
    let base = std::fs::canonicalize(if parent.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        parent
    })
    .unwrap_or_else(|_| parent.to_path_buf());
    dir.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .fold(base, |path, c| path.join(c))
}

fn prices(
    raw: &BTreeMap<String, RawPrice>,
) -> Result<BTreeMap<String, crate::pricing::PriceSpec>, ConfigError> {
    let mut table = BTreeMap::new();
    for (model, p) in raw {
        let spec = crate::pricing::PriceSpec {
            input: p.input,
            cached_input: p.cached_input,
            output: p.output,
            cache_creation: p.cache_creation,
        };
        if let Some((field, v)) = spec.invalid_field() {
            return Err(ConfigError(format!(
                "prices.{model}.{field} = {v}: must be a price in USD per million tokens, 0 or more"
            )));
        }
        table.insert(model.clone(), spec);
    }
    Ok(table)
}

fn admin(
    raw: &RawAdmin,
    env: &dyn Environment,
    from_env: &[&'static str],
) -> Result<AdminConfig, ConfigError> {
    let session_ttl = seconds("admin.session_ttl", raw.session_ttl, 10, 2_592_000)
        .map_err(|e| e.with_origin(from_env))?;
    let audit_days = in_range(
        "admin.audit_retention_days",
        raw.audit_retention_days,
        1,
        36_500,
    )
    .map_err(|e| e.with_origin(from_env))?;
    let audit_retention = Duration::from_secs(audit_days * 86_400);
    let Some(reference) = &raw.token else {
        return Ok(AdminConfig {
            token: None,
            session_ttl,
            audit_retention,
        });
    };
    let token = reference
        .resolve(env)
        .map_err(|msg| ConfigError(format!("admin.token: {msg}")))?;
    if token.expose().chars().count() < 16 {
        return Err(ConfigError(out_of_range(
            "admin.token",
            "<redacted>",
            from_env,
        )));
    }
    Ok(AdminConfig {
        token: Some(token),
        session_ttl,
        audit_retention,
    })
}

fn metrics(raw: &RawMetrics) -> Result<MetricsConfig, KeyError> {
    if raw.listen.is_empty() {
        return Ok(MetricsConfig { listen: None });
    }
    match raw.listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => Ok(MetricsConfig { listen: Some(addr) }),
        Err(_) => Err(KeyError {
            path: "metrics.listen",
            given: format!("{:?}", raw.listen),
        }),
    }
}

fn telemetry(raw: &RawTelemetry) -> Result<TelemetryConfig, KeyError> {
    let base = raw.otlp_endpoint.trim_end_matches('/');
    if base.is_empty() {
        return Ok(TelemetryConfig {
            otlp_traces_url: None,
        });
    }
    let url = format!("{base}/v1/traces");
    let ok = (base.starts_with("http://") || base.starts_with("https://"))
        && url.parse::<http::Uri>().is_ok_and(|u| u.host().is_some());
    if !ok {
        return Err(KeyError {
            path: "telemetry.otlp_endpoint",
            given: format!("{:?}", raw.otlp_endpoint),
        });
    }
    Ok(TelemetryConfig {
        otlp_traces_url: Some(url),
    })
}

fn log(raw: &RawLog) -> Result<LogConfig, KeyError> {
    let format = match raw.format.as_str() {
        "pretty" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => {
            return Err(KeyError {
                path: "log.format",
                given: format!("{other:?}"),
            })
        }
    };
    if !is_log_filter(&raw.level) {
        return Err(KeyError {
            path: "log.level",
            given: format!("{:?}", raw.level),
        });
    }
    Ok(LogConfig {
        format,
        level: raw.level.clone(),
        access: raw.access,
    })
}

/// A level, or a tracing filter whose every directive ends in a level (`info,subrelay=debug`).
/// `EnvFilter` alone would take a bare word such as `verbose` as a target name ("everything of the
/// target `verbose`"), which logs nothing at all; a directive without `=` must be a level here.
fn is_log_filter(text: &str) -> bool {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    let is_level = |word: &str| LEVELS.iter().any(|l| word.trim().eq_ignore_ascii_case(l));
    !text.trim().is_empty()
        && text
            .split(',')
            .all(|directive| match directive.rsplit_once('=') {
                Some((target, level)) => !target.trim().is_empty() && is_level(level),
                None => is_level(directive),
            })
        && tracing_subscriber::EnvFilter::try_new(text).is_ok()
}

fn accounts(raw: &[RawAccount], env: &dyn Environment) -> Result<Vec<AccountSpec>, ConfigError> {
    let mut names = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, account)| {
            let at = |field: &str| format!("accounts[{i}].{field}");
            let fail = |field: &str, msg: String| ConfigError(format!("{}: {msg}", at(field)));
            name_ok(&account.name).map_err(|m| fail("name", m))?;
            if !names.insert(account.name.clone()) {
                return Err(fail(
                    "name",
                    format!(
                        "{:?} is used by another account; names must be unique",
                        account.name
                    ),
                ));
            }
            let platform = account.platform;
            let secret = |field: &str, value: &Option<super::SecretRef>| {
                value
                    .as_ref()
                    .map(|r| r.resolve(env).map_err(|msg| fail(field, msg)))
                    .transpose()
            };
            let (kind, credential) = match account.kind {
                AccountKind::ApiKey => {
                    let api_key = secret("api_key", &account.api_key)?.ok_or_else(|| {
                        fail(
                            "api_key",
                            "is required for an account of type apikey".to_owned(),
                        )
                    })?;
                    (AccountKind::ApiKey, AccountCredential::ApiKey { api_key })
                }
                AccountKind::OAuth => {
                    let access_token =
                        secret("access_token", &account.access_token)?.ok_or_else(|| {
                            fail(
                                "access_token",
                                "is required for an account of type oauth".to_owned(),
                            )
                        })?;
                    (
                        AccountKind::OAuth,
                        AccountCredential::OAuth {
                            access_token,
                            refresh_token: secret("refresh_token", &account.refresh_token)?,
                            chatgpt_account_id: account.chatgpt_account_id.clone(),
                            expires_at: account
                                .expires_at
                                .as_ref()
                                .map(|v| parse_time(v).map_err(|m| fail("expires_at", m)))
                                .transpose()?,
                        },
                    )
                }
            };
            let base_url = match &account.base_url {
                Some(url) => url.trim_end_matches('/').to_owned(),
                None => kind.default_base_url(platform).to_owned(),
            };
            let priority = i32::try_from(account.priority)
                .map_err(|_| fail("priority", "must fit in a 32-bit integer".to_owned()))?;
            let concurrency = u32::try_from(account.concurrency).map_err(|_| {
                fail(
                    "concurrency",
                    "must be 0 (unlimited) or a positive number".to_owned(),
                )
            })?;
            let proxy = secret("proxy", &account.proxy)?;
            let spec = AccountSpec {
                name: account.name.clone(),
                platform,
                kind,
                credential,
                base_url,
                priority,
                concurrency,
                groups: account.groups.clone(),
                enabled: account.enabled,
                models: account.models.clone(),
                model_map: account.model_map.clone(),
                proxy,
                protocols: account.protocols.clone(),
            };
            spec.validate()
                .map_err(|e| fail(e.field(), e.to_string()))?;
            Ok(spec)
        })
        .collect()
}

/// The admin API's name rule ([`crate::domain::valid_name`]): a config name that breaks it could
/// not be managed there (it is a path segment) and would be refused if typed into the dashboard.
fn name_ok(name: &str) -> Result<(), String> {
    if crate::domain::valid_name(name) {
        Ok(())
    } else {
        Err(format!("{name:?}: {}", crate::domain::NAME_RULE))
    }
}

/// `groups[].model_fallback` (`domain::check_model_fallback`), by group.
fn model_fallback(raw: &[RawGroup]) -> Result<super::ModelFallback, ConfigError> {
    let mut out = super::ModelFallback::new();
    for (i, group) in raw.iter().enumerate() {
        crate::domain::check_model_fallback(&group.model_fallback).map_err(|(model, m)| {
            let at = if model.is_empty() {
                format!("groups[{i}].model_fallback")
            } else {
                format!("groups[{i}].model_fallback.{model}")
            };
            ConfigError(format!("{at}: {m}"))
        })?;
        if !group.model_fallback.is_empty() {
            out.insert(group.name.clone(), group.model_fallback.clone());
        }
    }
    Ok(out)
}

/// The declared groups' translation settings (only those that translate or map models).
fn group_routing(raw: &[RawGroup]) -> Result<BTreeMap<String, GroupRouting>, ConfigError> {
    let mut routing = BTreeMap::new();
    for (i, group) in raw.iter().enumerate() {
        let model_map = ModelMap::new(&group.model_map)
            .map_err(|m| ConfigError(format!("groups[{i}].model_map: {m}")))?;
        if group.translate || !model_map.is_empty() {
            let settings = GroupRouting {
                translate: group.translate,
                model_map,
            };
            routing.insert(group.name.clone(), settings);
        }
    }
    Ok(routing)
}

/// Every group named anywhere, with its platform: as declared under `groups:`, else the
/// platform of its accounts, else openai. A group's accounts must all be of its platform,
/// unless the group translates (`translate: true`), which may hold accounts of both.
fn groups(
    raw: &[RawGroup],
    routing: &BTreeMap<String, GroupRouting>,
    accounts: &[AccountSpec],
    keys: &[KeySpec],
) -> Result<BTreeMap<String, Platform>, ConfigError> {
    let mut declared = BTreeMap::new();
    for (i, group) in raw.iter().enumerate() {
        name_ok(&group.name).map_err(|m| ConfigError(format!("groups[{i}].name: {m}")))?;
        let platform = group.platform;
        if declared.insert(group.name.clone(), platform).is_some() {
            return Err(ConfigError(format!(
                "groups[{i}].name: {:?} is declared twice",
                group.name
            )));
        }
    }
    let mut resolved = declared.clone();
    for (i, account) in accounts.iter().enumerate() {
        for group in &account.groups {
            let translates = routing.get(group).is_some_and(|r| r.translate);
            match resolved.get(group) {
                Some(platform) if *platform != account.platform && !translates => {
                    let why = if declared.contains_key(group) {
                        format!(
                            "group {group:?} is declared with platform {}",
                            platform.as_str()
                        )
                    } else {
                        format!("group {group:?} already has {} accounts; declare it under groups: or use another group", platform.as_str())
                    };
                    return Err(ConfigError(format!(
                        "accounts[{i}].groups: a {} account cannot join: {why}",
                        account.platform.as_str()
                    )));
                }
                Some(_) => {}
                None => {
                    resolved.insert(group.clone(), account.platform);
                }
            }
        }
    }
    for key in keys {
        resolved
            .entry(key.group.clone())
            .or_insert(Platform::OpenAi);
    }
    resolved
        .entry("default".to_owned())
        .or_insert(Platform::OpenAi);
    Ok(resolved)
}

fn parse_time(value: &serde_yaml::Value) -> Result<SystemTime, String> {
    match value {
        serde_yaml::Value::Number(n) => n
            .as_u64()
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .ok_or_else(|| format!("{n} is not a unix time in seconds")),
        serde_yaml::Value::String(s) => humantime::parse_rfc3339_weak(s)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})")),
        other => Err(format!(
            "{} must be unix seconds or an RFC 3339 time",
            super::show_value(other)
        )),
    }
}

fn api_keys(raw: &[RawApiKey], env: &dyn Environment) -> Result<Vec<KeySpec>, ConfigError> {
    let mut seen = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, k)| {
            let key = k
                .key
                .resolve(env)
                .map_err(|msg| ConfigError(format!("api_keys[{i}].key: {msg}")))?;
            if !seen.insert(key.expose().to_owned()) {
                return Err(ConfigError(format!(
                    "api_keys[{i}].key: the same key is listed twice"
                )));
            }
            name_ok(&k.group).map_err(|m| ConfigError(format!("api_keys[{i}].group: {m}")))?;
            if let Some(name) = &k.name {
                name_ok(name).map_err(|m| ConfigError(format!("api_keys[{i}].name: {m}")))?;
            }
            let concurrency = u32::try_from(k.concurrency).map_err(|_| {
                ConfigError(format!(
                    "api_keys[{i}].concurrency: must be 0 (unlimited) or a positive number"
                ))
            })?;
            let fail =
                |field: &str, msg: String| ConfigError(format!("api_keys[{i}].{field}: {msg}"));
            let expires_at = k
                .expires_at
                .as_ref()
                .map(|v| parse_time(v).map_err(|m| fail("expires_at", m)))
                .transpose()?
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let rpm_limit = u32::try_from(k.rpm_limit).map_err(|_| {
                fail(
                    "rpm_limit",
                    "must be 0 (unlimited) or a positive number".to_owned(),
                )
            })?;
            for (field, limit) in [
                ("daily_spend_limit", k.daily_spend_limit),
                ("monthly_spend_limit", k.monthly_spend_limit),
            ] {
                if limit.is_some_and(|l| !l.is_finite() || l < 0.0) {
                    return Err(fail(field, "must be a USD amount of 0 or more".to_owned()));
                }
            }
            if k.allowed_models
                .as_ref()
                .is_some_and(|m| m.is_empty() || m.iter().any(|n| n.trim().is_empty()))
            {
                return Err(fail(
                    "allowed_models",
                    "list model names, or leave it out for every model".to_owned(),
                ));
            }
            Ok(KeySpec {
                name: k.name.clone().unwrap_or_else(|| format!("key-{}", i + 1)),
                key,
                group: k.group.clone(),
                enabled: k.enabled,
                concurrency,
                limits: crate::domain::KeyLimits {
                    expires_at,
                    rpm_limit,
                    daily_spend_limit: k.daily_spend_limit,
                    monthly_spend_limit: k.monthly_spend_limit,
                    allowed_models: k.allowed_models.clone(),
                },
            })
        })
        .collect()
}
