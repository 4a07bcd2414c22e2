//! `subrelay store copy --from sqlite:PATH --to postgres://…`: moves a single-instance store
//! (the SQLite file and the secrets beside it in its data directory) into a shared PostgreSQL
//! database (`store::copy`). The source's data directory is locked while it runs, so a subrelay
//! still serving from it stops the copy.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{ProcessEnv, SecretRef};
use crate::store::copy::{copy, DirSecrets};
use crate::store::crypto::Sealer;
use crate::store::data_dir::DataDir;
use crate::store::keys::HASH_SECRET_FILE;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{SqliteStore, FILE_NAME};
use crate::store::startup::SESSION_SECRET_FILE;
use crate::store::Store;

pub struct CopyArgs {
    pub from: String,
    pub to: String,
    pub encryption_key: Option<String>,
}

pub fn copy_command(args: CopyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("subrelay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(report) => {
            println!("copied {report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("subrelay store copy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sqlite:PATH`: the data directory, or the `subrelay.db` in it.
fn source_dir(from: &str) -> Result<PathBuf, String> {
    let path = from
        .strip_prefix("sqlite:")
        .ok_or("--from: must be sqlite:PATH (the data directory, or its subrelay.db)")?;
    let path = Path::new(path);
    let dir = if path.file_name().is_some_and(|n| n == FILE_NAME) {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    if !dir.join(FILE_NAME).exists() {
        return Err(format!("--from: no {FILE_NAME} in {}", dir.display()));
    }
    Ok(dir)
}

async fn run(args: CopyArgs) -> Result<crate::store::copy::Copied, String> {
    let dir = source_dir(&args.from)?;
    let to = SecretRef::new(args.to)
        .resolve(&ProcessEnv)
        .map_err(|e| format!("--to: {e}"))?;
    if !(to.expose().starts_with("postgres://") || to.expose().starts_with("postgresql://")) {
        return Err("--to: must be a postgres:// URL (or env:NAME / file:PATH holding one)".into());
    }
    let data_dir = DataDir::open(&dir)?;
    let key = args
        .encryption_key
        .map(|k| SecretRef::new(k).resolve(&ProcessEnv))
        .transpose()
        .map_err(|e| format!("--encryption-key: {e}"))?;
    let (sealer, _) = Sealer::from_config(key.as_ref(), &data_dir)?;
    let secrets = DirSecrets {
        key_hash: data_dir.secret(HASH_SECRET_FILE)?,
        session: data_dir.secret(SESSION_SECRET_FILE)?,
    };
    let from = SqliteStore::open(&dir).await?;
    let dest = PostgresStore::open(&to, 4).await?;
    let result = copy(&from, &dest, &sealer, &secrets).await;
    from.close().await;
    dest.close().await;
    result
}
