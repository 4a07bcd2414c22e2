//! What an account is, as declared (config file now, store later).

use std::time::SystemTime;

use crate::config::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    OpenAi,
    Anthropic,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::OpenAi => "openai",
            Platform::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A ChatGPT sign-in, served by the Codex backend.
    OAuth,
    /// A platform API key.
    ApiKey,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::OAuth => "oauth",
            AccountKind::ApiKey => "apikey",
        }
    }

    pub fn default_base_url(self, platform: Platform) -> &'static str {
        match (platform, self) {
            (Platform::OpenAi, AccountKind::OAuth) => "https://chatgpt.com/backend-api/codex",
            (Platform::OpenAi, AccountKind::ApiKey) => "https://api.openai.com/v1",
            (Platform::Anthropic, _) => "https://api.anthropic.com",
        }
    }
}

#[derive(Debug, Clone)]
pub enum AccountCredential {
    ApiKey {
        api_key: Secret,
    },
    OAuth {
        access_token: Secret,
        /// Kept for the token refresh of the account-pool work; not used by the relay yet.
        refresh_token: Option<Secret>,
        chatgpt_account_id: Option<String>,
        expires_at: Option<SystemTime>,
    },
}

#[derive(Debug, Clone)]
pub struct AccountSpec {
    pub name: String,
    pub platform: Platform,
    pub kind: AccountKind,
    pub credential: AccountCredential,
    /// Without a trailing slash.
    pub base_url: String,
    /// Lower is tried first.
    pub priority: i32,
    /// Requests in flight at once; 0 = unlimited.
    pub concurrency: u32,
    pub groups: Vec<String>,
    pub enabled: bool,
    /// Models this account serves; `None` = any.
    pub models: Option<Vec<String>>,
    /// Client model name → upstream model name.
    pub model_map: std::collections::BTreeMap<String, String>,
    /// This account's own outbound proxy; never bypassed.
    pub proxy: Option<Secret>,
}

impl AccountCredential {
    /// The token sent as `Authorization: Bearer`.
    pub fn bearer(&self) -> &Secret {
        match self {
            AccountCredential::ApiKey { api_key } => api_key,
            AccountCredential::OAuth { access_token, .. } => access_token,
        }
    }
}
