//! Active health probes (issue 21 item 2): the cheapest request an account's platform has — the
//! model list (OpenAI API and Codex backend) or a token count (Anthropic) — costs no quota and
//! tells whether the account answers again.
//!
//! [`probe_loop`] probes, every `gateway.probe_interval`, each account that is cooling for an
//! error (not for a known quota reset) or disabled at run time; a pass brings it back at once, a
//! failure keeps it out another interval (within `gateway.max_cooldown`). [`probe`] runs one on
//! demand (`subrelay accounts test NAME`, the dashboard's "Test" button).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use tokio_util::sync::CancellationToken;

use crate::domain::{AccountCredential, AccountKind, Platform};
use crate::pool::{Account, Availability, CooldownReason, ProbeRecord};
use crate::state::AppState;
use crate::store::tokens;

/// A probe that has not answered by then failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Probes `account` once and applies the result: a pass clears a cooldown for an error and a
/// runtime disable (not a quota wait: the model list says nothing about quota); a failure keeps
/// a cooling account out for `extend` more (within `gateway.max_cooldown`).
pub async fn probe(state: &AppState, account: &Account, extend: Duration) -> ProbeRecord {
    let (ok, detail) = match tokio::time::timeout(PROBE_TIMEOUT, ask(state, account)).await {
        Ok(Ok(status)) => (true, format!("answered {status}")),
        Ok(Err(why)) => (false, why),
        Err(_) => (
            false,
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        ),
    };
    let record = ProbeRecord {
        at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        ok,
        detail,
    };
    account.note_probe(record.clone(), extend, state.pool.policy().cooldowns.max);
    tracing::info!(
        account = %account.spec.name,
        ok,
        "health probe: {}",
        record.detail
    );
    record
}

/// Sends the probe request; the status when it is a 2xx, else why not.
async fn ask(state: &AppState, account: &Account) -> Result<http::StatusCode, String> {
    let (credential, _) = tokens::fresh(state.tokens(), account)
        .await
        .map_err(|e| format!("no credential: {e}"))?;
    let spec = &account.spec;
    let base = spec.base_url.trim_end_matches('/');
    let (method, url, headers, body) = match spec.platform {
        Platform::Anthropic => {
            let model = spec
                .models
                .as_ref()
                .and_then(|m| m.first())
                .map_or("claude-haiku-4-5", String::as_str);
            let body = serde_json::json!({
                "model": model,
                "messages": [{"role": "user", "content": "."}],
            });
            (
                Method::POST,
                account.endpoints.messages(spec, true, None).to_string(),
                crate::upstream::anthropic_headers(spec, &credential, &HeaderMap::new(), false),
                Bytes::from(body.to_string()),
            )
        }
        Platform::OpenAi => {
            let mut headers = HeaderMap::new();
            let bearer = HeaderValue::from_str(&format!("Bearer {}", credential.expose()))
                .map_err(|_| "the credential is not a valid header value".to_owned())?;
            headers.insert(AUTHORIZATION, bearer);
            if let AccountCredential::OAuth {
                chatgpt_account_id: Some(id),
                ..
            } = &spec.credential
            {
                if let Ok(v) = HeaderValue::from_str(id) {
                    headers.insert("chatgpt-account-id", v);
                }
            }
            let url = match spec.kind {
                AccountKind::OAuth => format!("{base}/models?client_version=1.0.0"),
                AccountKind::ApiKey => format!("{base}/models"),
            };
            (Method::GET, url, headers, Bytes::new())
        }
    };
    let mut request = http::Request::builder().method(method).uri(&url);
    if let Some(h) = request.headers_mut() {
        h.extend(headers);
        if !body.is_empty() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    let request = request
        .body(body)
        .map_err(|e| format!("cannot build the probe request: {e}"))?;
    // The account's own sender (direct or through its proxy), as relayed requests go. Only the
    // status is read; the body is dropped unread.
    let response = account
        .sender
        .send(request)
        .await
        .map_err(|e| format!("no answer: {}", e.message))?;
    let status = response.status();
    if status.is_success() {
        Ok(status)
    } else {
        Err(format!("answered {status}"))
    }
}

/// Whether the background probe looks at this account: cooling for an error, or disabled at
/// run time (a disable in the config is the operator's).
fn wants_probe(account: &Account) -> bool {
    if !account.spec.enabled {
        return false;
    }
    match account.availability(tokio::time::Instant::now()) {
        Availability::Cooling { reason, .. } => reason != CooldownReason::RateLimited,
        Availability::Disabled(_) => true,
        Availability::Ready => false,
    }
}

/// Every `interval`, probes the accounts that want it, one after another; stops on `shutdown`.
pub async fn probe_loop(state: Arc<AppState>, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate: nothing is cooling at start
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let accounts = state.pool.accounts();
        for account in accounts.iter().filter(|a| wants_probe(a)) {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = probe(&state, account, interval) => {}
            }
        }
    }
}
