//! The data directory (`storage.data_dir`) and the small secrets kept in it (`session.key`, which
//! derives upstream session ids; the store's key-hash secret). Files are owner-only and written
//! atomically (write a temporary file, sync, rename), so a crash leaves either the old or the new
//! content, never half of one. Also the shape of the sign-in tokens a refresh issued, which the
//! store keeps sealed.

#![allow(
    clippy::disallowed_methods,
    reason = "the data directory is opened, locked and checked at start-up, before any request"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::domain::Secret;

/// The tokens of one sign-in account as last issued.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedTokens {
    /// Fingerprint of the config's refresh token this chain started from. When the config
    /// declares a different one (a new sign-in), the persisted chain is stale and ignored.
    pub seed: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    pub refreshed_at: u64,
}

impl PersistedTokens {
    pub fn new(
        seed: &str,
        access: &Secret,
        refresh: Option<&Secret>,
        expires_at: Option<SystemTime>,
    ) -> Self {
        Self {
            seed: seed.to_owned(),
            access_token: access.expose().to_owned(),
            refresh_token: refresh.map(|r| r.expose().to_owned()),
            expires_at: expires_at
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
            refreshed_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at.map(|s| UNIX_EPOCH + Duration::from_secs(s))
    }
}

/// The lock file inside the data directory; a running subrelay holds an exclusive advisory lock
/// on it, so a second one on the same directory stops at start instead of sharing the store.
pub const LOCK_FILE: &str = "subrelay.lock";

pub struct DataDir {
    root: PathBuf,
    /// Held (locked) for as long as the process uses the directory; the OS releases it on exit,
    /// a crash included, so there is never a stale lock to clean up.
    _lock: std::fs::File,
}

impl DataDir {
    /// Creates the directory (owner-only) if needed and locks it.
    pub fn open(root: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create storage.data_dir {}: {e}", root.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self {
            _lock: lock(root)?,
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A 32-byte secret stored in `name`, created on first use.
    pub fn secret(&self, name: &str) -> Result<[u8; 32], String> {
        let path = self.root.join(name);
        if let Ok(text) = std::fs::read_to_string(&path) {
            let bytes = decode_hex(text.trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| format!("{} is damaged: expected 64 hex digits", path.display()))?;
            let mut out = [0u8; 32];
            out.copy_from_slice(&bytes);
            return Ok(out);
        }
        let secret: [u8; 32] = rand::random();
        let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        write_atomically(&path, text.as_bytes())?;
        Ok(secret)
    }
}

/// Opens `root/subrelay.lock` and takes an exclusive, non-blocking lock on it.
fn lock(root: &Path) -> Result<std::fs::File, String> {
    let path = root.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(format!(
                    "storage.data_dir {} is in use by another subrelay (it holds the lock on {}); stop that one, or give this one another storage.data_dir",
                    root.display(),
                    path.display()
                ));
            }
            Err(e) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
    Ok(file)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let fail = |what: &str, e: std::io::Error| format!("cannot {what} {}: {e}", tmp.display());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(|e| fail("create", e))?;
    file.write_all(bytes).map_err(|e| fail("write", e))?;
    file.sync_all().map_err(|e| fail("sync", e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_survive_a_reopen_and_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let s1 = data.secret("session.key").unwrap();
        drop(data);
        let s2 = DataDir::open(dir.path())
            .unwrap()
            .secret("session.key")
            .unwrap();
        assert_eq!(s1, s2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("session.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_second_open_of_a_locked_directory_is_refused_until_the_first_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path()).unwrap();
        let Err(err) = DataDir::open(dir.path()) else {
            panic!("a second open of a locked data directory succeeded");
        };
        assert!(
            err.contains("is in use by another subrelay") && err.contains(LOCK_FILE),
            "{err}"
        );
        drop(first);
        assert!(
            DataDir::open(dir.path()).is_ok(),
            "the lock outlived its holder"
        );
    }
}
