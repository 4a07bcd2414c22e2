//! Where a request goes, per account kind.

use http::Uri;
use reqwest::Url;

use crate::domain::{AccountKind, AccountSpec};

/// An account's endpoints, parsed once when it joins the pool: parsing the URL text on every
/// request cost about 2% of the relay's CPU. An account that passed `AccountSpec::validate`
/// (every account in the pool did) has endpoints that parse.
#[derive(Debug, Clone)]
pub struct Endpoints {
    responses: Uri,
    compact: Uri,
    chat: Uri,
    messages: Uri,
    count_tokens: Uri,
}

/// Parsed as a URL first, so that what `http::Uri` does not take (an international host name,
/// a space in the path) is normalised the way a browser would (punycode, percent escapes).
fn parse(text: &str) -> Option<Uri> {
    Url::parse(text).ok()?.as_str().parse().ok()
}

impl Endpoints {
    /// Fails (naming the account and the URL) only for an account that did not pass
    /// `AccountSpec::validate`.
    pub fn of(spec: &AccountSpec) -> Result<Self, String> {
        let uri = |text: String| {
            parse(&text)
                .ok_or_else(|| format!("account {:?}: {text:?} is not a usable URL", spec.name))
        };
        Ok(Self {
            responses: uri(responses_url(spec, false))?,
            compact: uri(responses_url(spec, true))?,
            chat: uri(chat_url(spec))?,
            messages: uri(messages_url(spec, false, None))?,
            count_tokens: uri(messages_url(spec, true, None))?,
        })
    }

    pub fn responses(&self, compact: bool) -> Uri {
        if compact {
            self.compact.clone()
        } else {
            self.responses.clone()
        }
    }

    pub fn chat(&self) -> Uri {
        self.chat.clone()
    }

    /// With the client's query (`beta=true`) forwarded.
    pub fn messages(&self, spec: &AccountSpec, count_tokens: bool, query: Option<&str>) -> Uri {
        let uri = if count_tokens {
            &self.count_tokens
        } else {
            &self.messages
        };
        let Some(q) = query.filter(|q| !q.is_empty()) else {
            return uri.clone();
        };
        // Claude Code sends `?beta=true` on every request: try the plain join first, then the
        // URL way (which escapes what `http::Uri` refuses).
        format!("{uri}?{q}")
            .parse()
            .ok()
            .or_else(|| parse(&messages_url(spec, count_tokens, Some(q))))
            .unwrap_or_else(|| {
                // The query came from a request URI that already parsed, so this does not
                // happen; were it to, the request goes without it rather than nowhere.
                tracing::warn!(account = %spec.name, "the client's query could not be forwarded");
                uri.clone()
            })
    }
}

/// The Responses endpoint of an account; `compact` appends `/compact`.
///
/// Sign-in accounts: `{base}/responses`. API-key accounts: a base ending in `/responses` is used
/// as is, a base ending in `/v1` gets `/responses`, any other base gets `/v1/responses`.
fn responses_url(account: &AccountSpec, compact: bool) -> String {
    let base = account.base_url.trim_end_matches('/');
    let mut url = match account.kind {
        AccountKind::OAuth => format!("{base}/responses"),
        AccountKind::ApiKey if base.ends_with("/responses") => base.to_owned(),
        AccountKind::ApiKey if base.ends_with("/v1") => format!("{base}/responses"),
        AccountKind::ApiKey => format!("{base}/v1/responses"),
    };
    if compact {
        url.push_str("/compact");
    }
    url
}

/// The Chat Completions endpoint of an API-key account: a base ending in `/chat/completions` is
/// used as is, one ending in `/v1` gets `/chat/completions`, any other gets
/// `/v1/chat/completions` (so OpenRouter's `…/api/v1`, Ollama's `…:11434/v1` and a bare
/// `https://api.deepseek.com` all work).
fn chat_url(account: &AccountSpec) -> String {
    let base = account.base_url.trim_end_matches('/');
    if base.ends_with("/chat/completions") {
        base.to_owned()
    } else if base.ends_with("/v1") {
        format!("{base}/chat/completions")
    } else {
        format!("{base}/v1/chat/completions")
    }
}

