//! `subrelay serve`: build the state, listen, and shut down gracefully.

mod body_timer;
mod connections;
mod files;
mod follow;
mod hyper_errors;
mod pool_policy;
mod reload;
#[cfg(test)]
mod snapshot_tests;
mod watch;
mod watchdog;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::http::auth::KeyDirectory;
use crate::limits::Limits;
use crate::pool::{AccountSource, Pool};
use crate::runtime_state::{Live, RuntimeState};
use crate::state::AppState;
use crate::store::accounts::StoreAccounts;
use crate::store::data_dir::DataDir;
use crate::store::usage_writer::{SpendMeter, StoreUsageSink, UsageWriter};
use crate::upstream::session::SessionIds;

pub use pool_policy::pool_policy;

/// Runs the gateway until SIGINT/SIGTERM, then drains in-flight requests for up to
/// `server.shutdown_timeout`. Errors are start-up failures, worded for the operator.
#[allow(
    clippy::disallowed_methods,
    reason = "the server's own long-lived tasks (acceptor, refresher, usage writer, state keeper, \
              metrics listener, reloader, audit pruner) are joined at shutdown below; request tasks go on \
              state.tasks"
)]
pub async fn serve(config: Config) -> Result<(), String> {
    // Listen first: a start that cannot get its port (in use) stops before the data directory is
    // created or locked. Connections wait in the backlog until the accept loop runs.
    let listeners = workers::bind(
        &config.server.host,
        config.server.port,
        config.server.workers,
    )
    .await?;
    let open_files = files::raise_open_file_limit();
    let connection_policy = connections::ConnectionPolicy::new(
        config.server.header_read_timeout,
        config.server.idle_timeout,
        config.server.body_read_timeout,
        files::connection_cap(config.server.max_connections, open_files),
    );
    let data_dir = DataDir::open(&config.storage.data_dir)?;
    let opened = crate::store::startup::open(
        &config,
        &data_dir,
        crate::limits::period_starts(crate::store::now_ms()),
    )
    .await?;
    // The shared state's tasks (writer, subscriber, lease renewer) stop after the requests
    // drained, so the slots they give back still reach Redis.
    let runtime_tasks = TaskTracker::new();
    let runtime_stop = CancellationToken::new();
    let runtime = match &config.state.redis_url {
        None => RuntimeState::default(),
        Some(url) => {
            let runtime = RuntimeState::redis(
                url.expose(),
                &config.state.redis_prefix,
                config.state.lease_ttl,
                Arc::clone(&opened.sealer) as Arc<dyn crate::runtime_state::Seal>,
                &runtime_tasks,
                &runtime_stop,
            )?;
            tracing::info!(
                prefix = %config.state.redis_prefix,
                "runtime state is shared through Redis (state.backend: redis)"
            );
            if config.storage.encryption_key.is_none() {
                tracing::warn!("sign-in tokens shared through Redis are sealed with this instance's own key (storage.data_dir/encryption.key): other instances cannot read them; set the same storage.encryption_key on every instance");
            }
            runtime
        }
    };
    // Spending limits seeded from what the store holds; the usage sink counts new spending;
    // request windows in the runtime state (shared through Redis with `state.backend: redis`).
    // The store's prices replace these below, once the change counter is read.
    let prices = Arc::new(Live::new(config.price_table()));
    let limits = Arc::new(
        // Seeded below, once the keys are read: only keys with a spending limit count.
        Limits::seeded_in(&runtime, Vec::new(), Vec::new()).with_prices(Arc::clone(&prices)),
    );
    let sink = Arc::new(StoreUsageSink::new(
        data_dir.path(),
        Arc::clone(&prices),
        Arc::clone(&limits) as Arc<dyn SpendMeter>,
        config.storage.usage_queue_capacity,
    )?);
    // Bound before the state is built, so a taken metrics port stops the start early.
    let metrics_listener =
        match config.metrics.listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                format!("cannot listen for metrics on {addr} (metrics.listen): {e}")
            })?),
            None => None,
        };
    if metrics_listener.is_some() {
        crate::metrics::install();
    }
    // Read before accounts and keys are loaded: a change after this point is followed.
    let changes = opened
        .store
        .change_counter()
        .await
        .map_err(|e| format!("cannot read the store: {e}"))?;
    // The shipped prices, plus the config's and the admin API's from the store.
    prices.set(crate::store::startup::price_table(opened.store.as_ref()).await?);
    // The config's accounts are in the store now, next to those added through the admin API.
    let source = StoreAccounts {
        store: Arc::clone(&opened.store),
        sealer: Arc::clone(&opened.sealer),
    };
    let accounts = source
        .load()
        .await
        .map_err(|e| format!("cannot load accounts: {e}"))?;
    crate::upstream::trust::install(&config.upstream.extra_roots)?;
    let accounts = accounts
        .into_iter()
        .map(|a| {
            crate::upstream::client(a.proxy.as_ref(), config.gateway.connect_timeout)
                .map(|client| (a.clone(), client))
                .map_err(|e| format!("cannot build the HTTP client of account {}: {e}", a.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let sessions = SessionIds::new(opened.session_secret);
    let keys = KeyDirectory::with_state(opened.hasher.clone(), runtime.clone());
    // The groups' settings come from the store (the config's were written there just now),
    // so groups made through the admin API translate and map models too.
    let (groups, group_settings) = crate::store::startup::groups(opened.store.as_ref()).await?;
    let stored_keys = opened
        .store
        .list_keys()
        .await
        .map_err(|e| format!("cannot read API keys from the store: {e}"))?;
    limits.limited_at_start(&stored_keys, &opened.day_spend, &opened.month_spend);
    keys.load(&stored_keys, groups);
    let (reload_requests, reload_queue) = crate::config::ReloadRequests::channel();
    let state = Arc::new(AppState {
        gateway_config: Live::new(config.gateway.clone()),
        groups: Live::new(group_settings),
        oauth: config.oauth.clone(),
        pool: Pool::with_state(accounts, pool_policy(&config.gateway), runtime.clone())?,
        keys,
        snapshot_writes: tokio::sync::Mutex::new(()),
        limits,
        prices,
        store: Arc::clone(&opened.store),
        sealer: Arc::clone(&opened.sealer),
        usage: sink.clone(),
        data_dir,
        sessions,
        admin_token: config.admin.token.clone(),
        access_log: config.log.access,
        tasks: TaskTracker::new(),
        websocket_refusals: crate::upstream::websocket::Refusals::new(&runtime),
        shutdown: CancellationToken::new(),
        config_origin: Live::new(config.origin.clone()),
        reload: reload_requests,
        runtime,
        clients: crate::http::client_addr::ClientLimits {
            trusted_proxies: config.server.trusted_proxies.clone(),
            admin_failures: Default::default(),
        },
    });
    crate::relay::warm_token_counter(&state);
    // Started before anything runs, so a file that cannot be watched stops the start cleanly.
    let watch = match (&config.origin.file, config.config_file.watch) {
        (Some(file), true) => Some(watch::start(file)?),
        (None, true) => {
            tracing::warn!("config.watch is set but there is no --config file to watch");
            None
        }
        (_, false) => None,
    };
    let restored = crate::store::tokens::restore(state.tokens(), &state.pool).await?;
    if restored > 0 {
        tracing::info!(
            "{restored} sign-in account(s) use tokens saved in the store (rotated since the config was written)"
        );
    }
    let (saved_states, restored) =
        crate::store::account_state::restore(state.account_state()).await?;
    if restored > 0 {
        tracing::info!(
            "{restored} account(s) keep the state they had before the restart (disabled, rate-limited until its reset, quota)"
        );
    }

    let stop_signal = shutdown_signal();
    let addr = listeners.addr;
    let (first, others) = listeners.split();

    let stop_accepting = CancellationToken::new();
    // One router for all connections and workers: each connection gets a clone (shared
    // routes), it is never rebuilt.
    let console = crate::admin::dashboard::Console::new(config.admin.session_ttl, &state.runtime);
    let app = crate::routes::app(Arc::clone(&state), Arc::new(console));
    let mut extra_workers = Vec::with_capacity(others.len());
    for (i, listener) in others.into_iter().enumerate() {
        extra_workers.push(workers::spawn(
            i + 1,
            listener,
            app.clone(),
            stop_accepting.clone(),
            Arc::clone(&connection_policy),
            state.tasks.clone(),
        )?);
    }
    announce(&config, &state, addr);
    let server = tokio::spawn(workers::accept(
        first,
        app,
        stop_accepting.clone(),
        connection_policy,
    ));
    // Health probes (gateway.probe_interval); they stop with state.shutdown.
    let prober = config.gateway.probe_interval.map(|every| {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let shutdown = state.shutdown.clone();
            crate::relay::probe::probe_loop(Arc::clone(&state), every, shutdown).await
        })
    });
    let refresher = tokio::spawn({
        let state = Arc::clone(&state);
        async move {
            crate::store::tokens::refresh_ahead(state.tokens(), &state.pool, state.shutdown.clone())
                .await
        }
    });
    // Stopped only after the relay tasks drained, so their usage rows are written too.
    let stop_usage = CancellationToken::new();
    let usage_writer = tokio::spawn(
        UsageWriter::new(
            Arc::clone(&sink),
            Arc::clone(&opened.store),
            config.storage.usage_batch_interval,
        )
        .run(stop_usage.clone()),
    );
    let stop_state = CancellationToken::new();
    let state_keeper = tokio::spawn({
        let state = Arc::clone(&state);
        let stop = stop_state.clone();
        async move { crate::store::account_state::keep(state.account_state(), saved_states, stop).await }
    });
    // Other instances' writes to a shared store; a no-op on SQLite. With Redis, each write of
    // the store is announced to every instance, which looks at once.
    let announced = if opened.store.shared() {
        state.runtime.store_changes()
    } else {
        None
    };
    if announced.is_some() {
        let runtime = state.runtime.clone();
        opened
            .store
            .on_change(Box::new(move || runtime.publish_store_change()));
    }
    let follower = tokio::spawn(follow::run(
        Arc::clone(&state),
        changes,
        follow::poll_every(config.storage.change_poll, announced.is_some()),
        announced,
        state.shutdown.clone(),
    ));
    // Stopped with the connections: it answers while the gateway drains.
    let metrics_server = metrics_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!("Prometheus metrics on http://{addr}/metrics");
        }
        let pool_of = Arc::clone(&state);
        let read_pool: crate::metrics::ReadPool = Box::new(move || crate::metrics::PoolReading {
            waiting: pool_of.pool.waiting(),
            state_backend_up: pool_of.runtime.backend_up(),
            state_round_trips: pool_of.runtime.round_trips(),
            accounts: pool_of
                .pool
                .views()
                .into_iter()
                .map(|view| (view.name, view.state, view.performance.demoted))
                .collect(),
        });
        tokio::spawn(crate::metrics::serve(
            listener,
            read_pool,
            crate::metrics::install(),
            stop_accepting.clone(),
        ))
    });
    let drain_delay = config.server.drain_delay;
    let grace = config.server.shutdown_timeout;
    // Old audit rows go at start, then hourly; stopped with state.shutdown.
    let pruner = tokio::spawn({
        let state = Arc::clone(&state);
        let retention = config.admin.audit_retention;
        async move {
            crate::store::audit::prune(state.store.as_ref(), retention, state.shutdown.clone())
                .await
        }
    });
    // Installed before the server says it is ready: from then on SIGHUP reloads.
    let reloader = tokio::spawn(reload::run(
        Arc::clone(&state),
        config,
        reload::Hangup::install(),
        reload_queue,
        watch,
    ));
    crate::routes::ready::set_ready();

    stop_signal.await;
    crate::routes::ready::set_draining();
    if !drain_delay.is_zero() {
        tracing::info!(
            "draining: /readyz answers 503; new requests are still served for {} s (server.drain_delay)",
            drain_delay.as_secs()
        );
        tokio::time::sleep(drain_delay).await;
    }
    tracing::info!(
        in_flight = state.tasks.len(),
        "shutting down: no new connections; waiting up to {} s for in-flight requests",
        grace.as_secs()
    );
    stop_accepting.cancel();
    state.shutdown.cancel();
    let _ = refresher.await;
    let _ = reloader.await;
    let _ = pruner.await;
    let _ = follower.await;
    if let Some(prober) = prober {
        let _ = prober.await;
    }
    state.tasks.close();
    let drained = tokio::time::timeout(grace, async {
        let _ = server.await;
        for worker in &mut extra_workers {
            let _ = (&mut worker.stopped).await;
        }
        state.tasks.wait().await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all requests finished; bye"),
        Err(_) => tracing::warn!(
            still_running = state.tasks.len(),
            "server.shutdown_timeout reached; exiting with requests still running"
        ),
    }
    runtime_stop.cancel();
    runtime_tasks.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), runtime_tasks.wait()).await;
    if let Some(mut metrics_server) = metrics_server {
        // A scrape in progress gets a moment; a client holding the connection does not hold us.
        if tokio::time::timeout(std::time::Duration::from_secs(2), &mut metrics_server)
            .await
            .is_err()
        {
            metrics_server.abort();
        }
    }
    stop_state.cancel();
    let _ = state_keeper.await;
    stop_usage.cancel();
    let _ = usage_writer.await;
    state.store.close().await;
    if drained.is_ok() {
        // Their relay tasks are done, so the threads are ending.
        for worker in extra_workers {
            worker.join();
        }
    }
    Ok(())
}

