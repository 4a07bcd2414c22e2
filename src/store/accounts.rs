//! Accounts between the pool's [`AccountSpec`] and the store's [`AccountRecord`]: every secret
//! (API key, access and refresh token, proxy URL with its password) goes into one sealed blob,
//! the rest into plain columns. Also the [`AccountSource`] that feeds the pool from the store.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::crypto::Sealer;
use super::{now_secs, AccountRecord, Source, Store};
use crate::domain::Secret;
use crate::domain::{AccountCredential, AccountKind, AccountSpec};
use crate::pool::AccountSource;

/// The sealed part of an account.
#[derive(Default, Serialize, Deserialize)]
struct Credentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy: Option<String>,
}

fn context(name: &str) -> String {
    format!("account:{name}")
}

/// Seals a spec into a record.
pub fn to_record(
    spec: &AccountSpec,
    source: Source,
    sealer: &Sealer,
) -> Result<AccountRecord, String> {
    let mut credentials = Credentials {
        proxy: spec.proxy.as_ref().map(|p| p.expose().to_owned()),
        ..Credentials::default()
    };
    let (chatgpt_account_id, expires_at) = match &spec.credential {
        AccountCredential::ApiKey { api_key } => {
            credentials.api_key = Some(api_key.expose().to_owned());
            (None, None)
        }
        AccountCredential::OAuth {
            access_token,
            refresh_token,
            chatgpt_account_id,
            expires_at,
        } => {
            credentials.access_token = Some(access_token.expose().to_owned());
            credentials.refresh_token = refresh_token.as_ref().map(|r| r.expose().to_owned());
            let expires = expires_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            (chatgpt_account_id.clone(), expires)
        }
    };
    let plain = serde_json::to_vec(&credentials).map_err(|e| e.to_string())?;
    let now = now_secs();
    Ok(AccountRecord {
        name: spec.name.clone(),
        platform: spec.platform,
        kind: spec.kind,
        base_url: spec.base_url.clone(),
        chatgpt_account_id,
        expires_at,
        priority: spec.priority,
        concurrency: spec.concurrency,
        groups: spec.groups.clone(),
        enabled: spec.enabled,
        models: spec.models.clone(),
        model_map: spec.model_map.clone(),
        protocols: spec.protocols.clone(),
        credentials: sealer.seal(&context(&spec.name), &plain)?,
        source,
        created_at: now,
        updated_at: now,
    })
}

/// Opens a record into a spec the pool can use.
pub fn to_spec(record: &AccountRecord, sealer: &Sealer) -> Result<AccountSpec, String> {
    let plain = sealer
        .open(&context(&record.name), &record.credentials)
        .map_err(|e| format!("account {:?}: {e}", record.name))?;
    let credentials: Credentials = serde_json::from_slice(&plain)
        .map_err(|e| format!("account {:?}: damaged credentials ({e})", record.name))?;
    let (platform, kind) = (record.platform, record.kind);
    let missing = |what: &str| format!("account {:?}: no {what} stored", record.name);
    let credential = match kind {
        AccountKind::ApiKey => AccountCredential::ApiKey {
            api_key: Secret::new(credentials.api_key.ok_or_else(|| missing("api_key"))?),
        },
        AccountKind::OAuth => AccountCredential::OAuth {
            access_token: Secret::new(
                credentials
                    .access_token
                    .ok_or_else(|| missing("access_token"))?,
            ),
            refresh_token: credentials.refresh_token.map(Secret::new),
            chatgpt_account_id: record.chatgpt_account_id.clone(),
            expires_at: record
                .expires_at
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        },
    };
    Ok(AccountSpec {
        name: record.name.clone(),
        platform,
        kind,
        credential,
        base_url: record.base_url.clone(),
        priority: record.priority,
        concurrency: record.concurrency,
        groups: record.groups.clone(),
        enabled: record.enabled,
        models: record.models.clone(),
        model_map: record.model_map.clone(),
        proxy: credentials.proxy.map(Secret::new),
        protocols: record.protocols.clone(),
    })
}

/// The pool's accounts as the store holds them (config ones synced at start, plus those added
/// through the admin API).
pub struct StoreAccounts {
    pub store: Arc<dyn Store>,
    pub sealer: Arc<Sealer>,
}

impl AccountSource for StoreAccounts {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<AccountSpec>, String>> + Send + '_>> {
        Box::pin(async move {
            let records = self
                .store
                .list_accounts()
                .await
                .map_err(|e| e.to_string())?;
            let mut specs = Vec::with_capacity(records.len());
            for record in &records {
                let spec = to_spec(record, &self.sealer)?;
                // Stored before the admin API checked URLs as the config does: such an account
                // could never be reached. It is left out (and can be fixed with PATCH).
                if let Err(e) = spec.validate() {
                    tracing::error!(account = %spec.name, "the stored account is left out of the pool: {}: {e}", e.field());
                    continue;
                }
                specs.push(spec);
            }
            Ok(specs)
        })
    }
}