/// The Messages endpoint of an Anthropic account (`count_tokens` appends its suffix), with the
/// client's query (`beta=true`) forwarded.
fn messages_url(account: &AccountSpec, count_tokens: bool, query: Option<&str>) -> String {
    let base = account.base_url.trim_end_matches('/');
    let mut url = if base.ends_with("/v1") {
        format!("{base}/messages")
    } else {
        format!("{base}/v1/messages")
    };
    if count_tokens {
        url.push_str("/count_tokens");
    }
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Secret;
    use crate::domain::{AccountCredential, Platform};

    fn account(kind: AccountKind, base: &str) -> AccountSpec {
        AccountSpec {
            name: "a".into(),
            platform: Platform::OpenAi,
            kind,
            credential: AccountCredential::ApiKey {
                api_key: Secret::new("k"),
            },
            base_url: base.into(),
            priority: 0,
            concurrency: 0,
            groups: vec!["default".into()],
            enabled: true,
            models: None,
            model_map: Default::default(),
            proxy: None,
            protocols: None,
        }
    }

    #[test]
    fn url_rules() {
        let cases = [
            (
                AccountKind::OAuth,
                "https://chatgpt.com/backend-api/codex",
                false,
                "https://chatgpt.com/backend-api/codex/responses",
            ),
            (
                AccountKind::OAuth,
                "https://chatgpt.com/backend-api/codex/",
                true,
                "https://chatgpt.com/backend-api/codex/responses/compact",
            ),
            (
                AccountKind::ApiKey,
                "https://api.openai.com/v1",
                false,
                "https://api.openai.com/v1/responses",
            ),
            (
                AccountKind::ApiKey,
                "https://x.example/openai/responses",
                true,
                "https://x.example/openai/responses/compact",
            ),
            (
                AccountKind::ApiKey,
                "https://x.example",
                false,
                "https://x.example/v1/responses",
            ),
            (
                AccountKind::ApiKey,
                "https://x.example/api",
                true,
                "https://x.example/api/v1/responses/compact",
            ),
        ];
        for (kind, base, compact, want) in cases {
            assert_eq!(responses_url(&account(kind, base), compact), want, "{base}");
        }
    }

    #[test]
    fn chat_and_messages_url_rules() {
        let chat = |base| chat_url(&account(AccountKind::ApiKey, base));
        assert_eq!(
            chat("https://openrouter.ai/api/v1"),
            "https://openrouter.ai/api/v1/chat/completions"
        );
        assert_eq!(
            chat("https://api.deepseek.com"),
            "https://api.deepseek.com/v1/chat/completions"
        );
        assert_eq!(
            chat("http://x/v1/chat/completions"),
            "http://x/v1/chat/completions"
        );
        let a = account(AccountKind::ApiKey, "https://api.anthropic.com");
        assert_eq!(
            messages_url(&a, false, Some("beta=true")),
            "https://api.anthropic.com/v1/messages?beta=true"
        );
        assert_eq!(
            messages_url(&a, true, None),
            "https://api.anthropic.com/v1/messages/count_tokens"
        );
    }

    #[test]
    fn parsed_endpoints_match_the_text_rules() {
        let a = account(AccountKind::ApiKey, "https://api.anthropic.com/");
        let e = Endpoints::of(&a).unwrap();
        let text = |t: Uri| t.to_string();
        assert_eq!(
            text(e.messages(&a, false, Some("beta=true"))),
            messages_url(&a, false, Some("beta=true"))
        );
        assert_eq!(
            text(e.messages(&a, true, Some(""))),
            messages_url(&a, true, None)
        );
        assert_eq!(text(e.responses(true)), responses_url(&a, true));
        assert_eq!(text(e.chat()), chat_url(&a));
        assert_eq!(
            text(e.messages(&a, false, Some("beta=true&x=a b"))),
            "https://api.anthropic.com/v1/messages?beta=true&x=a%20b",
            "a query http::Uri refuses is escaped the URL way"
        );
        let idn = account(AccountKind::ApiKey, "https://bücher.example/v1");
        assert_eq!(
            text(Endpoints::of(&idn).unwrap().chat()),
            "https://xn--bcher-kva.example/v1/chat/completions"
        );

        let broken = account(AccountKind::ApiKey, "http://exa mple.com");
        assert!(broken.validate().is_err());
        assert_eq!(
            Endpoints::of(&broken).unwrap_err(),
            "account \"a\": \"http://exa mple.com/v1/responses\" is not a usable URL"
        );
    }
}
