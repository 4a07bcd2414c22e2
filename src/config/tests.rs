//! Loading: defaults, file, environment, and the wording of every kind of refusal.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::collections::BTreeMap;
use std::io::Write;

use super::*;

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file
}

fn load_text(text: &str, env: &MapEnv) -> Result<Config, ConfigError> {
    let file = write_config(text);
    load(Some(file.path()), env)
}

#[test]
fn no_file_gives_working_defaults() {
    let config = load(None, &MapEnv::default()).unwrap();
    assert_eq!(config.server.host, "127.0.0.1");
    assert_eq!(config.server.port, 8080);
    assert_eq!(
        config.gateway.response_header_timeout,
        Duration::from_secs(600)
    );
    assert_eq!(
        config.gateway.stream_keepalive_interval,
        Some(Duration::from_secs(10))
    );
    assert_eq!(
        config.gateway.stream_data_interval_timeout,
        Some(Duration::from_secs(180))
    );
    assert_eq!(config.gateway.compact_nonstream_keepalive_interval, None);
    assert_eq!(config.gateway.nonstream_keepalive_interval, None);
    assert_eq!(config.gateway.max_account_switches, 10);
    assert_eq!(config.gateway.max_body_size, 256 << 20);
    assert_eq!(config.gateway.upstream_response_read_max_bytes, 128 << 20);
    assert_eq!(config.log.format, LogFormat::Pretty);
    assert!(config.accounts.is_empty() && config.api_keys.is_empty());
}

/// The reference table's defaults are the code's defaults, and it lists every scalar key.
#[test]
fn reference_table_matches_the_code() {
    let defaults = serde_yaml::to_value(RawConfig::default()).unwrap();
    let mut scalars = BTreeMap::new();
    flatten("", &defaults, &mut scalars);
    let documented: BTreeMap<String, String> = reference::KEYS
        .iter()
        .map(|k| (k.path.to_owned(), k.default.to_owned()))
        .collect();
    assert_eq!(scalars, documented);
}

fn flatten(prefix: &str, value: &serde_yaml::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_yaml::Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let path = if prefix.is_empty() {
                    k.to_owned()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
        // Lists (accounts, api_keys) are not scalar keys.
        serde_yaml::Value::Sequence(_) => {}
        // An optional key without a default (admin.token) is documented as empty.
        serde_yaml::Value::Null => {
            out.insert(prefix.to_owned(), String::new());
        }
        other => {
            out.insert(
                prefix.to_owned(),
                serde_yaml::to_string(other).unwrap().trim().to_owned(),
            );
        }
    }
}

/// docs/CONFIG.md carries the table rendered from the reference, so it cannot drift.
#[test]
fn config_doc_carries_the_reference_table() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/CONFIG.md")).unwrap();
    let table = reference::markdown_table();
    assert!(
        doc.contains(&table),
        "docs/CONFIG.md is out of date; replace its key table with the output of `subrelay config-reference`:\n{table}"
    );
}

#[test]
fn file_then_env_override() {
    let env = MapEnv::from([
        ("GATEWAY_STREAM_KEEPALIVE_INTERVAL", "15"),
        ("SERVER_PORT", "9999"),
    ]);
    let config = load_text(
        "server:\n  port: 7000\ngateway:\n  stream_keepalive_interval: 20\n  max_account_switches: 3\n",
        &env,
    )
    .unwrap();
    assert_eq!(config.server.port, 9999);
    assert_eq!(
        config.gateway.stream_keepalive_interval,
        Some(Duration::from_secs(15))
    );
    assert_eq!(config.gateway.max_account_switches, 3);
    assert_eq!(
        config.origin.from_env,
        vec!["server.port", "gateway.stream_keepalive_interval"]
    );
}

