//! The audit trail: who changed what, when, from where. Every admin change (admin API,
//! dashboard, CLI, configuration reload) calls [`record`] after the change took effect, with the
//! thing's view before and after; [`redact`] replaces every secret in them before the row is
//! built, so the store never holds a key, token, credential or password. A row that cannot be
//! written does not undo the change (it already applies): it is logged at error level, whole,
//! and counted as a store error. [`prune`] deletes rows older than `admin.audit_retention_days`.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{now_ms, AuditRow, Store};

/// What replaces a secret's value.
pub const REDACTED: &str = "[redacted]";

/// Rows of one page at most (`GET /admin/api/audit?limit=`).
pub const MAX_PAGE: u32 = 1000;

/// Who made a change, and from which address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `admin-token`, `cli`, `dashboard (session 1a2b3c4d)`, `reload (SIGHUP)`, `reload (API)`,
    /// `reload (watch)`.
    pub who: String,
    pub client: Option<String>,
}

impl Actor {
    pub fn new(who: impl Into<String>, client: Option<String>) -> Self {
        Self {
            who: who.into(),
            client,
        }
    }
}

/// Whether a field of this name holds a secret: keys, tokens, credentials, passwords, and proxy
/// URLs (which may carry a user and password). By whole name or suffix, so that
/// `first_token_timeout` or `token_url` stay readable.
fn is_secret(field: &str) -> bool {
    let field = field.to_ascii_lowercase();
    const NAMES: &[&str] = &[
        "key",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "credentials",
        "authorization",
        "proxy",
        "cookie",
        "csrf",
        "key_hash",
    ];
    const SUFFIXES: &[&str] = &["_key", "_token", "_secret", "_password", "_credentials"];
    NAMES.contains(&field.as_str()) || SUFFIXES.iter().any(|s| field.ends_with(s))
}

/// Replaces, anywhere in `value`, the value of every field that names a secret by
/// [`REDACTED`] (`null` stays `null`, so a reader still sees whether one was set).
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (field, inner) in map.iter_mut() {
                if is_secret(field) && !is_structure(inner) {
                    if !inner.is_null() {
                        *inner = Value::String(REDACTED.to_owned());
                    }
                } else {
                    redact(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// A list of named things (`api_keys: [...]`, `accounts: [...]`) is walked into, not blanked:
/// its entries' own secret fields are redacted one by one.
fn is_structure(value: &Value) -> bool {
    matches!(value, Value::Array(_) | Value::Object(_))
}

/// Appends the change to the audit trail. `before`/`after` are redacted here. Never fails the
/// caller: the change already applies, so a row that cannot be stored is logged (whole, at
/// error level) and counted.
pub async fn record(
    store: &dyn Store,
    actor: &Actor,
    action: &str,
    target: &str,
    before: Option<Value>,
    after: Option<Value>,
) {
    let text = |value: Option<Value>| {
        value.map(|mut v| {
            redact(&mut v);
            v.to_string()
        })
    };
    let row = AuditRow {
        id: 0,
        at_ms: now_ms(),
        actor: actor.who.clone(),
        client: actor.client.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        before: text(before),
        after: text(after),
    };
    match store.append_audit(&row).await {
        Ok(()) => tracing::debug!(action, target, who = %actor.who, "audit row written"),
        Err(e) => {
            if let Some(metrics) = crate::metrics::get() {
                metrics.store_error();
            }
            tracing::error!(
                action,
                target,
                who = %actor.who,
                client = actor.client.as_deref().unwrap_or("-"),
                before = row.before.as_deref().unwrap_or("null"),
                after = row.after.as_deref().unwrap_or("null"),
                "audit trail: the change applies but its row could not be stored: {e}"
            );
        }
    }
}

/// How often old rows are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes rows older than `retention` now and every hour, until `stop`.
pub async fn prune(store: &dyn Store, retention: Duration, stop: CancellationToken) {
    loop {
        let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match store.prune_audit(now_ms().saturating_sub(keep_ms)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                "audit trail: {n} row(s) older than admin.audit_retention_days deleted"
            ),
            Err(e) => {
                if let Some(metrics) = crate::metrics::get() {
                    metrics.store_error();
                }
                tracing::warn!("audit trail: cannot prune old rows: {e}");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth_and_nulls_stay() {
        let mut value = json!({
            "name": "alice",
            "api_key": "sk-live-1",
            "refresh_token": null,
            "accounts": [{"name": "a", "access_token": "tok", "proxy": "http://u:p@h"}],
            "admin": {"token": "adm"},
            "gateway": {"first_token_timeout": 30},
            "oauth": {"openai_token_url": "https://x"},
            "note": "a name",
        });
        redact(&mut value);
        assert_eq!(
            value,
            json!({
                "name": "alice",
                "api_key": REDACTED,
                "refresh_token": null,
                "accounts": [{"name": "a", "access_token": REDACTED, "proxy": REDACTED}],
                "admin": {"token": REDACTED},
                "gateway": {"first_token_timeout": 30},
                "oauth": {"openai_token_url": "https://x"},
                "note": "a name",
            })
        );
    }
}
