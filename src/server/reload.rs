//! Configuration reload without a restart: SIGHUP, or `POST /admin/api/reload` (`subrelay
//! reload`), re-reads the file the server started with.
//!
//! The file is loaded and validated as at start; a file that does not load is refused whole and
//! nothing changes. Then, in order: the file's groups, keys and accounts are written into the
//! store (`store::sync`, as at start), the pool takes the accounts that are new or changed and
//! drops the removed ones (a request in flight keeps the `Arc<Account>` it holds, so it finishes
//! on the account it started with), the key directory is reloaded from the store (keys that stay
//! keep their slots) with the groups' `translate`, `model_map` and `model_fallback` (stored
//! with the groups), and `gateway.*`, the prices and `log.level` are swapped for the next
//! request. Keys that only apply at start (listen address, storage, workers, ...) are named in
//! the log when they differ. One reload at a time: a single task takes SIGHUP and the admin
//! API's requests in turn.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{reload::restart_needed, Config, ProcessEnv, ReloadReply, ReloadReport};
use crate::pool::AccountSource;
use crate::state::AppState;
use crate::store::accounts::StoreAccounts;
use crate::store::audit::Actor;

/// SIGHUP, installed when this is called (before the server says it is ready): from then on the
/// signal reloads instead of ending the process.
pub(super) struct Hangup(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Hangup {
    pub(super) fn install() -> Self {
        #[cfg(unix)]
        {
            let signal =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            if signal.is_none() {
                tracing::warn!("cannot listen for SIGHUP: reload with `subrelay reload` instead");
            }
            Self(signal)
        }
        #[cfg(not(unix))]
        Self()
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.0 {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

/// What started a reload, for the log and the audit trail.
enum Cause {
    Hangup,
    Watch,
    /// The admin API, on behalf of `by` from `client`; the answer goes to `reply`.
    Api(crate::config::ReloadRequest),
}

/// Takes reload requests until shutdown: SIGHUP, the admin API's, and (with `config.watch`)
/// the file's changes. `running` is the configuration in effect.
pub(super) async fn run(
    state: Arc<AppState>,
    mut running: Config,
    mut hangup: Hangup,
    mut requests: mpsc::Receiver<crate::config::ReloadRequest>,
    mut watch: Option<super::watch::Watch>,
) {
    loop {
        let cause = tokio::select! {
            () = state.shutdown.cancelled() => return,
            () = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                Cause::Hangup
            }
            () = super::watch::changed(&mut watch) => {
                tracing::info!("the configuration file changed (config.watch): reloading it");
                Cause::Watch
            }
            request = requests.recv() => match request {
                Some(request) => Cause::Api(request),
                None => return,
            },
        };
        let before = state.config_origin.get();
        let result = reload(&state, &mut running).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        if let Some(metrics) = crate::metrics::get() {
            metrics.config_reload(outcome);
        }
        match &result {
            Ok(report) => announce(report),
            Err(e) => tracing::error!("configuration reload refused: {e}"),
        }
        let (actor, by, reply) = match cause {
            Cause::Hangup => (Actor::new("reload (SIGHUP)", None), None, None),
            Cause::Watch => (Actor::new("reload (watch)", None), None, None),
            Cause::Api(request) => (
                Actor::new("reload (API)", request.client),
                Some(request.by),
                Some(request.reply),
            ),
        };
        if let Ok(report) = &result {
            let (old, new) = trail(
                &before.effective_yaml,
                &state.config_origin.get().effective_yaml,
                report,
                by,
            );
            crate::store::audit::record(
                state.store.as_ref(),
                &actor,
                "config.reload",
                &report.file,
                Some(old),
                Some(new),
            )
            .await;
        }
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
    }
}

/// The audit trail's before and after of a reload: the sections that took effect, as the
/// effective YAML shows them (secrets already redacted there, and again by the trail), and in
/// the after what needs a restart and who asked through the admin API.
fn trail(
    old_yaml: &str,
    new_yaml: &str,
    report: &ReloadReport,
    by: Option<String>,
) -> (serde_json::Value, serde_json::Value) {
    let parse = |yaml: &str| {
        serde_yaml::from_str::<serde_json::Value>(yaml).unwrap_or(serde_json::Value::Null)
    };
    let (old_tree, new_tree) = (parse(old_yaml), parse(new_yaml));
    let mut old = serde_json::Map::new();
    let mut new = serde_json::Map::new();
    for section in &report.applied {
        let pointer = format!("/{}", section.replace('.', "/"));
        let pick = |tree: &serde_json::Value| {
            tree.pointer(&pointer)
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        old.insert(section.clone(), pick(&old_tree));
        new.insert(section.clone(), pick(&new_tree));
    }
    new.insert(
        "restart_needed".to_owned(),
        report.restart_needed.clone().into(),
    );
    if let Some(by) = by {
        new.insert("requested_by".to_owned(), by.into());
    }
    (old.into(), new.into())
}

fn announce(report: &ReloadReport) {
    if report.applied.is_empty() {
        tracing::info!(file = %report.file, "configuration reloaded: nothing that applies live changed");
    } else {
        tracing::info!(
            file = %report.file,
            "configuration reloaded: {} in effect now",
            report.applied.join(", ")
        );
    }
    if !report.restart_needed.is_empty() {
        tracing::warn!(
            "configuration reload: {} changed but cannot change while running; the running values stay until a restart",
            report.restart_needed.join(", ")
        );
    }
}

async fn reload(state: &AppState, running: &mut Config) -> ReloadReply {
    let Some(file) = running.origin.file.clone() else {
        return Err(
            "the server was started without --config: there is no file to re-read".to_owned(),
        );
    };
    let shown = file.display().to_string();
    // Reading the file (and `file:` secrets) blocks.
    let new = tokio::task::spawn_blocking(move || crate::config::load(Some(&file), &ProcessEnv))
        .await
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .map_err(|e| format!("{e} (in {shown}); the running configuration stays"))?;

    let mut applied = Vec::new();
    // The groups' `translate`, `model_map` and `model_fallback` reach the store with the file's
    // groups and the snapshot with `from_store` below.
    let groups_changed = new.group_settings() != running.group_settings();
    if new.groups != running.groups || groups_changed {
        applied.push("groups");
    }
    if new.api_keys != running.api_keys {
        applied.push("api_keys");
    }
    crate::store::sync::config_into_store(
        &new,
        state.store.as_ref(),
        state.keys.hasher(),
        &state.sealer,
    )
    .await
    .map_err(|e| format!("{e}; the running configuration stays"))?;
    // The file's accounts changed counts too: on a shared store this instance's change follower
    // may have taken the synced accounts into the pool before `from_store` below looks.
    let file_accounts_changed = new.accounts != running.accounts;
    if from_store(state, "the configuration reload").await? || file_accounts_changed {
        applied.push("accounts");
    }
    if new.gateway != running.gateway {
        state.pool.set_policy(super::pool_policy(&new.gateway));
        state.gateway_config.set(new.gateway.clone());
        applied.push("gateway");
    }
    // The file's prices are in the store now, and `from_store` above took them.
    if new.prices != running.prices {
        applied.push("prices");
    }
    if new.log.level != running.log.level {
        crate::telemetry::set_level(&new.log.level)
            .map_err(|e| format!("log.level = {:?}: {e}", new.log.level))?;
        applied.push("log.level");
    }
    let restart = restart_needed(running, &new);
    let report = ReloadReport {
        file: new
            .origin
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_default(),
        applied: applied.into_iter().map(String::from).collect(),
        restart_needed: restart.iter().map(|k| (*k).to_owned()).collect(),
    };
    // The running configuration takes what is now in effect; the rest keeps the values the
    // server started with, so the next reload names them again.
    running.groups = new.groups;
    running.group_routing = new.group_routing;
    running.model_fallback = new.model_fallback;
    running.api_keys = new.api_keys;
    running.accounts = new.accounts;
    running.gateway = new.gateway;
    running.prices = new.prices;
    running.log.level = new.log.level;
    state.config_origin.set(new.origin);
    Ok(report)
}

/// The running snapshot takes what the store holds now: its accounts (see [`accounts`]), then its
/// keys and groups (keys that stay keep their slots), then the groups' `translate`, `model_map`
/// and `model_fallback` (after the accounts, so a group that starts translating finds its
/// accounts in the pool), then its prices. Whether an account changed. Used by the
/// configuration reload and, on a shared store, whenever another instance wrote
/// (`server::follow`). `why` names the cause in the log.
pub(super) async fn from_store(state: &AppState, why: &str) -> Result<bool, String> {
    let _snapshot = state.snapshot_writes.lock().await;
    let changed = accounts(state, why).await?;
    let keys = state
        .store
        .list_keys()
        .await
        .map_err(|e| format!("cannot read API keys from the store: {e}"))?;
    let (groups, settings) = crate::store::startup::groups(state.store.as_ref()).await?;
    state.keys.load(&keys, groups);
    state.limits.follow_keys(&keys, state.store.as_ref()).await;
    if *state.group_settings() != settings {
        state.groups.set(settings);
        crate::relay::warm_token_counter(state);
    }
    let prices = crate::store::startup::price_table(state.store.as_ref()).await?;
    if *state.prices.get() != prices {
        state.prices.set(prices);
        tracing::info!("prices changed by {why}");
    }
    Ok(changed)
}

/// The pool takes the store's accounts: new or changed ones are (re)built (sign-in accounts with
/// the tokens saved since, as at start), removed ones leave selection, unchanged ones keep their
/// health, slots and tokens. Whether anything changed.
async fn accounts(state: &AppState, why: &str) -> Result<bool, String> {
    let source = StoreAccounts {
        store: Arc::clone(&state.store),
        sealer: Arc::clone(&state.sealer),
    };
    let stored = source
        .load()
        .await
        .map_err(|e| format!("cannot load accounts: {e}"))?;
    let current = state.pool.accounts();
    let mut changed = false;
    let mut rebuilt = Vec::new();
    for account in current.iter() {
        if !stored.iter().any(|spec| spec.name == account.spec.name) {
            state.pool.remove(&account.spec.name);
            tracing::info!(account = %account.spec.name, "account removed by {why}; its requests in flight finish on it");
            changed = true;
        }
    }
    for spec in stored {
        if current.iter().any(|a| a.spec == spec) {
            continue;
        }
        let name = spec.name.clone();
        let client = crate::upstream::client(spec.proxy.as_ref(), state.gateway().connect_timeout)
            .map_err(|e| format!("cannot build the HTTP client of account {name}: {e}"))?;
        state.pool.upsert(spec, client)?;
        tracing::info!(account = %name, "account added or changed by {why}");
        rebuilt.push(name);
        changed = true;
    }
    if !rebuilt.is_empty() {
        crate::store::tokens::restore_only(state.tokens(), &state.pool, Some(&rebuilt)).await?;
    }
    Ok(changed)
}