#[test]
fn range_errors_name_key_value_and_allowed_values() {
    let err = load_text(
        "gateway:\n  stream_keepalive_interval: 3\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "gateway.stream_keepalive_interval = 3: must be 0 (off) or 5–30 seconds"
    );
    let err = load(
        None,
        &MapEnv::from([("GATEWAY_STREAM_DATA_INTERVAL_TIMEOUT", "20")]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "gateway.stream_data_interval_timeout = 20 (from environment variable GATEWAY_STREAM_DATA_INTERVAL_TIMEOUT): must be 0 (off) or 30–300 seconds"
    );
}

#[test]
fn compact_keepalive_interval_accepts_0_5_60_and_refuses_the_rest() {
    const KEY: &str = "gateway.openai_compact_nonstream_keepalive_interval";
    const ENV: &str = "GATEWAY_OPENAI_COMPACT_NONSTREAM_KEEPALIVE_INTERVAL";
    for (given, want) in [("0", None), ("5", Some(5)), ("60", Some(60))] {
        let from_file = load_text(
            &format!("gateway:\n  openai_compact_nonstream_keepalive_interval: {given}\n"),
            &MapEnv::default(),
        )
        .unwrap();
        let from_env = load(None, &MapEnv::from([(ENV, given)])).unwrap();
        for config in [from_file, from_env] {
            assert_eq!(
                config.gateway.compact_nonstream_keepalive_interval,
                want.map(Duration::from_secs)
            );
        }
    }
    for given in ["-1", "4", "61", "abc"] {
        let shown = if given == "abc" { "\"abc\"" } else { given };
        let err = load_text(
            &format!("gateway:\n  openai_compact_nonstream_keepalive_interval: {given}\n"),
            &MapEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("{KEY} = {shown}: must be 0 (off) or 5–60 seconds")
        );
        let err = load(None, &MapEnv::from([(ENV, given)]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("{KEY} = {shown} (from environment variable {ENV}): must be 0 (off) or 5–60 seconds")
        );
    }
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let err = load_text("gateway:\n  stream_keepalive: 3\n", &MapEnv::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "gateway.stream_keepalive: unknown field `stream_keepalive`, expected one of"
        ),
        "{err}"
    );
    let err = load_text(
        "accounts:\n  - name: a\n    platform: openai\n    type: apikey\n    api_key: k\n    colour: red\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("accounts[0].colour: unknown field `colour`"),
        "{err}"
    );
}

#[test]
fn accounts_and_keys_are_validated_and_secrets_resolved() {
    let env = MapEnv::from([("UPSTREAM", "sk-upstream"), ("CLIENT", "sk-client")]);
    let config = load_text(
        r#"
accounts:
  - name: codex
    platform: openai
    type: oauth
    access_token: inline-token
    chatgpt_account_id: acc-1
    expires_at: 2030-01-01T00:00:00Z
    priority: 1
  - name: api
    platform: openai
    type: apikey
    api_key: env:UPSTREAM
    base_url: http://127.0.0.1:9/v1/
    concurrency: 4
    groups: [default, team]
    models: [gpt-5]
api_keys:
  - key: env:CLIENT
    name: alice
"#,
        &env,
    )
    .unwrap();
    assert_eq!(config.accounts.len(), 2);
    let codex = &config.accounts[0];
    assert_eq!(codex.base_url, "https://chatgpt.com/backend-api/codex");
    assert_eq!(codex.kind, crate::domain::AccountKind::OAuth);
    let api = &config.accounts[1];
    assert_eq!(api.base_url, "http://127.0.0.1:9/v1");
    assert_eq!(api.credential.bearer().expose(), "sk-upstream");
    assert_eq!(api.concurrency, 4);
    assert_eq!(config.api_keys[0].key.expose(), "sk-client");
    assert_eq!(config.api_keys[0].group, "default");
    // The effective config never shows an inline secret, and shows references as written.
    let shown = &config.origin.effective_yaml;
    assert!(!shown.contains("inline-token"), "{shown}");
    assert!(
        shown.contains("env:UPSTREAM") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn account_errors_name_the_field() {
    let cases = [
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey}\n",
            "accounts[0].api_key: is required for an account of type apikey",
        ),
        (
            "accounts:\n  - {name: a, platform: gemini, type: apikey, api_key: k}\n",
            "accounts[0].platform: \"gemini\" is not supported: must be openai or anthropic",
        ),
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: k}\n  - {name: a, platform: openai, type: apikey, api_key: k}\n",
            "accounts[1].name: \"a\" is used by another account; names must be unique",
        ),
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: 'env:NOPE'}\n",
            "accounts[0].api_key: environment variable NOPE is not set",
        ),
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: k, base_url: 'ftp://x'}\n",
            "accounts[0].base_url: \"ftp://x\" is not an http:// or https:// URL",
        ),
        (
            "api_keys:\n  - {key: same}\n  - {key: same}\n",
            "api_keys[1].key: the same key is listed twice",
        ),
        (
            "log:\n  format: xml\n",
            "log.format = \"xml\": must be pretty or json",
        ),
    ];
    for (text, want) in cases {
        let err = load_text(text, &MapEnv::default()).unwrap_err().to_string();
        assert_eq!(err, want);
    }
}

