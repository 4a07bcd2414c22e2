//! Which headers go upstream. An allowlist: the client's own credentials (`authorization`,
//! `x-api-key`, cookies) and hop-by-hop headers never pass; the account's credential is added.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT,
};

use super::session::SessionIds;
use crate::domain::Secret;
use crate::domain::{AccountCredential, AccountSpec};

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

/// Every client header some upstream rule reads, and nothing else.
const USED_BY_RULES: &[&str] = &[
    "user-agent",
    "originator",
    "version",
    "anthropic-version",
    "anthropic-beta",
];

/// The client headers the upstream rules use, copied out of the connection's read buffer (which
/// a kept header would pin for as long as a stream lasts). Credentials are not among them.
pub fn keep_used(client: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    // One pass over the client's few headers: looking each of the ~20 names up parsed every
    // name again on every request (2% of the relay's CPU).
    for (name, value) in client {
        let used = USED_BY_RULES
            .iter()
            .chain(FORWARDED)
            .chain(SESSION_HEADERS)
            .chain(ANTHROPIC_FORWARDED)
            .any(|n| *n == name.as_str());
        if used {
            if let Ok(copy) = HeaderValue::from_bytes(value.as_bytes()) {
                kept.append(name.clone(), copy);
            }
        }
    }
    kept
}

/// A JSON request that asks for a stream or for JSON.
fn json_request(wants_stream: bool) -> HeaderMap {
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
    out
}

/// A credential header, marked sensitive so that no `Debug` output of the request shows it.
fn insert_secret(out: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(mut value) = HeaderValue::from_str(value) {
        value.set_sensitive(true);
        out.insert(name, value);
    }
}

/// The headers of an upstream Responses request.
pub fn upstream_headers(
    account: &AccountSpec,
    credential: &Secret,
    client: &HeaderMap,
    wants_stream: bool,
    compact: bool,
    sessions: &SessionRewrite<'_>,
) -> HeaderMap {
    let mut out = json_request(wants_stream);
    insert_secret(
        &mut out,
        AUTHORIZATION,
        &format!("Bearer {}", credential.expose()),
    );
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

/// Headers of a Chat Completions request to an OpenAI-compatible API.
pub fn chat_headers(credential: &Secret, client: &HeaderMap, wants_stream: bool) -> HeaderMap {
    let mut out = json_request(wants_stream);
    insert_secret(
        &mut out,
        AUTHORIZATION,
        &format!("Bearer {}", credential.expose()),
    );
    if let Some(ua) = client.get(USER_AGENT) {
        out.insert(USER_AGENT, ua.clone());
    }
    out
}

/// Client headers an Anthropic upstream gets as they are (besides version and beta).
const ANTHROPIC_FORWARDED: &[&str] = &["x-app", "anthropic-dangerous-direct-browser-access"];

/// Headers of a Messages request: `x-api-key` (API-key accounts) or `Authorization: Bearer`
/// with `oauth-2025-04-20` merged into `anthropic-beta` (sign-in accounts); `anthropic-version`
/// added when missing; the client's beta tokens kept.
pub fn anthropic_headers(
    account: &AccountSpec,
    credential: &Secret,
    client: &HeaderMap,
    wants_stream: bool,
) -> HeaderMap {
    use crate::protocol::anthropic::{DEFAULT_VERSION, OAUTH_BETA};
    let mut out = json_request(wants_stream);
    let version = client
        .get("anthropic-version")
        .cloned()
        .unwrap_or(HeaderValue::from_static(DEFAULT_VERSION));
    out.insert(HeaderName::from_static("anthropic-version"), version);
    let mut betas: Vec<String> = client
        .get_all("anthropic-beta")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    let oauth = matches!(account.credential, AccountCredential::OAuth { .. });
    if oauth && !betas.iter().any(|b| b == OAUTH_BETA) {
        betas.push(OAUTH_BETA.to_owned());
    }
    if let Ok(v) = HeaderValue::from_str(&betas.join(",")) {
        if !betas.is_empty() {
            out.insert(HeaderName::from_static("anthropic-beta"), v);
        }
    }
    let (name, value) = if oauth {
        (AUTHORIZATION, format!("Bearer {}", credential.expose()))
    } else {
        (
            HeaderName::from_static("x-api-key"),
            credential.expose().to_owned(),
        )
    };
    if let Ok(mut value) = HeaderValue::from_str(&value) {
        value.set_sensitive(true);
        out.insert(name, value);
    }
    if let Some(ua) = client.get(USER_AGENT) {
        out.insert(USER_AGENT, ua.clone());
    }
    for name in ANTHROPIC_FORWARDED {
        if let Some(v) = client.get(*name) {
            out.insert(HeaderName::from_static(name), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountKind, Platform};

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
            protocols: None,
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

    #[test]
    fn anthropic_headers_merge_betas_and_never_forward_client_keys() {
        let mut account = oauth();
        account.platform = crate::domain::Platform::Anthropic;
        let mut client = HeaderMap::new();
        client.insert("x-api-key", "client-key".parse().unwrap());
        client.insert(AUTHORIZATION, "Bearer client".parse().unwrap());
        client.insert(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14, fine-grained-tool-streaming-2025-05-14"
                .parse()
                .unwrap(),
        );
        let h = anthropic_headers(&account, &Secret::new("tok"), &client, true);
        assert_eq!(h[AUTHORIZATION], "Bearer tok");
        assert!(h.get("x-api-key").is_none());
        assert_eq!(h["anthropic-version"], "2023-06-01");
        assert_eq!(
            h["anthropic-beta"],
            "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,oauth-2025-04-20"
        );
        let key_account = AccountSpec {
            credential: AccountCredential::ApiKey {
                api_key: Secret::new("sk-ant"),
            },
            kind: crate::domain::AccountKind::ApiKey,
            ..account
        };
        let h = anthropic_headers(
            &key_account,
            &Secret::new("sk-ant"),
            &HeaderMap::new(),
            false,
        );
        assert_eq!(h["x-api-key"], "sk-ant");
        assert!(h.get(AUTHORIZATION).is_none() && h.get("anthropic-beta").is_none());
    }
}