/// The first lines a user reads: where we listen, and what to do next.
fn announce(config: &Config, state: &AppState, addr: SocketAddr) {
    tracing::info!(
        "subrelay {} listening on http://{addr} ({} worker thread{})",
        env!("CARGO_PKG_VERSION"),
        config.server.workers,
        if config.server.workers == 1 { "" } else { "s" }
    );
    match &config.origin.file {
        Some(file) => tracing::info!("config: {}", file.display()),
        None => tracing::info!("config: built-in defaults (no --config file given)"),
    }
    for key in &config.origin.from_env {
        tracing::info!(
            "{key} set from environment variable {}",
            crate::config::env_name(key)
        );
    }
    let accounts = state.pool.accounts().len();
    if accounts == 0 {
        tracing::warn!(
            "no upstream accounts: add one under `accounts:` in a config file (see README, Quickstart) and restart with `subrelay serve --config subrelay.yaml`"
        );
    } else {
        tracing::info!("{accounts} upstream account(s) in the pool");
    }
    if state.keys.is_empty() {
        let admin_env = crate::config::env_name("admin.token");
        let or_cli = match (&state.admin_token, &config.origin.file) {
            (Some(_), Some(file)) => format!(
                "or with `subrelay keys create NAME --config {}`",
                file.display()
            ),
            (Some(_), None) => {
                format!("or with `{admin_env}=<the admin token> subrelay keys create NAME`")
            }
            // The CLI needs the admin API, which is off: say how to turn it on first.
            (None, _) => format!(
                "or set admin.token (for example `admin: {{token: env:{admin_env}}}`) and restart to create keys with `subrelay keys create NAME` or the dashboard"
            ),
        };
        tracing::warn!(
            "no API keys: add one under `api_keys:` (for example `- key: env:MY_SUBRELAY_KEY`) {or_cli}; until then every request is refused with 401"
        );
    } else {
        tracing::info!("{} API key(s) accepted", state.keys.len());
    }
    let spool = state.data_dir.path().join("usage-spool");
    match &config.storage.backend {
        crate::config::StorageBackend::Sqlite => tracing::info!(
            "store: {} (usage spool: {})",
            state
                .data_dir
                .path()
                .join(crate::store::sqlite::FILE_NAME)
                .display(),
            spool.display()
        ),
        crate::config::StorageBackend::Postgres { .. } => tracing::info!(
            "store: PostgreSQL (storage.postgres_url), shared with the other instances; changes made through any of them apply here within a second (usage spool: {})",
            spool.display()
        ),
    }
    match &state.admin_token {
        Some(_) => {
            tracing::info!("dashboard on http://{addr}/admin/ (sign in with admin.token)");
            tracing::info!(
                "admin API on http://{addr}/admin/api/ (OpenAPI: /admin/api/openapi.json; `subrelay accounts`, `subrelay keys`, `subrelay usage` with --config of this server)"
            );
        }
        None => tracing::info!(
            "admin API and dashboard off: set admin.token (for example `admin: {{token: env:{}}}`) and restart to manage keys, accounts and usage (`subrelay keys`, `subrelay accounts`, `subrelay usage`, http://{addr}/admin/)",
            crate::config::env_name("admin.token")
        ),
    }
    tracing::info!(
        "point clients at http://{addr}/v1 (OpenAI SDKs: base_url; Codex CLI: a model provider with wire_api = \"responses\")"
    );
}

/// SIGINT or SIGTERM. SIGTERM's handler is installed when this is called (not when the future is
/// first polled), so a signal that arrives right after the start-up banner still shuts down
/// gracefully instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let terminate = async move {
            match terminate {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate => {},
        }
    }
}
