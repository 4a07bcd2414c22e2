//! The embedded backend: one SQLite file (`subrelay.db`) in `storage.data_dir`.
//!
//! WAL journal (readers never wait for the usage writer), `synchronous=NORMAL` (a committed
//! batch survives a process crash; the usage spool covers the rest), migrations embedded from
//! `migrations/sqlite/` and applied at open. Queries are built at run time, so building needs no
//! database.

use std::path::Path;
use std::str::FromStr;

use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, SqlitePool};

use super::sql::{affected, db, ops, queries, Backend, Plumbing, StoreRow, Value};
use super::{AccountRecord, GroupRecord, KeyRecord, PriceRecord, Store, StoreResult};

pub const FILE_NAME: &str = "subrelay.db";

pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Reads one `meta` value through a read-only connection, without creating, migrating or
    /// checkpointing anything: a start that is about to be refused must leave the file as it was.
    /// `None` when there is no store yet.
    pub async fn peek_meta(dir: &Path, name: &str) -> Result<Option<Vec<u8>>, String> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            return Ok(None);
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| e.to_string())?
            .filename(&path)
            .read_only(true);
        let mut conn = sqlx::ConnectOptions::connect(&options)
            .await
            .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
        let row = sqlx::query("SELECT value FROM meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut conn)
            .await;
        let _ = sqlx::Connection::close(conn).await;
        match row {
            Ok(row) => row
                .map(|r| r.try_get::<Vec<u8>, _>("value"))
                .transpose()
                .map_err(|e| e.to_string()),
            // A store created but never migrated has no meta table yet.
            Err(_) => Ok(None),
        }
    }

    /// Opens (creating if needed) `dir/subrelay.db` and applies the migrations.
    #[allow(
        clippy::disallowed_methods,
        reason = "the store is opened at start-up, before any request"
    )]
    pub async fn open(dir: &Path) -> Result<Self, String> {
        let path = dir.join(FILE_NAME);
        // Created owner-only before SQLite opens it: SQLite gives the `-wal` and `-shm` files it
        // creates the database file's permissions.
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| format!("cannot create the store {}: {e}", path.display()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| e.to_string())?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5))
            // SQLite's default page cache is 2 MB per connection, and the pool's connections
            // take turns writing usage batches, so under load each fills its own. The file's
            // pages stay in the OS page cache anyway; 512 KiB each keeps the index pages a batch
            // appends to without holding the whole recent table per connection.
            .pragma("cache_size", "-512")
            // A usage batch is several insert statements in one transaction, each with a
            // statement journal; kept in memory (a few pages each) they no longer spill to temp
            // files: a third fewer writes and most reads of the usage writer (strace).
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|e| format!("cannot open the store {}: {e}", path.display()))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| format!("cannot migrate the store {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Also files an earlier version left wider.
            for suffix in ["", "-wal", "-shm"] {
                let file = dir.join(format!("{FILE_NAME}{suffix}"));
                if file.exists() {
                    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| {
                            format!("cannot restrict {} to its owner: {e}", file.display())
                        })?;
                }
            }
        }
        Ok(Self { pool })
    }
}

impl Backend for Sqlite {
    /// 22 columns each stays far below SQLite's 32,766 bound parameters.
    const USAGE_ROWS_PER_STATEMENT: usize = 200;
    const DAY_BUCKET: &'static str = "strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch')";
    const COST_SUM: &'static str = "TOTAL(cost_usd)";
    const ACTION_HEAD: &'static str = "substr(action, 1, ";

    /// Plain `?`: SQLite looks a numbered `$n` up in a list of the names seen so far, a cost
    /// that grows with the square of a batch's 4,400 parameters.
    fn placeholder(_: usize) -> String {
        "?".to_owned()
    }

    /// `SUM` of integers fails with "integer overflow" past `i64::MAX` (and made the totals fail
    /// for good once a row held a huge count); `TOTAL` adds as a float, and a float cast to an
    /// integer saturates at `i64::MAX`.
    fn saturating_sum(column: &str) -> String {
        format!("CAST(TOTAL({column}) AS INTEGER)")
    }

    crate::store::sql::backend_bridge!();
}

