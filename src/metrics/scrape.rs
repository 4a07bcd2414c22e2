//! The `/metrics` listener (`metrics.listen`), and the values read when it is scraped.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio_util::sync::CancellationToken;

use super::labels::{AccountLabels, AccountStateLabels};
use super::Metrics;

/// The states `subrelay_account_state` shows; `busy` (all slots taken) counts as available.
const STATES: [&str; 3] = ["available", "cooling", "disabled"];

/// A scrape larger than this is cut off rather than allocated without end (thousands of
/// accounts would be needed to reach it).
const MAX_EXPOSITION: usize = 8 * 1024 * 1024;

/// The pool as it is when scraped: requests waiting for a slot, and each account's name, state
/// (`available`, `busy`, `cooling` or `disabled`, as the pool's account view says) and whether it
/// is demoted (far worse than its peers lately: ranked after them).
pub struct PoolReading {
    pub waiting: usize,
    /// Whether the shared runtime state answers (`None`: state.backend local).
    pub state_backend_up: Option<bool>,
    /// Redis round trips requests waited for, and background pipelines (`None`: local).
    pub state_round_trips: Option<(u64, u64)>,
    pub accounts: Vec<(String, String, bool)>,
}

/// Reads the pool at scrape time (the server gives it; metrics knows nothing of the pool).
pub type ReadPool = Box<dyn Fn() -> PoolReading + Send + Sync>;

struct Scraper {
    read_pool: ReadPool,
    metrics: &'static Metrics,
    /// One scrape at a time: the account-state family is rebuilt, then encoded.
    encoding: Mutex<()>,
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    read_pool: ReadPool,
    metrics: &'static Metrics,
    stop: CancellationToken,
) {
    let scraper = Arc::new(Scraper {
        read_pool,
        metrics,
        encoding: Mutex::new(()),
    });
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(scraper);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("the metrics listener stopped: {e}");
    }
}

async fn scrape(State(scraper): State<Arc<Scraper>>) -> Response {
    // Encoding reads /proc (process.rs): a blocking thread, off the runtime.
    let encoded = tokio::task::spawn_blocking(move || scraper.exposition())
        .await
        .unwrap_or_else(|e| Err(format!("the scrape failed: {e}")));
    match encoded {
        Ok(text) => (
            [(
                http::header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(why) => {
            tracing::error!("cannot encode the metrics: {why}");
            (http::StatusCode::INTERNAL_SERVER_ERROR, why).into_response()
        }
    }
}

impl Scraper {
    fn exposition(&self) -> Result<String, String> {
        let _one_at_a_time = self.encoding.lock().unwrap_or_else(|p| p.into_inner());
        self.read_pool();
        let mut text = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.metrics.registry)
            .map_err(|_| "the exposition could not be written".to_owned())?;
        if text.len() > MAX_EXPOSITION {
            return Err(format!(
                "the exposition is {} bytes, more than the {MAX_EXPOSITION} allowed",
                text.len()
            ));
        }
        Ok(text)
    }

    /// The pool as it is now: each account's state, and the queue.
    fn read_pool(&self) {
        let metrics = self.metrics;
        let i64_of = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let pool = (self.read_pool)();
        metrics.queue_waiting.set(i64_of(pool.waiting));
        // The local state is always there.
        metrics
            .state_backend_up
            .set(i64::from(pool.state_backend_up.unwrap_or(true)));
        if let Some((waited, pipelines)) = pool.state_round_trips {
            metrics
                .state_calls
                .get_or_create(&super::labels::KindLabels { kind: "waited" })
                .set(i64::try_from(waited).unwrap_or(i64::MAX));
            metrics
                .state_calls
                .get_or_create(&super::labels::KindLabels { kind: "background" })
                .set(i64::try_from(pipelines).unwrap_or(i64::MAX));
        }
        // Rebuilt whole, so an account the admin API removed disappears.
        metrics.account_state.clear();
        metrics.account_demoted.clear();
        for (name, state, demoted) in &pool.accounts {
            let current = match state.as_str() {
                "busy" => "available",
                other => other,
            };
            let name = metrics.names.get(name);
            metrics
                .account_demoted
                .get_or_create(&AccountLabels {
                    account: Arc::clone(&name),
                })
                .set(i64::from(*demoted));
            for state in STATES {
                metrics
                    .account_state
                    .get_or_create(&AccountStateLabels {
                        account: Arc::clone(&name),
                        state,
                    })
                    .set(i64::from(state == current));
            }
        }
    }
}
