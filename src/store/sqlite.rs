//! The embedded backend: one SQLite file (`subrelay.db`) in `storage.data_dir`.
//!
//! WAL journal (readers never wait for the usage writer), `synchronous=NORMAL` (a committed
//! batch survives a process crash; the usage spool covers the rest), migrations embedded from
//! `migrations/sqlite/` and applied at open. Queries are built at run time, so building needs no
//! database.

use std::path::Path;
use std::str::FromStr;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{
    AccountRecord, AuditFilter, AuditRow, GroupRecord, KeyRecord, Source, Store, StoreError,
    StoreResult, TotalsBy, UsageFilter, UsageRow, UsageTotals,
};

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

/// A sum of token counts that cannot overflow: `SUM` of integers fails with "integer overflow"
/// past `i64::MAX` (and made the totals fail for good once a row held a huge count); `TOTAL`
/// adds as a float, and a float cast to an integer saturates at `i64::MAX`.
fn saturating_sum(column: &str) -> String {
    format!("CAST(TOTAL({column}) AS INTEGER)")
}

fn db(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(inner) if inner.is_unique_violation() => {
            StoreError::Conflict(inner.message().to_owned())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn affected(rows: u64, what: &str) -> StoreResult<()> {
    if rows == 0 {
        Err(StoreError::NotFound(what.to_owned()))
    } else {
        Ok(())
    }
}

fn json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).unwrap_or_default())
}

fn parse_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn key_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        prefix: row.try_get("prefix")?,
        suffix: row.try_get("suffix")?,
        group: row.try_get("group_name")?,
        enabled: row.try_get("enabled")?,
        expires_at: row.try_get("expires_at")?,
        concurrency: u32::try_from(row.try_get::<i64, _>("concurrency")?).unwrap_or(0),
        rpm_limit: u32::try_from(row.try_get::<i64, _>("rpm_limit")?).unwrap_or(0),
        daily_spend_limit: row.try_get("daily_spend_limit")?,
        monthly_spend_limit: row.try_get("monthly_spend_limit")?,
        allowed_models: parse_list(row.try_get("allowed_models")?),
        source: Source::parse(row.try_get::<&str, _>("source")?),
        created_at: row.try_get("created_at")?,
    })
}

