//! What an account is, as declared (in the config file or through the admin API).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{Protocol, Secret};

/// The provider an account (and a group, and a key through its group) belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

impl FromStr for Platform {
    type Err = UnknownName;

    /// The one place a platform's name is read.
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text {
            "openai" => Ok(Platform::OpenAi),
            "anthropic" => Ok(Platform::Anthropic),
            other => Err(UnknownName::new(other, "openai or anthropic")),
        }
    }
}

/// How an account signs in upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKind {
    /// A ChatGPT (or Claude) sign-in: OAuth tokens.
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

impl FromStr for AccountKind {
    type Err = UnknownName;

    /// The one place an account type's name is read.
    fn from_str(text: &str) -> Result<Self, UnknownName> {
        match text {
            "oauth" => Ok(AccountKind::OAuth),
            "apikey" => Ok(AccountKind::ApiKey),
            other => Err(UnknownName::new(other, "oauth or apikey")),
        }
    }
}

/// A name that is not one of an enum's names: says what was given and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not supported: must be {allowed}")]
pub struct UnknownName {
    pub given: String,
    /// The allowed names, as said in the message ("openai or anthropic").
    pub allowed: &'static str,
}

impl UnknownName {
    fn new(given: &str, allowed: &'static str) -> Self {
        Self {
            given: given.to_owned(),
            allowed,
        }
    }
}

/// Serialized and deserialized by name (`"openai"`, `"apikey"`), read through `FromStr`.
macro_rules! by_name {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

by_name!(Platform);
by_name!(AccountKind);

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCredential {
    ApiKey {
        api_key: Secret,
    },
    OAuth {
        access_token: Secret,
        refresh_token: Option<Secret>,
        chatgpt_account_id: Option<String>,
        expires_at: Option<SystemTime>,
    },
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

#[derive(Debug, Clone, PartialEq)]
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
    pub model_map: BTreeMap<String, String>,
    /// This account's own outbound proxy; never bypassed.
    pub proxy: Option<Secret>,
    /// The upstream APIs the account speaks, as declared; `None` = the defaults of its platform
    /// and kind ([`AccountSpec::protocols`]).
    pub protocols: Option<Vec<Protocol>>,
}

impl AccountSpec {
    /// The upstream APIs an account of this platform and kind may speak, the defaults first
    /// (OpenAI sign-in: the Codex backend's Responses API; OpenAI API key: Responses and Chat;
    /// Anthropic: Messages).
    pub fn possible_protocols(platform: Platform, kind: AccountKind) -> &'static [Protocol] {
        match (platform, kind) {
            (Platform::OpenAi, AccountKind::OAuth) => &[Protocol::Responses],
            (Platform::OpenAi, AccountKind::ApiKey) => &[Protocol::Responses, Protocol::Chat],
            (Platform::Anthropic, _) => &[Protocol::Messages],
        }
    }

    /// The upstream APIs this account speaks: as declared, else the defaults.
    pub fn protocols(&self) -> &[Protocol] {
        match &self.protocols {
            Some(list) => list,
            None => Self::possible_protocols(self.platform, self.kind),
        }
    }

    pub fn speaks(&self, protocol: Protocol) -> bool {
        self.protocols().contains(&protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_say_what_is_allowed() {
        for p in [Platform::OpenAi, Platform::Anthropic] {
            assert_eq!(p.as_str().parse::<Platform>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Platform>(&json).unwrap(), p);
        }
        for k in [AccountKind::OAuth, AccountKind::ApiKey] {
            assert_eq!(k.as_str().parse::<AccountKind>(), Ok(k));
        }
        assert_eq!(
            "gemini".parse::<Platform>().unwrap_err().to_string(),
            "\"gemini\" is not supported: must be openai or anthropic"
        );
        let err = serde_json::from_str::<AccountKind>("\"bearer\"").unwrap_err();
        assert!(err.to_string().contains("must be oauth or apikey"), "{err}");
    }
}
