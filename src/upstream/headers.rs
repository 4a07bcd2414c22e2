//! Which headers go upstream. An allowlist: the client's own credentials (`authorization`,
//! `x-api-key`, cookies) and hop-by-hop headers never pass; the account's credential is added.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT,
};

use super::session::SessionIds;
use crate::config::Secret;
use crate::pool::{AccountCredential, AccountSpec};

/// Client headers forwarded to every upstream as they are.
const FORWARDED: &[&str] = &[
    "openai-beta",
    "x-codex-beta-features",
    "x-codex-turn-metadata",
    "x-openai-subagent",
];

/// Conversation identity headers: forwarded with their value derived per API key.
pub const SESSION_HEADERS: &[&str] = &["session_id", "session-id", "conversation_id", "thread-id"];

/// How client session values become upstream ones.
pub struct SessionRewrite<'a> {
    pub ids: &'a SessionIds,
    /// Identifies the API key the request came with.
    pub key_id: &'a [u8],
}

/// Sent as `originator` to the Codex backend when the client sent none.
const DEFAULT_ORIGINATOR: &str = "codex_cli_rs";
/// Sign-in accounts present a Codex CLI user agent; used when the client's is not one.
const CODEX_USER_AGENT: &str = "codex_cli_rs/0.171.0 (subrelay)";
/// `version` for compact requests when the client sent none.
const DEFAULT_CODEX_VERSION: &str = "0.171.0";

/// The headers of an upstream Responses request.
pub fn upstream_headers(
    account: &AccountSpec,
    credential: &Secret,
    client: &HeaderMap,
    wants_stream: bool,
    compact: bool,
    sessions: &SessionRewrite<'_>,
) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(12);
    out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out.insert(
        ACCEPT,
        HeaderValue::from_static(if wants_stream {
            "text/event-stream"
        } else {
            "application/json"
        }),
    );
    if let Ok(mut auth) = HeaderValue::from_str(&format!("Bearer {}", credential.expose())) {
        auth.set_sensitive(true);
        out.insert(AUTHORIZATION, auth);
    }
    for name in FORWARDED {
        if let Some(v) = client.get(*name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    for name in SESSION_HEADERS {
        let derived = client
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .map(|v| sessions.ids.derive(sessions.key_id, v))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(v) = derived {
            out.insert(HeaderName::from_static(name), v);
        }
    }
    match &account.credential {
        AccountCredential::OAuth {
            chatgpt_account_id, ..
        } => {
            if let Some(id) = chatgpt_account_id
                .as_deref()
                .and_then(|id| HeaderValue::from_str(id).ok())
            {
                out.insert(HeaderName::from_static("chatgpt-account-id"), id);
            }
            let originator = client
                .get("originator")
                .cloned()
                .unwrap_or(HeaderValue::from_static(DEFAULT_ORIGINATOR));
            out.insert(HeaderName::from_static("originator"), originator);
            let codex_agent = client
                .get(USER_AGENT)
                .filter(|ua| ua.as_bytes().starts_with(b"codex"))
                .cloned()
                .unwrap_or(HeaderValue::from_static(CODEX_USER_AGENT));
            out.insert(USER_AGENT, codex_agent);
            if compact {
                let version = client
                    .get("version")
                    .cloned()
                    .unwrap_or(HeaderValue::from_static(DEFAULT_CODEX_VERSION));
                out.insert(HeaderName::from_static("version"), version);
            }
        }
        AccountCredential::ApiKey { .. } => {
            if let Some(ua) = client.get(USER_AGENT) {
                out.insert(USER_AGENT, ua.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{AccountKind, Platform};

    fn oauth() -> AccountSpec {
        AccountSpec {
            name: "a".into(),
            platform: Platform::OpenAi,
            kind: AccountKind::OAuth,
            credential: AccountCredential::OAuth {
                access_token: Secret::new("tok"),
                refresh_token: None,
                chatgpt_account_id: Some("acct-1".into()),
                expires_at: None,
            },
            base_url: "https://chatgpt.com/backend-api/codex".into(),
            priority: 0,
            concurrency: 0,
            groups: vec![],
            enabled: true,
            models: None,
            model_map: Default::default(),
            proxy: None,
        }
    }

    #[test]
    fn client_credentials_never_pass_and_codex_headers_are_set() {
        let mut client = HeaderMap::new();
        client.insert(AUTHORIZATION, "Bearer client-key".parse().unwrap());
        client.insert("x-api-key", "client-key".parse().unwrap());
        client.insert("cookie", "a=b".parse().unwrap());
        client.insert("session_id", "s-1".parse().unwrap());
        client.insert(USER_AGENT, "curl/8".parse().unwrap());
        let ids = SessionIds::new([1; 32]);
        let sessions = SessionRewrite {
            ids: &ids,
            key_id: b"key",
        };
        let h = upstream_headers(
            &oauth(),
            &Secret::new("tok"),
            &client,
            true,
            true,
            &sessions,
        );
        assert_eq!(h[AUTHORIZATION], "Bearer tok");
        assert!(h.get("x-api-key").is_none() && h.get("cookie").is_none());
        assert_eq!(h["chatgpt-account-id"], "acct-1");
        assert_eq!(h["originator"], "codex_cli_rs");
        assert_eq!(h["session_id"], ids.derive(b"key", "s-1").as_str());
        assert_eq!(h[USER_AGENT], CODEX_USER_AGENT);
        assert_eq!(h["version"], DEFAULT_CODEX_VERSION);
        assert_eq!(h[ACCEPT], "text/event-stream");
    }
}
