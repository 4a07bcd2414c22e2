//! The one check of an account: the config file and the admin API both pass what they build
//! through [`AccountSpec::validate`], so an account in the pool has a usable base URL and proxy
//! and nothing downstream checks them again.

use super::name::{valid_name, NAME_RULE};
use super::AccountSpec;

/// What is wrong with an account; [`AccountSpecError::field`] names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountSpecError {
    #[error("{0:?}: {NAME_RULE}")]
    Name(String),
    #[error("{0:?} is not an http:// or https:// URL")]
    BaseUrl(String),
    #[error("must name at least one group")]
    NoGroup,
    #[error("{0:?}: {NAME_RULE}")]
    GroupName(String),
    #[error("must be an http://, https://, socks5:// or socks5h:// URL")]
    Proxy,
    #[error("{0}")]
    Protocols(String),
}

impl AccountSpecError {
    /// The field at fault, as the config file and the admin API spell it.
    pub fn field(&self) -> &'static str {
        match self {
            AccountSpecError::Name(_) => "name",
            AccountSpecError::BaseUrl(_) => "base_url",
            AccountSpecError::NoGroup | AccountSpecError::GroupName(_) => "groups",
            AccountSpecError::Proxy => "proxy",
            AccountSpecError::Protocols(_) => "protocols",
        }
    }
}

/// What an endpoint adds to a base URL (`upstream::url` picks one of these per protocol and
/// account kind, or uses the base as it is). Each joined URL must parse, so the endpoints of a
/// valid account always do.
const ENDPOINT_SUFFIXES: [&str; 10] = [
    "/responses",
    "/responses/compact",
    "/v1/responses",
    "/v1/responses/compact",
    "/chat/completions",
    "/v1/chat/completions",
    "/messages",
    "/messages/count_tokens",
    "/v1/messages",
    "/v1/messages/count_tokens",
];

impl AccountSpec {
    /// Checks, in this order, the name, the base URL, the groups and the proxy.
    pub fn validate(&self) -> Result<(), AccountSpecError> {
        if !valid_name(&self.name) {
            return Err(AccountSpecError::Name(self.name.clone()));
        }
        if !base_url_ok(&self.base_url) {
            return Err(AccountSpecError::BaseUrl(self.base_url.clone()));
        }
        if self.groups.is_empty() {
            return Err(AccountSpecError::NoGroup);
        }
        if let Some(bad) = self.groups.iter().find(|g| !valid_name(g)) {
            return Err(AccountSpecError::GroupName(bad.clone()));
        }
        if let Some(list) = &self.protocols {
            check_protocols(self, list)?;
        }
        if let Some(proxy) = &self.proxy {
            let proxy = proxy.expose();
            let scheme_ok = ["http://", "https://", "socks5://", "socks5h://"]
                .iter()
                .any(|s| proxy.starts_with(s));
            if !scheme_ok || reqwest::Proxy::all(proxy).is_err() {
                return Err(AccountSpecError::Proxy);
            }
        }
        Ok(())
    }
}

/// A declared `protocols` list: not empty, no repeats, each one the account's platform and kind
/// can speak.
fn check_protocols(spec: &AccountSpec, list: &[super::Protocol]) -> Result<(), AccountSpecError> {
    let possible = AccountSpec::possible_protocols(spec.platform, spec.kind);
    let names = || {
        possible
            .iter()
            .map(|p| p.api_name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if list.is_empty() {
        return Err(AccountSpecError::Protocols(format!(
            "must list at least one of: {}",
            names()
        )));
    }
    for (i, p) in list.iter().enumerate() {
        if list[..i].contains(p) {
            return Err(AccountSpecError::Protocols(format!(
                "{} is listed twice",
                p.api_name()
            )));
        }
        if !possible.contains(p) {
            return Err(AccountSpecError::Protocols(format!(
                "an {} {} account cannot speak {}: allowed are {}",
                spec.platform.as_str(),
                spec.kind.as_str(),
                p.api_name(),
                names()
            )));
        }
    }
    Ok(())
}

/// An http(s) URL with a host, which (like each endpoint joined to it) parses both as a URL
/// and as the `http::Uri` a request is sent to.
fn base_url_ok(base: &str) -> bool {
    let base = base.trim_end_matches('/');
    let parses = |text: &str| {
        reqwest::Url::parse(text).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.as_str().parse::<http::Uri>().is_ok()
        })
    };
    (base.starts_with("http://") || base.starts_with("https://"))
        && parses(base)
        && ENDPOINT_SUFFIXES
            .iter()
            .all(|suffix| parses(&format!("{base}{suffix}")))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{AccountCredential, AccountKind, Platform, Protocol, Secret};

    fn spec() -> AccountSpec {
        AccountSpec {
            name: "a".into(),
            platform: Platform::OpenAi,
            kind: AccountKind::ApiKey,
            credential: AccountCredential::ApiKey {
                api_key: Secret::new("k"),
            },
            base_url: "https://api.example.com/v1".into(),
            priority: 0,
            concurrency: 0,
            groups: vec!["default".into()],
            enabled: true,
            models: None,
            model_map: BTreeMap::new(),
            proxy: None,
            protocols: None,
        }
    }

    #[test]
    fn a_usable_account_passes() {
        assert_eq!(spec().validate(), Ok(()));
        let mut chat_only = spec();
        chat_only.protocols = Some(vec![Protocol::Chat]);
        assert_eq!(chat_only.validate(), Ok(()));
        assert_eq!(chat_only.protocols(), [Protocol::Chat]);
        assert_eq!(spec().protocols(), [Protocol::Responses, Protocol::Chat]);
        let mut s = spec();
        s.base_url = "http://127.0.0.1:8080".into();
        s.proxy = Some(Secret::new("socks5h://user:pw@proxy:1080"));
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn each_field_is_refused_with_its_name() {
        /// How to break a spec, the field named, and a part of the message.
        type Case = (fn(&mut AccountSpec), &'static str, &'static str);
        let cases: [Case; 9] = [
            (|s| s.name = "has/slash".into(), "name", "use 1–64"),
            (
                |s| s.base_url = "ftp://x".into(),
                "base_url",
                "\"ftp://x\" is not an http:// or https:// URL",
            ),
            (
                |s| s.base_url = "https://".into(),
                "base_url",
                "is not an http",
            ),
            (
                |s| s.groups.clear(),
                "groups",
                "must name at least one group",
            ),
            (|s| s.groups = vec!["a b".into()], "groups", "use 1–64"),
            (
                |s| s.proxy = Some(Secret::new("ftp://p")),
                "proxy",
                "socks5h://",
            ),
            (
                |s| s.protocols = Some(vec![]),
                "protocols",
                "must list at least one of: responses, chat",
            ),
            (
                |s| s.protocols = Some(vec![Protocol::Chat, Protocol::Chat]),
                "protocols",
                "chat is listed twice",
            ),
            (
                |s| s.protocols = Some(vec![Protocol::Messages]),
                "protocols",
                "an openai apikey account cannot speak messages: allowed are responses, chat",
            ),
        ];
        for (break_it, field, said) in cases {
            let mut s = spec();
            break_it(&mut s);
            let err = s.validate().unwrap_err();
            assert_eq!(err.field(), field, "{err}");
            assert!(err.to_string().contains(said), "{err}");
        }
    }
}
