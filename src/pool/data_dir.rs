//! State kept across restarts in `storage.data_dir`: rotated sign-in tokens (`tokens.json`) and
//! the secret that derives upstream session ids (`session.key`). Files are owner-only and
//! replaced atomically (write a temporary file, sync, rename), so a crash leaves either the old
//! or the new content, never half of one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Secret;

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

#[derive(Default, Serialize, Deserialize)]
struct TokenFile {
    accounts: BTreeMap<String, PersistedTokens>,
}

pub struct DataDir {
    root: PathBuf,
    /// Serialises read-modify-write of `tokens.json` between accounts refreshing at once.
    tokens_lock: Mutex<()>,
}

impl DataDir {
    /// Creates the directory (owner-only) if needed.
    pub fn open(root: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create storage.data_dir {}: {e}", root.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self {
            root: root.to_path_buf(),
            tokens_lock: Mutex::new(()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn tokens_path(&self) -> PathBuf {
        self.root.join("tokens.json")
    }

    /// Every persisted token chain, by account name.
    pub fn load_tokens(&self) -> Result<BTreeMap<String, PersistedTokens>, String> {
        let path = self.tokens_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<TokenFile>(&bytes)
                .map(|f| f.accounts)
                .map_err(|e| {
                    format!(
                        "{} is damaged ({e}); move it away to start fresh",
                        path.display()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Stores one account's tokens; returns only once they are durably on disk.
    pub fn save_tokens(&self, account: &str, tokens: PersistedTokens) -> Result<(), String> {
        let _guard = self.tokens_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut accounts = self.load_tokens().unwrap_or_default();
        accounts.insert(account.to_owned(), tokens);
        let bytes = serde_json::to_vec_pretty(&TokenFile { accounts })
            .map_err(|e| format!("cannot encode tokens: {e}"))?;
        write_atomically(&self.tokens_path(), &bytes)
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
    fn tokens_survive_a_reopen_and_files_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::open(dir.path()).unwrap();
        let tokens = PersistedTokens::new(
            "seed",
            &Secret::new("access-2"),
            Some(&Secret::new("refresh-2")),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000)),
        );
        data.save_tokens("codex", tokens).unwrap();
        let again = DataDir::open(dir.path()).unwrap().load_tokens().unwrap();
        assert_eq!(again["codex"].refresh_token.as_deref(), Some("refresh-2"));
        assert_eq!(again["codex"].expires_at, Some(2_000_000_000));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tokens.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let s1 = data.secret("session.key").unwrap();
        let s2 = DataDir::open(dir.path())
            .unwrap()
            .secret("session.key")
            .unwrap();
        assert_eq!(s1, s2);
    }
}
