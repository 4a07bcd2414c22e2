//! `/readyz`: whether a load balancer should send requests here now.
//!
//! `/healthz` says the process runs (liveness); `/readyz` says it should get traffic: 503 while
//! starting, while draining after SIGTERM (`server.drain_delay`: readiness flips first, the
//! listener closes later, so a load balancer stops sending before connections are refused),
//! and while the store does not answer; 200 otherwise. The body says why, as JSON.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// How long the store's probe may take before the store counts as unreachable.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

/// The process's phase; one server per process.
static PHASE: AtomicU8 = AtomicU8::new(STARTING);

/// Start-up is done: the state is built, the background tasks run.
pub fn set_ready() {
    // Never back from draining.
    let _ = PHASE.compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
}

/// SIGTERM: from now on `/readyz` answers 503.
pub fn set_draining() {
    PHASE.store(DRAINING, Ordering::Release);
}

/// Why the gateway is not ready, judged from its phase and the store's probe.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ready,
    NotReady {
        reason: &'static str,
        detail: String,
    },
}

fn judge(phase: u8, store: Option<Result<(), String>>) -> Verdict {
    let not_ready = |reason, detail: &str| Verdict::NotReady {
        reason,
        detail: detail.to_owned(),
    };
    match phase {
        STARTING => not_ready("starting", "start-up is not finished"),
        DRAINING => not_ready(
            "draining",
            "shutting down: requests in flight finish, new ones should go elsewhere",
        ),
        _ => match store {
            Some(Ok(())) => Verdict::Ready,
            Some(Err(e)) => Verdict::NotReady {
                reason: "store_unreachable",
                detail: format!("the store did not answer: {e}"),
            },
            None => not_ready(
                "store_unreachable",
                "the store did not answer within 2 seconds",
            ),
        },
    }
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let phase = PHASE.load(Ordering::Acquire);
    let store = if phase == READY {
        let probe = state.store.get_meta("readiness_probe");
        match tokio::time::timeout(STORE_PROBE_TIMEOUT, probe).await {
            Ok(Ok(_)) => Some(Ok(())),
            Ok(Err(e)) => Some(Err(e.to_string())),
            Err(_) => None,
        }
    } else {
        None
    };
    let verdict = judge(phase, store);
    if matches!(
        &verdict,
        Verdict::NotReady {
            reason: "store_unreachable",
            ..
        }
    ) {
        if let Some(metrics) = crate::metrics::get() {
            metrics.store_error();
        }
    }
    let (status, body) = match verdict {
        Verdict::Ready => (http::StatusCode::OK, json!({ "status": "ready" })),
        Verdict::NotReady { reason, detail } => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            json!({ "status": "not_ready", "reason": reason, "detail": detail }),
        ),
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(verdict: Verdict) -> &'static str {
        match verdict {
            Verdict::Ready => "ready",
            Verdict::NotReady { reason, .. } => reason,
        }
    }

    #[test]
    fn ready_only_when_started_not_draining_and_the_store_answers() {
        assert_eq!(reason(judge(READY, Some(Ok(())))), "ready");
        assert_eq!(reason(judge(STARTING, Some(Ok(())))), "starting");
        assert_eq!(reason(judge(DRAINING, Some(Ok(())))), "draining");
        assert_eq!(
            reason(judge(READY, Some(Err("disk I/O error".into())))),
            "store_unreachable"
        );
        assert_eq!(reason(judge(READY, None)), "store_unreachable");
    }

    #[test]
    fn a_store_error_is_quoted_in_the_detail() {
        let Verdict::NotReady { detail, .. } = judge(READY, Some(Err("disk I/O error".into())))
        else {
            panic!("not ready expected");
        };
        assert!(detail.contains("disk I/O error"), "{detail}");
    }
}
