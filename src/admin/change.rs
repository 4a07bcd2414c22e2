//! One change made through the admin API, run the way every change runs.
//!
//! A handler checks what it was sent, then hands [`change`] the part that reads the record,
//! writes the store and makes the change live. `change` holds `AppState::snapshot_writes` around
//! all of it, from the first read: two changes to one record at once must not each write it as
//! it was before the other (the second would undo the first), a check (a group no key uses, a
//! name still free) must still hold when the write lands, and a reload from the store must not
//! swap in a list read before the change. Then, still under the lock (so the trail's order is the
//! order the changes took effect), it logs the change and writes its audit row. Only a change
//! that was made gets a row.
//!
//! The lock is the process's: instances sharing a store do not wait for each other's changes
//! (docs/DEPLOY.md).

use serde::Serialize;
use serde_json::Value;

use super::Admin;
use crate::http::refusal::Refusal;
use crate::state::AppState;
use crate::store::audit;

/// What a change did: its answer, and the record as the audit trail keeps it before and after
/// (`None`: there was none).
pub struct Changed<T> {
    pub answer: T,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Runs `apply` as one admin change (see the module doc) and returns its answer.
pub async fn change<T>(
    state: &AppState,
    admin: &Admin,
    action: &str,
    target: &str,
    apply: impl AsyncFnOnce() -> Result<Changed<T>, Refusal>,
) -> Result<T, Refusal> {
    let _snapshot = state.snapshot_writes.lock().await;
    let changed = apply().await?;
    tracing::info!(action, target, "changed by the admin API");
    audit::record(
        state.store.as_ref(),
        &admin.actor,
        action,
        target,
        changed.before,
        changed.after,
    )
    .await;
    Ok(changed.answer)
}

/// A record's view as the audit trail keeps it.
pub fn trail(view: impl Serialize) -> Option<Value> {
    serde_json::to_value(view).ok()
}