impl StoreRow for SqliteRow {
    fn col<'r, T: Value<'r>>(&'r self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }
}

/// The text of the full-size usage insert, made once: sqlx's query builder formatted 4,400
/// placeholders on every batch (2% of the instructions per request).
static FULL_USAGE_INSERT: LazyLock<String> =
    LazyLock::new(|| queries::usage_insert_sql::<Sqlite>(Sqlite::USAGE_ROWS_PER_STATEMENT));

impl SqliteStore {
    /// Runs one statement of `name` on the pool; how many rows it changed.
    async fn by_name(&self, sql: &str, name: &str) -> StoreResult<u64> {
        let query = sqlx::query(sql).bind(name);
        Sqlite::run(&self.pool, query).await.map_err(db)
    }
}

impl Store for SqliteStore {
    crate::store::sql::ops::shared_store_methods!();

    fn upsert_group(&self, group: &GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        let group = group.clone();
        Box::pin(async move {
            let query = queries::bind_group(sqlx::query(queries::UPSERT_GROUP), &group);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn delete_group(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move { affected(self.by_name(queries::DELETE_GROUP, &name).await?, &name) })
    }

    fn insert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let query = queries::bind_key(sqlx::query(queries::INSERT_KEY), &key);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn update_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let query = queries::bind_key_update(sqlx::query(queries::UPDATE_KEY), &key);
            let done = Sqlite::run(&self.pool, query).await.map_err(db)?;
            affected(done, &key.name)
        })
    }

