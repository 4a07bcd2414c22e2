//! `config.watch`: the configuration file's changes start a reload, as SIGHUP does
//! (`reload.rs` takes them in turn with the other reload requests).
//!
//! The watch is on the file's directory, not on the file: an editor that saves by writing a new
//! file and renaming it over the old one replaces the inode a watch on the file would hold. Events
//! are debounced: the reload starts once [`DEBOUNCE`] passed without another one, so a save that
//! truncates then writes, or several saves in a row, reload once, with the file complete. The
//! watcher (its own thread, owned by [`Watch`]) stops when the reload task drops it at shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Quiet time after the last event before the file is read.
pub(super) const DEBOUNCE: Duration = Duration::from_millis(500);

/// A running watch of one file.
pub(super) struct Watch {
    /// Dropped with the watch: that stops notify's thread.
    _watcher: notify::RecommendedWatcher,
    events: mpsc::Receiver<()>,
}

/// Starts watching `file` (through its directory).
pub(super) fn start(file: &Path) -> Result<Watch, String> {
    let absolute = std::path::absolute(file)
        .map_err(|e| format!("config.watch: cannot resolve {}: {e}", file.display()))?;
    let dir = absolute
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let name = absolute.file_name().map(ToOwned::to_owned);
    // One pending signal is enough: the reload reads the whole file anyway.
    let (tx, events) = mpsc::channel(1);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                // The file itself, or Kubernetes' `..data` link: a mounted ConfigMap is updated
                // by pointing that link at a new directory, never by touching the file's name.
                let relevant = !matches!(event.kind, EventKind::Access(_))
                    && (event.paths.is_empty()
                        || event.paths.iter().any(|p| {
                            let file = p.file_name().map(ToOwned::to_owned);
                            file == name || file.as_deref() == Some(std::ffi::OsStr::new("..data"))
                        }));
                if relevant {
                    let _ = tx.try_send(());
                }
            }
            Err(e) => tracing::warn!("config.watch: {e}"),
        })
        .map_err(|e| format!("config.watch: cannot watch files here: {e}"))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("config.watch: cannot watch {}: {e}", dir.display()))?;
    tracing::info!(file = %absolute.display(), "config.watch: a change to the file reloads it");
    Ok(Watch {
        _watcher: watcher,
        events,
    })
}

/// Resolves when the file changed and then stayed quiet for [`DEBOUNCE`]; never without a watch.
pub(super) async fn changed(watch: &mut Option<Watch>) {
    match watch {
        Some(watch) => debounced(&mut watch.events).await,
        None => std::future::pending().await,
    }
}

/// Resolves once an event came and [`DEBOUNCE`] then passed without another one.
async fn debounced(events: &mut mpsc::Receiver<()>) {
    if events.recv().await.is_none() {
        return std::future::pending().await;
    }
    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_events_resolves_once_after_the_last_one_went_quiet() {
        let (tx, mut events) = mpsc::channel(1);
        let start = tokio::time::Instant::now();
        let burst = async {
            for _ in 0..3 {
                tx.send(()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        };
        let ((), ()) = tokio::join!(debounced(&mut events), burst);
        // The last event came at 600 ms; the quiet time after it ends at 1,100 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
        // Nothing more came: the next wait does not resolve.
        let next = tokio::time::timeout(Duration::from_secs(60), debounced(&mut events)).await;
        assert!(next.is_err());
    }
}
