//! Where a request goes, per account kind.

use crate::pool::{AccountKind, AccountSpec};

/// The Responses endpoint of an account; `compact` appends `/compact`.
///
/// Sign-in accounts: `{base}/responses`. API-key accounts: a base ending in `/responses` is used
/// as is, a base ending in `/v1` gets `/responses`, any other base gets `/v1/responses`.
pub fn responses_url(account: &AccountSpec, compact: bool) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::pool::{AccountCredential, Platform};

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
}