#[test]
fn unreadable_or_malformed_files_are_explained() {
    let err = load(
        Some(std::path::Path::new("/nonexistent/subrelay.yaml")),
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("cannot read config file /nonexistent/subrelay.yaml"),
        "{err}"
    );
    let err = load_text("- just\n- a list\n", &MapEnv::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("the top level must be a mapping"), "{err}");
}

#[test]
fn api_key_limits_prices_and_storage_keys_are_read_and_checked() {
    let config = load_text(
        "api_keys:\n  - key: sk-limited-key\n    expires_at: 2030-01-01T00:00:00Z\n    rpm_limit: 30\n    daily_spend_limit: 2.5\n    allowed_models: [gpt-5]\nprices:\n  local-model: {input: 1, output: 2}\nstorage:\n  encryption_key: env:ENC\n  usage_batch_interval_ms: 250\n",
        &MapEnv::from([("ENC", "ab".repeat(32).as_str())]),
    )
    .unwrap();
    let limits = &config.api_keys[0].limits;
    assert_eq!(limits.expires_at, Some(1_893_456_000));
    assert_eq!(limits.rpm_limit, 30);
    assert_eq!(limits.daily_spend_limit, Some(2.5));
    assert_eq!(
        limits.allowed_models.as_deref(),
        Some(&["gpt-5".to_owned()][..])
    );
    let table = config.price_table();
    let price = table.price("local-model").unwrap();
    assert_eq!(
        (price.input, price.cached_input, price.output),
        (1.0, 1.0, 2.0)
    );
    assert!(table.price("gpt-5").is_some(), "defaults stay");
    assert_eq!(
        config.storage.encryption_key.as_ref().unwrap().expose(),
        "ab".repeat(32)
    );
    assert_eq!(
        config.storage.usage_batch_interval,
        Duration::from_millis(250)
    );

    for (yaml, wanted) in [
        (
            "api_keys:\n  - {key: k, rpm_limit: -1}\n",
            "api_keys[0].rpm_limit",
        ),
        (
            "api_keys:\n  - {key: k, daily_spend_limit: -2}\n",
            "api_keys[0].daily_spend_limit",
        ),
        (
            "api_keys:\n  - {key: k, allowed_models: []}\n",
            "api_keys[0].allowed_models",
        ),
        ("prices:\n  m: {input: -1, output: 1}\n", "prices.m.input"),
        (
            "storage:\n  usage_queue_capacity: 5\n",
            "storage.usage_queue_capacity = 5",
        ),
        (
            "storage:\n  encryption_key: abc\n",
            "storage.encryption_key = <redacted>: must be",
        ),
    ] {
        let err = load_text(yaml, &MapEnv::default()).unwrap_err().to_string();
        assert!(err.contains(wanted), "{yaml}: {err}");
    }
}

#[test]
fn admin_session_ttl_is_read_and_bounded() {
    let default = load(None, &MapEnv::default()).unwrap();
    assert_eq!(default.admin.session_ttl, Duration::from_secs(12 * 3600));
    let set = load_text("admin:\n  session_ttl: 600\n", &MapEnv::default()).unwrap();
    assert_eq!(set.admin.session_ttl, Duration::from_secs(600));
    let from_env = load(None, &MapEnv::from([("ADMIN_SESSION_TTL", "3600")])).unwrap();
    assert_eq!(from_env.admin.session_ttl, Duration::from_secs(3600));
    for given in ["9", "2592001", "-1"] {
        let err = load_text(
            &format!("admin:\n  session_ttl: {given}\n"),
            &MapEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("admin.session_ttl = {given}: must be 10–2592000 seconds")
        );
    }
}

