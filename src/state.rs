//! What every request shares: settings, the pool, the keys and their limits, the store, the
//! upstream clients, the usage sink, and the tracker of relay tasks (so shutdown can wait for them).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigOrigin, GatewayConfig, GroupSettings, OAuthConfig};
use crate::domain::Secret;
use crate::http::auth::KeyDirectory;
use crate::limits::Limits;
use crate::pool::Pool;
use crate::pricing::PriceTable;
use crate::runtime_state::{Live, RuntimeState};
use crate::store::account_state::StateKeeper;
use crate::store::crypto::Sealer;
use crate::store::data_dir::DataDir;
use crate::store::tokens::TokenKeeper;
use crate::store::Store;
use crate::upstream::session::SessionIds;
use crate::usage::UsageSink;

pub struct AppState {
    /// `gateway.*`, replaced by a configuration reload: read it through [`AppState::gateway`].
    pub gateway_config: Live<GatewayConfig>,
    /// `groups[].translate`, `groups[].model_map` and `groups[].model_fallback` as the store
    /// holds them (the config file's groups and the admin API's), replaced whole when they
    /// change: by the admin API, a configuration reload, or the change follower. Read them
    /// through [`AppState::group_settings`].
    pub groups: Live<GroupSettings>,
    pub oauth: OAuthConfig,
    pub pool: Pool,
    /// Every API key (config and admin-created); updated in place by the admin API.
    pub keys: KeyDirectory,
    /// One writer of the running snapshot of keys, groups and accounts at a time. The admin
    /// API holds it from its store write to its snapshot update (a change to an existing key,
    /// group or account from its read of the record, so two changes at once cannot each write
    /// the record as it was before the other), a reload from the store
    /// (`server::reload::from_store`) from its store read to its snapshot swap: without it, a
    /// reload that read the store just before a change could put the old list back after the
    /// change applied (a new key refused, a deleted one served, until the next reload).
    pub snapshot_writes: tokio::sync::Mutex<()>,
    /// Per-key rpm and spending limits, checked after inspect.
    pub limits: Arc<Limits>,
    /// The shipped prices with the config's `prices:` (shared with the limits and the usage
    /// sink), replaced by a configuration reload.
    pub prices: Arc<Live<PriceTable>>,
    /// Groups, keys, accounts and usage that outlive a restart.
    pub store: Arc<dyn Store>,
    /// Seals account credentials before they reach the store.
    pub sealer: Arc<Sealer>,
    pub usage: Arc<dyn UsageSink>,
    pub data_dir: DataDir,
    pub sessions: SessionIds,
    /// `None`: the admin API is off.
    pub admin_token: Option<Secret>,
    /// `log.access`: one access line per request (src/http/access.rs).
    pub access_log: bool,
    /// Accounts whose upstream refused the Responses WebSocket upgrade lately: their WebSocket
    /// turns go over HTTP.
    pub websocket_refusals: crate::upstream::websocket::Refusals,
    /// Every relay task; shutdown closes it and waits for the in-flight ones to drain.
    pub tasks: TaskTracker,
    /// Where the configuration came from (file, environment), for the Settings page; replaced
    /// by a configuration reload.
    pub config_origin: Live<ConfigOrigin>,
    /// Asks the server to re-read the configuration file (the admin API's reload).
    pub reload: crate::config::ReloadRequests,
    /// Where runtime state lives (pool health and slots, sticky bindings, the dashboard's
    /// sessions and flows).
    pub runtime: RuntimeState,
    /// Body read time, trusted proxies, failed admin authentications.
    pub clients: crate::http::client_addr::ClientLimits,
    /// Cancelled at shutdown; background loops stop on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// `gateway.*` now; a request keeps what it read.
    pub fn gateway(&self) -> Arc<GatewayConfig> {
        self.gateway_config.get()
    }

    /// The groups' routing settings now; a request keeps what it read.
    pub fn group_settings(&self) -> Arc<GroupSettings> {
        self.groups.get()
    }

    /// What keeping the accounts' state across restarts needs (`store::account_state`).
    pub fn account_state(&self) -> StateKeeper<'_> {
        StateKeeper {
            pool: &self.pool,
            store: self.store.as_ref(),
            hasher: self.keys.hasher(),
        }
    }

    /// What sign-in token work needs (`store::tokens`).
    pub fn tokens(&self) -> TokenKeeper<'_> {
        TokenKeeper {
            oauth: &self.oauth,
            store: self.store.as_ref(),
            sealer: &self.sealer,
        }
    }
}
