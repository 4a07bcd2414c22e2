//! Following a shared store: on `storage.backend: postgres` every instance reads the store's
//! change counter (one small query) and, when another instance (or its own admin API) wrote
//! groups, keys, accounts or prices, reloads its snapshot the way a configuration reload does
//! (`reload::from_store`). With `state.backend: redis` every such write is also announced on
//! `{prefix}changes` (the store's change hook, set in `server::serve`), which wakes the follower at
//! once; the poll is then only the fallback for a missed message and runs every
//! [`POLL_WITH_REDIS`]; without Redis it runs every [`POLL_EVERY`] (`storage.change_poll_ms`
//! sets either). A change made through any instance applies on every instance within a second.
//! While the store does not answer, the snapshot stays as it is (relaying goes on) and the
//! outage is logged once; the first answer after it reloads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often the change counter is read without change messages.
pub(super) const POLL_EVERY: Duration = Duration::from_millis(300);
/// How often it is read when Redis announces changes (a fallback).
pub(super) const POLL_WITH_REDIS: Duration = Duration::from_secs(1);

/// How often the change counter is read: `configured`, else by whether `announced` changes wake
/// the follower.
pub(super) fn poll_every(configured: Option<Duration>, announced: bool) -> Duration {
    configured.unwrap_or(if announced {
        POLL_WITH_REDIS
    } else {
        POLL_EVERY
    })
}

/// Runs until `stop`. `seen`: the counter read before the snapshot was loaded at start, so a
/// write that landed in between is not missed. `announced`: woken by change messages.
pub(super) async fn run(
    state: Arc<AppState>,
    mut seen: Option<i64>,
    every: Duration,
    announced: Option<Arc<Notify>>,
    stop: CancellationToken,
) {
    let mut failing = false;
    let never = Notify::new();
    let announced = announced.as_deref().unwrap_or(&never);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            () = announced.notified() => {}
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
