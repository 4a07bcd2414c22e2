//! What every request shares: settings, the pool, the keys, the upstream clients, the usage
//! sink, and the tracker of relay tasks (so shutdown can wait for them).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{GatewayConfig, OAuthConfig, Secret};
use crate::http::auth::KeyDirectory;
use crate::pool::data_dir::DataDir;
use crate::pool::{Account, Pool};
use crate::upstream::session::SessionIds;
use crate::usage::UsageSink;

pub struct AppState {
    pub gateway: GatewayConfig,
    pub oauth: OAuthConfig,
    pub pool: Pool,
    pub keys: KeyDirectory,
    /// One HTTP client (connection pool, proxy) per account, indexed by account id.
    pub clients: Vec<reqwest::Client>,
    pub usage: Arc<dyn UsageSink>,
    pub data_dir: DataDir,
    pub sessions: SessionIds,
    /// `None`: the admin API is off.
    pub admin_token: Option<Secret>,
    /// Every relay task; shutdown closes it and waits for the in-flight ones to drain.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown; background loops stop on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn client_for(&self, account: &Account) -> &reqwest::Client {
        &self.clients[account.id]
    }
}