    fn upsert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let query = queries::bind_key(sqlx::query(queries::UPSERT_KEY), &key);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn delete_key(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move { affected(self.by_name(queries::DELETE_KEY, &name).await?, &name) })
    }

    fn insert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move {
            let query = queries::bind_account(sqlx::query(queries::INSERT_ACCOUNT), &account);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn upsert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move {
            let query = queries::bind_account(sqlx::query(queries::UPSERT_ACCOUNT), &account);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn delete_account(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            self.by_name(queries::DELETE_ACCOUNT_STATE, &name).await?;
            affected(self.by_name(queries::DELETE_ACCOUNT, &name).await?, &name)
        })
    }

    fn list_prices(&self) -> BoxFuture<'_, StoreResult<Vec<PriceRecord>>> {
        Box::pin(ops::list_prices(&self.pool))
    }

    fn upsert_price(&self, price: &PriceRecord) -> BoxFuture<'_, StoreResult<()>> {
        let price = price.clone();
        Box::pin(async move {
            let query = queries::bind_price(sqlx::query(queries::UPSERT_PRICE), &price);
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }

    fn delete_price(&self, model: &str) -> BoxFuture<'_, StoreResult<()>> {
        let model = model.to_owned();
        Box::pin(
            async move { affected(self.by_name(queries::DELETE_PRICE, &model).await?, &model) },
        )
    }

    /// Unconditional: no other process writes this store (see [`Store::save_tokens_if`]).
    fn save_tokens(&self, name: &str, sealed: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        let (name, sealed) = (name.to_owned(), sealed.to_vec());
        Box::pin(async move {
            let query = sqlx::query(
                "INSERT INTO account_tokens (name, sealed, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(sealed)
            .bind(super::now_secs());
            Sqlite::run(&self.pool, query).await.map_err(db)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use sqlx::Connection;

    use super::*;
    use crate::store::{AuditFilter, AuditRow, TotalsBy, UsageFilter, UsageRow};

    fn row(id: usize) -> UsageRow {
        UsageRow {
            request_id: format!("req_{id:020}"),
            at_ms: 1,
            key: "k".into(),
            account: None,
            endpoint: "responses".into(),
            model: "m".into(),
            client_model: None,
            stream: false,
            status: 200,
            success: true,
            input_tokens: 1,
            cached_input_tokens: 0,
            cache_creation_tokens: 0,
            output_tokens: 1,
            reasoning_tokens: 0,
            cost_usd: 0.0,
            priced: false,
            duration_ms: 1,
            ttft_ms: None,
            attempts: 1,
            client_disconnected: false,
            transport: "http".to_owned(),
        }
    }

    async fn cached_statements(store: &SqliteStore) -> usize {
        // Holding every pooled connection at once sees all their caches.
        let mut held = Vec::new();
        while let Some(conn) = store.pool.try_acquire() {
            held.push(conn);
        }
        let mut total = 0;
        for conn in &mut held {
            total += conn.cached_statements_size();
        }
        total
    }

    fn audit(at_ms: i64, action: &str) -> AuditRow {
        AuditRow {
            id: 0,
            at_ms,
            actor: "admin-token".into(),
            client: Some("127.0.0.1".into()),
            action: action.into(),
            target: "t".into(),
            before: None,
            after: Some("{}".into()),
        }
    }

    #[tokio::test]
    async fn audit_rows_filter_by_prefix_and_time_page_by_id_and_prune_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        for (at, action) in [
            (10, "key.create"),
            (20, "key_x.create"),
            (30, "account.update"),
            (40, "key.delete"),
        ] {
            store.append_audit(&audit(at, action)).await.unwrap();
        }
        let actions = |rows: Vec<AuditRow>| rows.into_iter().map(|r| r.action).collect::<Vec<_>>();
        let prefix = AuditFilter {
            action_prefix: Some("key.".into()),
            ..Default::default()
        };
        // `.` and `_` mean themselves: `key_x.create` is not under `key.`.
        assert_eq!(
            actions(store.list_audit(&prefix, 10).await.unwrap()),
            ["key.delete", "key.create"]
        );
        let newest = store.list_audit(&AuditFilter::default(), 2).await.unwrap();
        assert_eq!(actions(newest.clone()), ["key.delete", "account.update"]);
        let older = AuditFilter {
            before_id: Some(newest[1].id),
            ..Default::default()
        };
        assert_eq!(
            actions(store.list_audit(&older, 10).await.unwrap()),
            ["key_x.create", "key.create"]
        );
        let window = AuditFilter {
            since_ms: Some(20),
            until_ms: Some(40),
            ..Default::default()
        };
        assert_eq!(
            actions(store.list_audit(&window, 10).await.unwrap()),
            ["account.update", "key_x.create"]
        );
        assert_eq!(store.prune_audit(30).await.unwrap(), 2);
        assert_eq!(
            actions(store.list_audit(&AuditFilter::default(), 10).await.unwrap()),
            ["key.delete", "account.update"]
        );
    }

    #[tokio::test]
    async fn batches_of_every_size_keep_few_prepared_statements() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let before = cached_statements(&store).await;
        let mut next = 0;
        for size in (1..=40).chain([Sqlite::USAGE_ROWS_PER_STATEMENT + 7]) {
            let rows: Vec<UsageRow> = (next..next + size).map(row).collect();
            next += size;
            assert_eq!(store.insert_usage(&rows).await.unwrap(), size as u64);
        }
        let grown = cached_statements(&store).await - before;
        assert!(grown <= 5, "{grown} statements stayed prepared");
    }
    #[tokio::test]
    async fn usage_rows_come_back_exactly_as_written_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let costs = [
            0.1 + 0.2,
            1e-7,
            12.345_678_901_234_567,
            0.000_123,
            3.0,
            f64::MIN_POSITIVE,
        ];
        let rows: Vec<UsageRow> = (0..costs.len())
            .map(|i| {
                let mut r = row(i);
                r.cost_usd = costs[i];
                r.priced = i % 2 == 0;
                r.stream = i % 3 == 0;
                r.success = i != 4;
                r.status = if i == 4 { 529 } else { 200 };
                r.account = (i % 2 == 1).then(|| format!("acct-\"{i}\"-é"));
                r.ttft_ms = (i > 2).then_some(i64::MAX - i as i64);
                r.input_tokens = i64::MAX;
                r.key = format!("key\n{i}");
                r.client_disconnected = i == 5;
                r
            })
            .collect();
        assert_eq!(store.insert_usage(&rows).await.unwrap(), rows.len() as u64);
        assert_eq!(
            store.insert_usage(&rows).await.unwrap(),
            0,
            "same ids again"
        );
        let mut back = store
            .list_usage(&UsageFilter::default(), 100, 0)
            .await
            .unwrap();
        back.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        let mut want = rows.clone();
        want.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        assert_eq!(back, want);
    }

    #[tokio::test]
    async fn usage_totals_saturate_instead_of_overflowing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let rows: Vec<UsageRow> = (0..3)
            .map(|i| {
                let mut r = row(i);
                r.input_tokens = i64::MAX;
                r.output_tokens = 5;
                r
            })
            .collect();
        store.insert_usage(&rows).await.unwrap();
        for by in [TotalsBy::Day, TotalsBy::Key] {
            let totals = store
                .usage_totals(&UsageFilter::default(), by)
                .await
                .unwrap();
            assert_eq!(totals.len(), 1);
            assert_eq!(totals[0].requests, 3);
            assert_eq!(totals[0].input_tokens, i64::MAX, "saturated");
            assert_eq!(totals[0].output_tokens, 15, "small sums stay exact");
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_database_and_its_wal_and_shm_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store.insert_usage(&[row(1)]).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let file = dir.path().join(format!("{FILE_NAME}{suffix}"));
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
    }
}