fn account_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<AccountRecord, sqlx::Error> {
    Ok(AccountRecord {
        name: row.try_get("name")?,
        platform: named(row, "platform")?,
        kind: named(row, "kind")?,
        base_url: row.try_get("base_url")?,
        chatgpt_account_id: row.try_get("chatgpt_account_id")?,
        expires_at: row.try_get("expires_at")?,
        priority: i32::try_from(row.try_get::<i64, _>("priority")?).unwrap_or(0),
        concurrency: u32::try_from(row.try_get::<i64, _>("concurrency")?).unwrap_or(0),
        groups: parse_list(Some(row.try_get("groups")?)).unwrap_or_default(),
        enabled: row.try_get("enabled")?,
        models: parse_list(row.try_get("models")?),
        model_map: serde_json::from_str(row.try_get::<&str, _>("model_map")?).unwrap_or_default(),
        protocols: protocols_of(row)?,
        credentials: row.try_get("credentials")?,
        source: Source::parse(row.try_get::<&str, _>("source")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The `protocols` column: a JSON list of API names, or NULL for the defaults; an unknown name is
/// a decoding error that names the row.
fn protocols_of(
    row: &sqlx::sqlite::SqliteRow,
) -> Result<Option<Vec<crate::domain::Protocol>>, sqlx::Error> {
    let Some(names) = parse_list(row.try_get("protocols")?) else {
        return Ok(None);
    };
    names
        .iter()
        .map(|n| crate::domain::Protocol::from_api_name(n))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| {
            let name: String = row.try_get("name").unwrap_or_default();
            sqlx::Error::Decode(format!("{name:?}: protocols: {e}").into())
        })
}

/// A column holding one of an enum's names (`openai`, `apikey`); an unknown name is a decoding
/// error that names the row.
fn named<T>(row: &sqlx::sqlite::SqliteRow, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = crate::domain::UnknownName>,
{
    let text: &str = row.try_get(column)?;
    text.parse().map_err(|e| {
        let name: String = row.try_get("name").unwrap_or_default();
        sqlx::Error::Decode(format!("{name:?}: {column}: {e}").into())
    })
}

fn usage_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<UsageRow, sqlx::Error> {
    Ok(UsageRow {
        request_id: row.try_get("request_id")?,
        at_ms: row.try_get("at_ms")?,
        key: row.try_get("key_name")?,
        account: row.try_get("account")?,
        endpoint: row.try_get("endpoint")?,
        model: row.try_get("model")?,
        client_model: row.try_get("client_model")?,
        stream: row.try_get("stream")?,
        status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
        success: row.try_get("success")?,
        input_tokens: row.try_get("input_tokens")?,
        cached_input_tokens: row.try_get("cached_input_tokens")?,
        cache_creation_tokens: row.try_get("cache_creation_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        reasoning_tokens: row.try_get("reasoning_tokens")?,
        cost_usd: row.try_get("cost_usd")?,
        priced: row.try_get("priced")?,
        duration_ms: row.try_get("duration_ms")?,
        ttft_ms: row.try_get("ttft_ms")?,
        attempts: row.try_get("attempts")?,
        client_disconnected: row.try_get("client_disconnected")?,
        transport: row.try_get("transport")?,
    })
}

/// Appends ` WHERE …` for the filter.
fn push_filter(query: &mut QueryBuilder<'_, Sqlite>, filter: &UsageFilter) {
    query.push(" WHERE 1=1");
    if let Some(key) = &filter.key {
        query.push(" AND key_name = ").push_bind(key.clone());
    }
    if let Some(account) = &filter.account {
        query.push(" AND account = ").push_bind(account.clone());
    }
    if let Some(model) = &filter.model {
        query.push(" AND model = ").push_bind(model.clone());
    }
    if let Some(from) = filter.from_ms {
        query.push(" AND at_ms >= ").push_bind(from);
    }
    if let Some(to) = filter.to_ms {
        query.push(" AND at_ms < ").push_bind(to);
    }
    match filter.status {
        Some(super::StatusFilter::Code(code)) => {
            query.push(" AND status = ").push_bind(i64::from(code));
        }
        Some(super::StatusFilter::Success(ok)) => {
            query.push(" AND success = ").push_bind(ok);
        }
        None => {}
    }
}

/// Usage rows per INSERT: 21 columns each stays far below SQLite's 32,766 bound parameters.
const USAGE_ROWS_PER_STATEMENT: usize = 200;
const USAGE_COLUMNS: &str = "request_id, at_ms, key_name, account, endpoint, model, stream, status, success, input_tokens, cached_input_tokens, cache_creation_tokens, output_tokens, reasoning_tokens, cost_usd, priced, duration_ms, ttft_ms, attempts, client_disconnected, client_model, transport";
/// The text of the full-size insert, made once: sqlx's query builder formatted 4,000
/// placeholders on every batch (2% of the instructions per request).
static FULL_USAGE_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| usage_insert_sql(USAGE_ROWS_PER_STATEMENT));

/// `INSERT INTO usage (…) VALUES (?, …), … ON CONFLICT(request_id) DO NOTHING` for `rows` rows.
fn usage_insert_sql(rows: usize) -> String {
    let columns = USAGE_COLUMNS.split(", ").count();
    let row = format!("({})", vec!["?"; columns].join(", "));
    format!(
        "INSERT INTO usage ({USAGE_COLUMNS}) VALUES {} ON CONFLICT(request_id) DO NOTHING",
        vec![row; rows].join(", ")
    )
}
const KEY_COLUMNS: &str = "name, key_hash, prefix, suffix, group_name, enabled, expires_at, concurrency, rpm_limit, daily_spend_limit, monthly_spend_limit, allowed_models, source, created_at";
const ACCOUNT_COLUMNS: &str = "name, platform, kind, base_url, chatgpt_account_id, expires_at, priority, concurrency, groups, enabled, models, model_map, credentials, source, created_at, updated_at, protocols";

impl SqliteStore {
    async fn write_key(&self, key: &KeyRecord, upsert: bool) -> StoreResult<()> {
        let conflict = if upsert {
            " ON CONFLICT(name) DO UPDATE SET key_hash = excluded.key_hash, prefix = excluded.prefix, suffix = excluded.suffix, group_name = excluded.group_name, enabled = excluded.enabled, expires_at = excluded.expires_at, concurrency = excluded.concurrency, rpm_limit = excluded.rpm_limit, daily_spend_limit = excluded.daily_spend_limit, monthly_spend_limit = excluded.monthly_spend_limit, allowed_models = excluded.allowed_models, source = excluded.source"
        } else {
            ""
        };
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){conflict}"
        ))
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(&key.suffix)
        .bind(&key.group)
        .bind(key.enabled)
        .bind(key.expires_at)
        .bind(i64::from(key.concurrency))
        .bind(i64::from(key.rpm_limit))
        .bind(key.daily_spend_limit)
        .bind(key.monthly_spend_limit)
        .bind(json_list(&key.allowed_models))
        .bind(key.source.as_str())
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn write_account(&self, a: &AccountRecord, upsert: bool) -> StoreResult<()> {
        let conflict = if upsert {
            " ON CONFLICT(name) DO UPDATE SET platform = excluded.platform, kind = excluded.kind, base_url = excluded.base_url, chatgpt_account_id = excluded.chatgpt_account_id, expires_at = excluded.expires_at, priority = excluded.priority, concurrency = excluded.concurrency, groups = excluded.groups, enabled = excluded.enabled, models = excluded.models, model_map = excluded.model_map, credentials = excluded.credentials, source = excluded.source, updated_at = excluded.updated_at, protocols = excluded.protocols"
        } else {
            ""
        };
        sqlx::query(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?){conflict}"
        ))
        .bind(&a.name)
        .bind(a.platform.as_str())
        .bind(a.kind.as_str())
        .bind(&a.base_url)
        .bind(&a.chatgpt_account_id)
        .bind(a.expires_at)
        .bind(i64::from(a.priority))
        .bind(i64::from(a.concurrency))
        .bind(serde_json::to_string(&a.groups).unwrap_or_default())
        .bind(a.enabled)
        .bind(json_list(&a.models))
        .bind(serde_json::to_string(&a.model_map).unwrap_or_default())
        .bind(&a.credentials)
        .bind(a.source.as_str())
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(json_list(&a.protocols.as_ref().map(|list| {
            list.iter().map(|p| p.api_name().to_owned()).collect()
        })))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}

impl Store for SqliteStore {
    fn get_meta(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let name = name.to_owned();
        Box::pin(async move {
            let row = sqlx::query("SELECT value FROM meta WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.map(|r| r.try_get::<Vec<u8>, _>("value"))
                .transpose()
                .map_err(db)
        })
    }

    fn set_meta(&self, name: &str, value: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        let (name, value) = (name.to_owned(), value.to_vec());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            )
            .bind(name)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn meta_or_insert(&self, name: &str, value: &[u8]) -> BoxFuture<'_, StoreResult<Vec<u8>>> {
        let (name, value) = (name.to_owned(), value.to_vec());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING",
            )
            .bind(&name)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            let row = sqlx::query("SELECT value FROM meta WHERE name = ?")
                .bind(&name)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            row.try_get::<Vec<u8>, _>("value").map_err(db)
        })
    }

    fn list_meta(&self) -> BoxFuture<'_, StoreResult<Vec<super::MetaRow>>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT name, value FROM meta ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("value")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn list_groups(&self) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT name, platform, source, created_at FROM groups ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            let mut groups = Vec::with_capacity(rows.len());
            for r in &rows {
                let platform = match named(r, "platform") {
                    Ok(platform) => platform,
                    Err(e) => {
                        // As before platforms were typed: a group row of an unknown platform
                        // is left out, not fatal.
                        tracing::warn!("a stored group is left out: {e}");
                        continue;
                    }
                };
                groups.push(GroupRecord {
                    name: r.try_get("name").map_err(db)?,
                    platform,
                    source: Source::parse(r.try_get::<&str, _>("source").map_err(db)?),
                    created_at: r.try_get("created_at").map_err(db)?,
                });
            }
            Ok(groups)
        })
    }

    fn upsert_group(&self, group: &GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        let group = group.clone();
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO groups (name, platform, source, created_at) VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET platform = excluded.platform, source = excluded.source",
            )
            .bind(&group.name)
            .bind(group.platform.as_str())
            .bind(group.source.as_str())
            .bind(group.created_at)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn delete_group(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM groups WHERE name = ?")
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &name)
        })
    }

    fn list_keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY name"))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(key_from_row)
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }

    fn insert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move { self.write_key(&key, false).await })
    }

    fn update_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE api_keys SET group_name = ?, enabled = ?, expires_at = ?, concurrency = ?, rpm_limit = ?, daily_spend_limit = ?, monthly_spend_limit = ?, allowed_models = ?, source = ? WHERE name = ?",
            )
            .bind(&key.group)
            .bind(key.enabled)
            .bind(key.expires_at)
            .bind(i64::from(key.concurrency))
            .bind(i64::from(key.rpm_limit))
            .bind(key.daily_spend_limit)
            .bind(key.monthly_spend_limit)
            .bind(json_list(&key.allowed_models))
            .bind(key.source.as_str())
            .bind(&key.name)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            affected(done.rows_affected(), &key.name)
        })
    }

    fn upsert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move { self.write_key(&key, true).await })
    }

    fn delete_key(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM api_keys WHERE name = ?")
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &name)
        })
    }

    fn list_accounts(&self) -> BoxFuture<'_, StoreResult<Vec<AccountRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY priority, name"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter()
                .map(account_from_row)
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }

    fn insert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move { self.write_account(&account, false).await })
    }

    fn upsert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move { self.write_account(&account, true).await })
    }

    fn delete_account(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            sqlx::query("DELETE FROM account_state WHERE name = ?")
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            let done = sqlx::query("DELETE FROM accounts WHERE name = ?")
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &name)
        })
    }

    fn save_account_state(&self, name: &str, state: &str) -> BoxFuture<'_, StoreResult<()>> {
        let (name, state) = (name.to_owned(), state.to_owned());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO account_state (name, state, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(state)
            .bind(super::now_secs())
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn save_tokens(&self, name: &str, sealed: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        let (name, sealed) = (name.to_owned(), sealed.to_vec());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO account_tokens (name, sealed, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(sealed)
            .bind(super::now_secs())
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn saved_tokens(&self) -> BoxFuture<'_, StoreResult<Vec<super::SealedTokens>>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT name, sealed FROM account_tokens")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("sealed")?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn account_states(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT name, state FROM account_state")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| Ok((r.try_get("name")?, r.try_get("state")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> BoxFuture<'a, StoreResult<u64>> {
        // Borrowed for the whole insert: a copy of a 4,096-row batch was 20,000 allocations.
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let mut new = 0;
            // Many rows per statement: each statement is a round trip to sqlx's SQLite worker
            // thread, and one per row cost more than the insert itself.
            for chunk in rows.chunks(USAGE_ROWS_PER_STATEMENT) {
                // Only the full-size statement is kept prepared (and its text made once): each
                // shorter remainder has a text of its own, and caching them filled every
                // connection's statement cache with large programs (memory grew by megabytes a
                // minute under load).
                let full = chunk.len() == USAGE_ROWS_PER_STATEMENT;
                let remainder_sql;
                let sql: &str = if full {
                    &FULL_USAGE_INSERT
                } else {
                    remainder_sql = usage_insert_sql(chunk.len());
                    &remainder_sql
                };
                let mut insert = sqlx::query(sql);
                for r in chunk {
                    // `&str`, not `&String`: sqlx copies a bound `String` (five allocations a row).
                    insert = insert
                        .bind(r.request_id.as_str())
                        .bind(r.at_ms)
                        .bind(r.key.as_str())
                        .bind(r.account.as_deref())
                        .bind(r.endpoint.as_str())
                        .bind(r.model.as_str())
                        .bind(r.stream)
                        .bind(i64::from(r.status))
                        .bind(r.success)
                        .bind(r.input_tokens)
                        .bind(r.cached_input_tokens)
                        .bind(r.cache_creation_tokens)
                        .bind(r.output_tokens)
                        .bind(r.reasoning_tokens)
                        .bind(r.cost_usd)
                        .bind(r.priced)
                        .bind(r.duration_ms)
                        .bind(r.ttft_ms)
                        .bind(r.attempts)
                        .bind(r.client_disconnected)
                        .bind(r.client_model.as_deref())
                        .bind(r.transport.as_str());
                }
                let done = insert
                    .persistent(full)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                new += done.rows_affected();
            }
            tx.commit().await.map_err(db)?;
            Ok(new)
        })
    }

    fn list_usage(
        &self,
        filter: &UsageFilter,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>> {
        let filter = filter.clone();
        Box::pin(async move {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM usage");
            push_filter(&mut query, &filter);
            query
                .push(" ORDER BY at_ms DESC, request_id LIMIT ")
                .push_bind(i64::from(limit))
                .push(" OFFSET ")
                .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
            let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
            rows.iter()
                .map(usage_from_row)
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }

    fn count_usage(&self, filter: &UsageFilter) -> BoxFuture<'_, StoreResult<u64>> {
        let filter = filter.clone();
        Box::pin(async move {
            let mut query = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) AS n FROM usage");
            push_filter(&mut query, &filter);
            let row = query.build().fetch_one(&self.pool).await.map_err(db)?;
            let n: i64 = row.try_get("n").map_err(db)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }

    fn usage_totals(
        &self,
        filter: &UsageFilter,
        by: TotalsBy,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageTotals>>> {
        let filter = filter.clone();
        Box::pin(async move {
            let bucket = match by {
                TotalsBy::Day => "strftime('%Y-%m-%d', at_ms / 1000, 'unixepoch')",
                TotalsBy::Key => "key_name",
            };
            let mut query = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {bucket} AS bucket, COUNT(*) AS requests, {} AS input_tokens, {} AS cached_input_tokens, {} AS output_tokens, TOTAL(cost_usd) AS cost_usd FROM usage",
                saturating_sum("input_tokens"),
                saturating_sum("cached_input_tokens"),
                saturating_sum("output_tokens")
            ));
            push_filter(&mut query, &filter);
            query.push(" GROUP BY bucket ORDER BY bucket");
            let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(UsageTotals {
                        bucket: r.try_get("bucket")?,
                        requests: r.try_get("requests")?,
                        input_tokens: r.try_get("input_tokens")?,
                        cached_input_tokens: r.try_get("cached_input_tokens")?,
                        output_tokens: r.try_get("output_tokens")?,
                        cost_usd: r.try_get("cost_usd")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn spend_since(&self, from_ms: i64) -> BoxFuture<'_, StoreResult<Vec<(String, f64)>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT key_name, COALESCE(SUM(cost_usd), 0.0) AS cost FROM usage WHERE at_ms >= ? GROUP BY key_name",
            )
            .bind(from_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            rows.iter()
                .map(|r| Ok((r.try_get("key_name")?, r.try_get("cost")?)))
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn append_audit<'a>(&'a self, row: &'a AuditRow) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO audit (at_ms, actor, client, action, target, before_json, after_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(row.at_ms)
            .bind(row.actor.as_str())
            .bind(row.client.as_deref())
            .bind(row.action.as_str())
            .bind(row.target.as_str())
            .bind(row.before.as_deref())
            .bind(row.after.as_deref())
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRow>>> {
        let filter = filter.clone();
        Box::pin(async move {
            let mut query = QueryBuilder::<Sqlite>::new(
                "SELECT id, at_ms, actor, client, action, target, before_json, after_json FROM audit WHERE 1=1",
            );
            if let Some(prefix) = &filter.action_prefix {
                // `substr`, not LIKE: a `_` or `%` in the prefix means itself.
                query
                    .push(" AND substr(action, 1, ")
                    .push_bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
                    .push(") = ")
                    .push_bind(prefix.clone());
            }
            if let Some(since) = filter.since_ms {
                query.push(" AND at_ms >= ").push_bind(since);
            }
            if let Some(until) = filter.until_ms {
                query.push(" AND at_ms < ").push_bind(until);
            }
            if let Some(before) = filter.before_id {
                query.push(" AND id < ").push_bind(before);
            }
            query
                .push(" ORDER BY id DESC LIMIT ")
                .push_bind(i64::from(limit));
            let rows = query.build().fetch_all(&self.pool).await.map_err(db)?;
            rows.iter()
                .map(|r| {
                    Ok(AuditRow {
                        id: r.try_get("id")?,
                        at_ms: r.try_get("at_ms")?,
                        actor: r.try_get("actor")?,
                        client: r.try_get("client")?,
                        action: r.try_get("action")?,
                        target: r.try_get("target")?,
                        before: r.try_get("before_json")?,
                        after: r.try_get("after_json")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()
                .map_err(db)
        })
    }

    fn prune_audit(&self, before_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM audit WHERE at_ms < ?")
                .bind(before_ms)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            Ok(done.rows_affected())
        })
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.pool.close().await })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use sqlx::Connection;

    use super::*;

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
        for size in (1..=40).chain([USAGE_ROWS_PER_STATEMENT + 7]) {
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
