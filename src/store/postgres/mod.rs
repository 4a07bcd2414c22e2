//! The shared backend (`storage.backend: postgres`): one PostgreSQL database that several
//! instances use at once, so they act as one gateway.
//!
//! Migrations are embedded from `migrations/postgres/` and applied at open while this instance
//! holds a session advisory lock ([`MIGRATION_LOCK`]), so instances starting together run them
//! once. Every write of groups, keys and accounts bumps the `changes` counter in the same
//! transaction; each instance polls [`Store::change_counter`] and reloads its snapshot when it
//! moved (`server::follow`), at once when the writer's change hook published the change through
//! Redis. The SQL, the bound values and the row decoding are the SQLite
//! backend's ([`super::sql`]); what is PostgreSQL's own is in `store.rs`.

mod store;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::domain::Secret;

/// The advisory lock key the migrations run under (any fixed number: "subrelay" in ASCII).
pub const MIGRATION_LOCK: i64 = 0x7375_6272_656c_6179;
/// How long a query waits for a pooled connection. When PostgreSQL is down, the admin API's
/// writes answer 503 after this rather than hang, and the usage writer retries later.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a start waits for PostgreSQL to answer at all.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PostgresStore {
    pool: PgPool,
    /// Run after each committed write that moved the change counter ([`Store::on_change`]).
    changed: std::sync::OnceLock<super::ChangeHook>,
}

impl PostgresStore {
    /// Connects (at most `max_connections`) and applies the migrations under the advisory lock.
    /// Errors never quote the URL (it holds the password).
    pub async fn open(url: &Secret, max_connections: u32) -> Result<Self, String> {
        let options = PgConnectOptions::from_str(url.expose())
            .map_err(|e| {
                format!(
                    "storage.postgres_url: cannot be read as a PostgreSQL URL: {}",
                    redact(&e.to_string(), url)
                )
            })?
            .application_name("subrelay");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let store = Self {
            pool,
            changed: std::sync::OnceLock::new(),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, store.migrate())
            .await
            .map_err(|_| {
                format!(
                    "cannot reach PostgreSQL (storage.postgres_url) within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| redact(&e, url))?;
        Ok(store)
    }

    /// Applies `migrations/postgres/` on one connection that holds [`MIGRATION_LOCK`] for the
    /// whole run: a second instance waits, then finds nothing left to apply.
    async fn migrate(&self) -> Result<(), String> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| format!("cannot connect to PostgreSQL (storage.postgres_url): {e}"))?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await
            .map_err(|e| format!("cannot take the migration lock: {e}"))?;
        let migrated = sqlx::migrate!("migrations/postgres")
            .run(&mut *conn)
            .await
            .map_err(|e| format!("cannot migrate the PostgreSQL store: {e}"));
        // Released also when the migration failed; a dropped connection releases it as well.
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        migrated
    }
}

/// An error text with the URL (and its password alone) taken out.
fn redact(text: &str, url: &Secret) -> String {
    let mut out = text.replace(url.expose(), "[storage.postgres_url]");
    if let Some(password) = password_of(url.expose()) {
        out = out.replace(password, "[redacted]");
    }
    out
}

/// The password of `postgres://user:password@host/...`, if the URL has one.
fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}
