//! The refresh-token grant against a provider's token endpoint (OpenAI and Anthropic speak the
//! same JSON form of it).

use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::config::OAuthConfig;
use crate::domain::Platform;
use crate::domain::Secret;

/// Tokens a successful refresh issued.
pub struct Issued {
    pub access: Secret,
    /// The rotated refresh token, when the provider issued one.
    pub refresh: Option<Secret>,
    pub expires_at: Option<SystemTime>,
}

pub enum RefreshError {
    /// The provider refused the refresh token (`invalid_grant`): only a new sign-in helps.
    InvalidGrant(String),
    /// Anything else (network, 5xx, odd answer): worth another try later.
    Other(String),
}

/// How long a token endpoint may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub async fn refresh(
    client: &reqwest::Client,
    oauth: &OAuthConfig,
    platform: Platform,
    refresh_token: &Secret,
) -> Result<Issued, RefreshError> {
    let (url, body) = match platform {
        Platform::OpenAi => (
            &oauth.openai_token_url,
            serde_json::json!({
                "grant_type": "refresh_token",
                "client_id": oauth.openai_client_id,
                "refresh_token": refresh_token.expose(),
                "scope": "openid profile email",
            }),
        ),
        Platform::Anthropic => (
            &oauth.anthropic_token_url,
            serde_json::json!({
                "grant_type": "refresh_token",
                "client_id": oauth.anthropic_client_id,
                "refresh_token": refresh_token.expose(),
            }),
        ),
    };
    let response = client
        .post(url)
        .timeout(TIMEOUT)
        .json(&body)
        .send()
        .await
        .map_err(|e| RefreshError::Other(format!("token endpoint unreachable: {e}")))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| RefreshError::Other(format!("token endpoint answer unreadable: {e}")))?;
    if !status.is_success() {
        #[derive(Deserialize)]
        struct OAuthError {
            error: Option<serde_json::Value>,
            error_description: Option<String>,
        }
        let parsed = serde_json::from_str::<OAuthError>(&text).ok();
        let code = parsed
            .as_ref()
            .and_then(|e| e.error.as_ref())
            .map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other
                    .get("code")
                    .or_else(|| other.get("type"))
                    .and_then(|c| c.as_str())
                    .unwrap_or_default()
                    .to_owned(),
            })
            .unwrap_or_default();
        let detail = parsed
            .and_then(|e| e.error_description)
            .unwrap_or_else(|| format!("status {status}"));
        return Err(if code == "invalid_grant" {
            RefreshError::InvalidGrant(detail)
        } else {
            RefreshError::Other(format!("token endpoint answered {status}: {detail}"))
        });
    }
    #[derive(Deserialize)]
    struct Answer {
        access_token: String,
        refresh_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_str(&text)
        .map_err(|e| RefreshError::Other(format!("token endpoint answer is not a token: {e}")))?;
    if answer.access_token.is_empty() {
        return Err(RefreshError::Other(
            "token endpoint issued an empty access token".into(),
        ));
    }
    Ok(Issued {
        access: Secret::new(answer.access_token),
        refresh: answer
            .refresh_token
            .filter(|r| !r.is_empty())
            .map(Secret::new),
        expires_at: answer
            .expires_in
            .map(|s| SystemTime::now() + Duration::from_secs(s)),
    })
}
