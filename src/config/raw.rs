//! The configuration as written: YAML with defaults, unknown keys refused.
//!
//! These types only describe the file. [`super::validate`] turns them into the runtime
//! [`super::Config`], so nothing after start-up re-checks a value.

use serde::{Deserialize, Serialize};

use super::secret::SecretRef;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub server: RawServer,
    pub gateway: RawGateway,
    pub log: RawLog,
    pub accounts: Vec<RawAccount>,
    pub api_keys: Vec<RawApiKey>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub host: String,
    pub port: i64,
    pub shutdown_timeout: i64,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            shutdown_timeout: 30,
        }
    }
}

/// Numbers are read as `i64` so that a negative or out-of-range value reaches validation and
/// gets the message that names the allowed range, instead of a bare type error.
#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawGateway {
    pub response_header_timeout: i64,
    pub stream_keepalive_interval: i64,
    pub stream_data_interval_timeout: i64,
    pub openai_compact_nonstream_keepalive_interval: i64,
    pub nonstream_keepalive_interval: i64,
    pub max_account_switches: i64,
    pub max_body_size: i64,
    pub upstream_response_read_max_bytes: i64,
}

impl Default for RawGateway {
    fn default() -> Self {
        Self {
            response_header_timeout: 600,
            stream_keepalive_interval: 10,
            stream_data_interval_timeout: 180,
            openai_compact_nonstream_keepalive_interval: 0,
            nonstream_keepalive_interval: 0,
            max_account_switches: 10,
            max_body_size: 256 * 1024 * 1024,
            upstream_response_read_max_bytes: 128 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    pub format: String,
    pub level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "pretty".to_owned(),
            level: "info".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: String,
    pub platform: String,
    #[serde(rename = "type")]
    pub kind: String,
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