#[test]
fn audit_retention_and_config_watch_are_read_and_bounded() {
    let default = load(None, &MapEnv::default()).unwrap();
    assert_eq!(
        default.admin.audit_retention,
        Duration::from_secs(365 * 86_400)
    );
    assert!(!default.config_file.watch, "config.watch is off by default");
    let set = load_text(
        "admin:\n  audit_retention_days: 30\nconfig:\n  watch: true\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(set.admin.audit_retention, Duration::from_secs(30 * 86_400));
    assert!(set.config_file.watch);
    let from_env = load(
        None,
        &MapEnv::from([
            ("ADMIN_AUDIT_RETENTION_DAYS", "7"),
            ("CONFIG_WATCH", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(
        from_env.admin.audit_retention,
        Duration::from_secs(7 * 86_400)
    );
    assert!(from_env.config_file.watch);
    for given in ["0", "36501", "-3"] {
        let err = load_text(
            &format!("admin:\n  audit_retention_days: {given}\n"),
            &MapEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("admin.audit_retention_days = {given}: must be 1–36500 days")
        );
    }
}

#[test]
fn config_names_pass_the_admin_api_name_check() {
    let rule = crate::domain::NAME_RULE;
    for (yaml, wanted) in [
        (
            "accounts:\n  - {name: 'a/b', platform: openai, type: apikey, api_key: k}\n",
            format!("accounts[0].name: \"a/b\": {rule}"),
        ),
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: k, groups: ['team one']}\n",
            format!("accounts[0].groups: \"team one\": {rule}"),
        ),
        (
            "groups:\n  - {name: '', platform: openai}\n",
            format!("groups[0].name: \"\": {rule}"),
        ),
        (
            "api_keys:\n  - {key: k, name: '=HYPERLINK(1)'}\n",
            format!("api_keys[0].name: \"=HYPERLINK(1)\": {rule}"),
        ),
        (
            "api_keys:\n  - {key: k, group: 'x?y'}\n",
            format!("api_keys[0].group: \"x?y\": {rule}"),
        ),
    ] {
        let err = load_text(yaml, &MapEnv::default()).unwrap_err().to_string();
        assert_eq!(err, wanted, "{yaml}");
    }
    // Positive control: the same shapes with valid names load.
    load_text(
        "groups:\n  - {name: team.one, platform: openai}\naccounts:\n  - {name: a-b_c@d, platform: openai, type: apikey, api_key: k, groups: [team.one]}\napi_keys:\n  - {key: k, name: alice, group: team.one}\n",
        &MapEnv::default(),
    )
    .unwrap();
}

#[test]
fn client_limits_are_read_and_checked() {
    let config = load_text(
        "server:\n  header_read_timeout: 1\n  idle_timeout: 2\n  body_read_timeout: 3\n  max_connections: 4\n  trusted_proxies: '10.0.0.0/8, 127.0.0.1 ::1'\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(1));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(2));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(3));
    assert_eq!(config.server.max_connections, Some(4));
    let nets: Vec<String> = config
        .server
        .trusted_proxies
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    let defaults = load_text("", &MapEnv::default()).unwrap();
    assert_eq!(defaults.server.max_connections, None);
    assert!(defaults.server.trusted_proxies.is_empty());
    let env = MapEnv::from([("SERVER_TRUSTED_PROXIES", "192.168.0.0/16")]);
    assert_eq!(load_text("", &env).unwrap().server.trusted_proxies.len(), 1);
    for (yaml, wanted) in [
        ("server:\n  header_read_timeout: 0\n", "server.header_read_timeout = 0: must be 1–3600 seconds"),
        ("server:\n  max_connections: -1\n", "server.max_connections = -1: must be 0 (derived from the file limit) or 1–1000000"),
        (
            "server:\n  trusted_proxies: '10.0.0.0/8, nginx'\n",
            "server.trusted_proxies = \"10.0.0.0/8, nginx\" (\"nginx\" is not an IP address or CIDR): must be",
        ),
    ] {
        let err = load_text(yaml, &MapEnv::default()).unwrap_err().to_string();
        assert!(err.starts_with(wanted), "{yaml}: {err}");
    }
}

// === first-hour: log levels and where the data directory is ===

#[test]
fn log_level_accepts_levels_and_filters_and_refuses_other_words() {
    for good in [
        "info",
        "DEBUG",
        "off",
        "info,subrelay=debug",
        "warn,usage=debug",
    ] {
        let config = load(None, &MapEnv::from([("LOG_LEVEL", good)]));
        assert!(config.is_ok(), "{good}: {:?}", config.err());
    }
    for bad in ["verbose", "info,verbose", "subrelay=loud", "", "=info"] {
        let err = load_text(&format!("log:\n  level: {bad:?}\n"), &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "log.level = {bad:?}: must be a level (trace, debug, info, warn, error, off)"
            )),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_relative_data_dir_is_next_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subrelay.yaml");
    std::fs::write(&file, "storage:\n  data_dir: ./state/db\n").unwrap();
    let config = load(Some(&file), &MapEnv::default()).unwrap();
    let base = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(config.storage.data_dir, base.join("state").join("db"));
    // The default too.
    std::fs::write(&file, "").unwrap();
    let config = load(Some(&file), &MapEnv::default()).unwrap();
    assert_eq!(config.storage.data_dir, base.join("data"));
    // An absolute path is kept; without a file, and from the environment, the working directory.
    std::fs::write(&file, "storage:\n  data_dir: /srv/subrelay\n").unwrap();
    let config = load(Some(&file), &MapEnv::default()).unwrap();
    assert_eq!(
        config.storage.data_dir,
        std::path::Path::new("/srv/subrelay")
    );
    let config = load(None, &MapEnv::default()).unwrap();
    assert_eq!(config.storage.data_dir, std::path::Path::new("./data"));
    let config = load(Some(&file), &MapEnv::from([("STORAGE_DATA_DIR", "rel")])).unwrap();
    assert_eq!(config.storage.data_dir, std::path::Path::new("rel"));
}

#[test]
fn metrics_listen_and_drain_delay_are_read_and_checked() {
    let defaults = load_text("", &MapEnv::default()).unwrap();
    assert_eq!(defaults.metrics.listen, None, "metrics are off by default");
    assert_eq!(defaults.server.drain_delay, Duration::ZERO);
    let config = load_text(
        "metrics:\n  listen: 127.0.0.1:9464\nserver:\n  drain_delay: 15\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        config.metrics.listen,
        Some("127.0.0.1:9464".parse().unwrap())
    );
    assert_eq!(config.server.drain_delay, Duration::from_secs(15));
    let env = MapEnv::from([("METRICS_LISTEN", "[::1]:9000")]);
    assert!(load_text("", &env).unwrap().metrics.listen.is_some());
    for (yaml, wanted) in [
        (
            "metrics:\n  listen: localhost\n",
            "metrics.listen = \"localhost\": must be empty (off) or an IP address and port",
        ),
        (
            "server:\n  drain_delay: 301\n",
            "server.drain_delay = 301: must be 0–300 seconds",
        ),
    ] {
        let err = load_text(yaml, &MapEnv::default()).unwrap_err().to_string();
        assert!(err.starts_with(wanted), "{yaml}: {err}");
    }
}

#[test]
fn telemetry_otlp_endpoint_is_off_by_default_and_checked() {
    let defaults = load_text("", &MapEnv::default()).unwrap();
    assert_eq!(defaults.telemetry.otlp_traces_url, None);
    let config = load_text(
        "telemetry:\n  otlp_endpoint: http://127.0.0.1:4318/\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        config.telemetry.otlp_traces_url.as_deref(),
        Some("http://127.0.0.1:4318/v1/traces")
    );
    for given in ["127.0.0.1:4318", "ftp://collector", "http://"] {
        let yaml = format!("telemetry:\n  otlp_endpoint: '{given}'\n");
        let err = load_text(&yaml, &MapEnv::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "telemetry.otlp_endpoint = {given:?}: must be empty (off) or an http:// or https:// URL"
            )),
            "{given}: {err}"
        );
    }
}

/// Every key the validator names in a range error is in the reference table, so each error says
/// what is allowed (a missing one would fall back to "out of range").
#[test]
fn every_key_the_validator_names_is_in_the_reference() {
    let source = include_str!("validate.rs");
    let mut named = Vec::new();
    for piece in source.split('"').skip(1).step_by(2) {
        let is_key = piece.split_once('.').is_some_and(|(section, rest)| {
            ["server", "gateway", "storage", "admin", "log", "oauth"].contains(&section)
                && !rest.is_empty()
                && rest.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        });
        if is_key {
            named.push(piece);
        }
    }
    assert!(named.len() > 10, "too few keys found: {named:?}");
    let missing: Vec<_> = named
        .iter()
        .filter(|path| super::reference::find(path).is_none())
        .collect();
    assert!(missing.is_empty(), "not in the reference: {missing:?}");
}

/// A value the kept type cannot hold is refused with the reference's "must be", not a panic.
#[test]
fn out_of_range_names_what_is_allowed() {
    let message = super::validate::out_of_range("server.port", "70000", &[]);
    assert!(
        message.starts_with("server.port = 70000: must be "),
        "{message}"
    );
    let unknown = super::validate::out_of_range("server.nothing", "1", &[]);
    assert_eq!(unknown, "server.nothing = 1: out of range");
}

/// `upstream.ca_file` is read at load: a relative path is next to the config file, its
/// certificates become extra roots; a missing file or one without a certificate is refused with
/// the key named.
#[test]
fn the_upstream_ca_file_is_read_and_checked_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("subrelay.yaml");
    let ca = subrelay_mock::TestCa::new("config test CA").unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca.cert_pem).unwrap();
    std::fs::write(&file, "upstream:\n  ca_file: ca.pem\n").unwrap();
    let config = load(Some(&file), &MapEnv::default()).unwrap();
    assert_eq!(config.upstream.extra_roots.len(), 1);
    let base = std::fs::canonicalize(dir.path()).unwrap();
    assert_eq!(config.upstream.ca_file, Some(base.join("ca.pem")));

    let defaults = load_text("", &MapEnv::default()).unwrap();
    assert!(defaults.upstream.ca_file.is_none() && defaults.upstream.extra_roots.is_empty());

    std::fs::write(&file, "upstream:\n  ca_file: missing.pem\n").unwrap();
    let err = load(Some(&file), &MapEnv::default()).unwrap_err().0;
    assert!(
        err.starts_with("upstream.ca_file = \"missing.pem\": cannot read"),
        "{err}"
    );
    std::fs::write(dir.path().join("empty.pem"), "no pem here\n").unwrap();
    let env = MapEnv::from([("UPSTREAM_CA_FILE", "empty.pem")]);
    let err = load(None, &env).unwrap_err().0;
    assert!(
        err.contains("(from environment variable UPSTREAM_CA_FILE)"),
        "{err}"
    );
    // Relative to the working directory from the environment: not found there.
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn connect_and_first_token_timeouts_default_and_refuse_out_of_range() {
    let config = load(None, &MapEnv::default()).unwrap();
    assert_eq!(config.gateway.connect_timeout, Duration::from_secs(10));
    assert_eq!(config.gateway.first_token_timeout, None, "off by default");
    let config = load_text(
        "gateway:\n  connect_timeout: 3\n  first_token_timeout: 45\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(config.gateway.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        config.gateway.first_token_timeout,
        Some(Duration::from_secs(45))
    );
    let err = load(None, &MapEnv::from([("GATEWAY_CONNECT_TIMEOUT", "0")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "gateway.connect_timeout = 0 (from environment variable GATEWAY_CONNECT_TIMEOUT): must be 1–300 seconds"
    );
    let err = load_text(
        "gateway:\n  first_token_timeout: 3601\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "gateway.first_token_timeout = 3601: must be 0 (off) or 1–3600 seconds"
    );
}

#[test]
fn quota_reserve_percent_defaults_off_and_refuses_more_than_half() {
    let config = load(None, &MapEnv::default()).unwrap();
    assert_eq!(config.gateway.quota_reserve_percent, 0);
    let config = load(
        None,
        &MapEnv::from([("GATEWAY_QUOTA_RESERVE_PERCENT", "5")]),
    )
    .unwrap();
    assert_eq!(config.gateway.quota_reserve_percent, 5);
    let err = load_text(
        "gateway:\n  quota_reserve_percent: 51\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "gateway.quota_reserve_percent = 51: must be 0 (off) or 1–50 percent"
    );
}

#[test]
fn model_fallback_is_kept_by_group_and_refuses_a_model_falling_back_to_itself() {
    let config = load_text(
        "groups:\n  - {name: team, platform: openai, model_fallback: {gpt-5.5: [gpt-5.4, gpt-5.2]}}\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert_eq!(
        config.model_fallback["team"]["gpt-5.5"],
        ["gpt-5.4", "gpt-5.2"]
    );
    let err = load_text(
        "groups:\n  - {name: team, platform: openai, model_fallback: {gpt-5.5: [gpt-5.5]}}\n",
        &MapEnv::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("groups[0].model_fallback.gpt-5.5: a model cannot fall back to itself"),
        "{err}"
    );
}

/// Issue 16: `groups[].translate`, `groups[].model_map` and `accounts[].protocols`.
#[test]
fn translation_settings_are_read_and_defaulted() {
    let config = load_text(
        "groups:\n  - {name: mixed, platform: anthropic, translate: true, model_map: {'claude-*': gpt-5.1-codex}}\n  - {name: plain, platform: openai}\naccounts:\n  - {name: codex, platform: openai, type: oauth, access_token: t, groups: [mixed]}\n  - {name: claude, platform: anthropic, type: apikey, api_key: k, groups: [mixed]}\n  - {name: deepseek, platform: openai, type: apikey, api_key: k, protocols: [chat], groups: [plain]}\n",
        &MapEnv::default(),
    )
    .unwrap();
    let mixed = &config.group_routing["mixed"];
    assert!(mixed.translate);
    assert_eq!(
        mixed.model_map.map("claude-sonnet-4-5"),
        Some("gpt-5.1-codex")
    );
    assert!(
        !config.group_routing.contains_key("plain"),
        "no translation, no map: nothing to keep"
    );
    let protocols = |name: &str| {
        let a = config.accounts.iter().find(|a| a.name == name).unwrap();
        a.protocols().to_vec()
    };
    use crate::domain::Protocol;
    assert_eq!(protocols("codex"), [Protocol::Responses]);
    assert_eq!(protocols("claude"), [Protocol::Messages]);
    assert_eq!(protocols("deepseek"), [Protocol::Chat]);
}

#[test]
fn translation_settings_are_refused_with_their_field() {
    let cases = [
        (
            "accounts:\n  - {name: a, platform: openai, type: apikey, api_key: k, protocols: [grpc]}\n",
            "\"grpc\" is not supported: must be responses, chat or messages",
        ),
        (
            "accounts:\n  - {name: a, platform: openai, type: oauth, access_token: t, protocols: [chat]}\n",
            "accounts[0].protocols: an openai oauth account cannot speak chat: allowed are responses",
        ),
        (
            "accounts:\n  - {name: a, platform: anthropic, type: apikey, api_key: k, protocols: []}\n",
            "accounts[0].protocols: must list at least one of: messages",
        ),
        (
            "groups:\n  - {name: g, platform: openai, model_map: {'gpt-*': ''}}\n",
            "groups[0].model_map: \"gpt-*\" maps to an empty model name",
        ),
        (
            // Without translate, a group still holds one platform only.
            "groups:\n  - {name: g, platform: openai}\naccounts:\n  - {name: a, platform: anthropic, type: apikey, api_key: k, groups: [g]}\n",
            "accounts[0].groups: a anthropic account cannot join: group \"g\" is declared with platform openai",
        ),
    ];
    for (text, said) in cases {
        let err = load_text(text, &MapEnv::default()).unwrap_err().to_string();
        assert!(err.contains(said), "{err}\n  should contain: {said}");
    }
}

#[test]
fn the_postgres_backend_needs_its_url_and_an_explicit_encryption_key() {
    let key = "ab".repeat(32);
    let url = "postgres://subrelay:pg-password-123@db:5432/subrelay";
    // The default is SQLite.
    let default = load(None, &MapEnv::default()).unwrap();
    assert!(matches!(default.storage.backend, StorageBackend::Sqlite));
    // Through the environment, the URL as a reference: read, with the pool size.
    let env = MapEnv::from([
        ("STORAGE_BACKEND", "postgres"),
        ("STORAGE_POSTGRES_URL", "env:PG_URL"),
        ("PG_URL", url),
        ("STORAGE_POSTGRES_MAX_CONNECTIONS", "25"),
        ("STORAGE_ENCRYPTION_KEY", key.as_str()),
    ]);
    let config = load(None, &env).unwrap();
    match &config.storage.backend {
        StorageBackend::Postgres {
            url: got,
            max_connections,
        } => {
            assert_eq!(got.expose(), url);
            assert_eq!(*max_connections, 25);
        }
        other => panic!("{other:?}"),
    }
    // Inline, the URL (with its password) is redacted in the effective configuration.
    let inline = load_text(
        &format!("storage:\n  backend: postgres\n  postgres_url: {url}\n  encryption_key: {key}\n"),
        &MapEnv::default(),
    )
    .unwrap();
    let shown = &inline.origin.effective_yaml;
    assert!(!shown.contains("pg-password-123"), "{shown}");
    assert!(shown.contains("backend: postgres"), "{shown}");

    for (yaml, wanted) in [
        (
            format!("storage:\n  backend: postgres\n  postgres_url: {url}\n"),
            "storage.encryption_key: must be set explicitly when storage.backend is postgres",
        ),
        (
            format!("storage:\n  backend: postgres\n  encryption_key: {key}\n"),
            "storage.postgres_url: required when storage.backend is postgres",
        ),
        (
            format!("storage:\n  backend: postgres\n  postgres_url: mysql://x\n  encryption_key: {key}\n"),
            "storage.postgres_url = <redacted>: must be",
        ),
        (
            "storage:\n  backend: mongo\n".to_owned(),
            "storage.backend = \"mongo\": must be sqlite or postgres",
        ),
        (
            "storage:\n  postgres_max_connections: 0\n".to_owned(),
            "storage.postgres_max_connections = 0: must be 1–100",
        ),
        (
            "storage:\n  change_poll_ms: 10\n".to_owned(),
            "storage.change_poll_ms = 10: must be 0 (automatic), or 50–600000 milliseconds",
        ),
    ] {
        let err = load_text(&yaml, &MapEnv::default()).unwrap_err().to_string();
        assert!(err.contains(wanted), "{yaml}: {err}");
        assert!(!err.contains("pg-password-123"), "{err}");
    }
}

#[test]
fn the_state_backend_is_local_unless_redis_is_named_with_a_url() {
    let config = load_text("", &MapEnv::default()).unwrap();
    assert!(config.state.redis_url.is_none());
    assert_eq!(config.state.redis_prefix, "subrelay:");
    assert_eq!(config.state.lease_ttl, Duration::from_secs(30));
    let err = load_text("state:\n  backend: redis\n", &MapEnv::default()).unwrap_err();
    assert!(err.0.contains("state.redis_url: required"), "{err}");
    let err = load_text("state:\n  backend: etcd\n", &MapEnv::default()).unwrap_err();
    assert!(err.0.contains("state.backend = etcd"), "{err}");
    let err = load_text(
        "state:\n  backend: redis\n  redis_url: http://x:1\n",
        &MapEnv::default(),
    )
    .unwrap_err();
    assert!(err.0.contains("state.redis_url = <redacted>"), "{err}");
}

#[test]
fn the_redis_url_may_come_from_the_environment_and_is_never_shown() {
    let env = MapEnv::from([
        ("STATE_BACKEND", "redis"),
        ("STATE_LEASE_TTL", "2"),
        (
            "REDIS_URL_FOR_TEST",
            "redis://:hunter2-secret@127.0.0.1:6379/3",
        ),
    ]);
    let config = load_text(
        "state:\n  redis_url: env:REDIS_URL_FOR_TEST\n  redis_prefix: 'gw-a:'\n",
        &env,
    )
    .unwrap();
    assert_eq!(
        config.state.redis_url.as_ref().map(|s| s.expose()),
        Some("redis://:hunter2-secret@127.0.0.1:6379/3")
    );
    assert_eq!(config.state.redis_prefix, "gw-a:");
    assert_eq!(config.state.lease_ttl, Duration::from_secs(2));
    assert!(!config.origin.effective_yaml.contains("hunter2"));
    let inline = load_text(
        "state:\n  backend: redis\n  redis_url: 'redis://:hunter2-secret@h:6379/0'\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert!(!inline.origin.effective_yaml.contains("hunter2"));
    let tls = load_text(
        "state:\n  backend: redis\n  redis_url: 'rediss://redis.example:6380/0'\n",
        &MapEnv::default(),
    )
    .unwrap();
    assert!(tls.state.redis_url.is_some(), "rediss:// is accepted");
}
