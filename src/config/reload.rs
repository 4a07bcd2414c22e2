//! Configuration reload (SIGHUP, `subrelay reload`): what may change while the gateway runs,
//! what a change to the rest means (a restart), and how the admin API asks the server for one.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::reference::KEYS;
use super::Config;

/// Whether a dotted key of the reference takes effect on reload. Accounts, keys, groups and
/// prices are lists (not in the reference) and always do.
pub fn is_live(path: &str) -> bool {
    path.starts_with("gateway.") || path == "log.level"
}

/// The keys that differ between the running configuration and `new` but apply only at the next
/// start (listen address, storage, workers, the admin token, ...), in reference order.
pub fn restart_needed(running: &Config, new: &Config) -> Vec<&'static str> {
    let parse = |yaml: &str| serde_yaml::from_str::<serde_yaml::Value>(yaml).unwrap_or_default();
    let (old_tree, new_tree) = (
        parse(&running.origin.effective_yaml),
        parse(&new.origin.effective_yaml),
    );
    let expose = |s: Option<&super::Secret>| s.map(|s| s.expose().to_owned());
    KEYS.iter()
        .map(|key| key.path)
        .filter(|path| !is_live(path))
        .filter(|path| {
            // Secrets are redacted in the effective YAML: compare the values themselves.
            match *path {
                "admin.token" => {
                    expose(running.admin.token.as_ref()) != expose(new.admin.token.as_ref())
                }
                "storage.postgres_url" => {
                    postgres_url(&running.storage.backend) != postgres_url(&new.storage.backend)
                }
                "storage.encryption_key" => {
                    expose(running.storage.encryption_key.as_ref())
                        != expose(new.storage.encryption_key.as_ref())
                }
                _ => super::get_path(&old_tree, path) != super::get_path(&new_tree, path),
            }
        })
        .collect()
}

fn postgres_url(backend: &super::StorageBackend) -> Option<&str> {
    match backend {
        super::StorageBackend::Postgres { url, .. } => Some(url.expose()),
        super::StorageBackend::Sqlite => None,
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct ReloadReport {
    /// The file that was read.
    pub file: String,
    /// What changed and is in effect now, out of `accounts`, `api_keys`, `groups`, `prices`,
    /// `gateway` and `log.level`.
    pub applied: Vec<String>,
    /// Keys whose new value differs from the running one but applies only after a restart.
    pub restart_needed: Vec<String>,
}

/// A reload's answer: what it did, or why the file was refused (the running configuration
/// stays).
pub type ReloadReply = Result<ReloadReport, String>;

/// One request for a reload: who asked (for the audit trail) and where the answer goes.
pub struct ReloadRequest {
    /// Who asked through the admin API (`admin-token`, `cli`, `dashboard (session …)`).
    pub by: String,
    /// The client's address.
    pub client: Option<String>,
    pub reply: oneshot::Sender<ReloadReply>,
}

/// How a handler asks the server to reload: the server's reload task takes one request at a
/// time, so reloads never overlap.
#[derive(Clone)]
pub struct ReloadRequests(mpsc::Sender<ReloadRequest>);

impl ReloadRequests {
    /// The handle, and the receiving end the server's reload task reads.
    pub fn channel() -> (Self, mpsc::Receiver<ReloadRequest>) {
        let (tx, rx) = mpsc::channel(4);
        (Self(tx), rx)
    }

    /// Asks for a reload on behalf of `by` (from `client`) and waits for its answer.
    pub async fn reload(&self, by: String, client: Option<String>) -> ReloadReply {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(ReloadRequest {
                by,
                client,
                reply: tx,
            })
            .await
            .map_err(|_| "the server is shutting down".to_owned())?;
        rx.await
            .map_err(|_| "the server is shutting down".to_owned())?
    }
}
