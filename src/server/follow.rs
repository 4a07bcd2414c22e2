//! Following a shared store: on `storage.backend: postgres` every instance polls the store's
//! change counter (one small query every [`POLL_EVERY`]) and, when another instance (or its own
//! admin API) wrote groups, keys or accounts, reloads its snapshot the way a configuration
//! reload does (`reload::from_store`). A change made through any instance applies on every
//! instance within a second. While the store does not answer, the snapshot stays as it is
//! (relaying goes on) and the outage is logged once; the first answer after it reloads.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often the change counter is read.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(300);

/// Runs until `stop`. `seen`: the counter read before the snapshot was loaded at start, so a
/// write that landed in between is not missed.
pub(super) async fn run(state: Arc<AppState>, mut seen: Option<i64>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        let now = match state.store.change_counter().await {
            Ok(Some(now)) => now,
            // Not a shared store: nothing to follow.
            Ok(None) => return,
            Err(e) => {
                if !failing {
                    tracing::warn!("the shared store does not answer ({e}); relaying goes on with the accounts and keys as they are, usage waits in the spool");
                    failing = true;
                }
                continue;
            }
        };
        if failing {
            tracing::info!("the shared store answers again");
            failing = false;
        }
        if seen == Some(now) {
            continue;
        }
        match super::reload::from_store(&state, "a change in the shared store").await {
            Ok(_) => seen = Some(now),
            Err(e) => tracing::warn!("cannot take the shared store's changes yet: {e}"),
        }
    }
}
