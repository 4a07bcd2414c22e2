//! What every request shares: settings, the pool, the keys, the upstream client, the usage
//! sink, and the tracker of relay tasks (so shutdown can wait for them).

use std::sync::Arc;

use tokio_util::task::TaskTracker;

use crate::config::GatewayConfig;
use crate::http::auth::KeyDirectory;
use crate::pool::Pool;
use crate::usage::UsageSink;

pub struct AppState {
    pub gateway: GatewayConfig,
    pub pool: Pool,
    pub keys: KeyDirectory,
    pub client: reqwest::Client,
    pub usage: Arc<dyn UsageSink>,
    /// Every relay task; shutdown closes it and waits for the in-flight ones to drain.
    pub tasks: TaskTracker,
}
