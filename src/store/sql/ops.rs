//! The [`Store`](crate::store::Store) operations both backends run alike, on the backend's pool.
//! Each backend's `Store` impl calls these; it writes groups, keys, accounts and prices itself
//! (PostgreSQL moves its change counter with each).

use sqlx::Pool;

use super::rows::{self, all};
use super::{db, queries, Backend, BindValue};
use crate::store::AccountRecord;
use crate::store::{
    now_secs, AuditFilter, AuditRow, GroupRecord, KeyRecord, MetaRow, PriceRecord, SealedTokens,
    StoreResult, TotalsBy, UsageFilter, UsageRow, UsageTotals,
};

// === meta ===

pub async fn get_meta<DB: Backend>(pool: &Pool<DB>, name: &str) -> StoreResult<Option<Vec<u8>>> {
    let row = DB::fetch_optional(pool, sqlx::query(queries::GET_META).value(name))
        .await
        .map_err(db)?;
    row.map(|r| rows::value(&r)).transpose().map_err(db)
}

pub async fn set_meta<DB: Backend>(pool: &Pool<DB>, name: &str, value: &[u8]) -> StoreResult<()> {
    let query = sqlx::query(queries::SET_META).value(name).value(value);
    DB::run(pool, query).await.map_err(db)?;
    Ok(())
}

/// Writes the value unless one is there, and reads back the one stored.
pub async fn meta_or_insert<DB: Backend>(
    pool: &Pool<DB>,
    name: &str,
    value: &[u8],
) -> StoreResult<Vec<u8>> {
    let query = sqlx::query(queries::INSERT_META_IF_NEW)
        .value(name)
        .value(value);
    DB::run(pool, query).await.map_err(db)?;
    let row = DB::fetch_optional(pool, sqlx::query(queries::GET_META).value(name))
        .await
        .and_then(|row| row.ok_or(sqlx::Error::RowNotFound))
        .map_err(db)?;
    rows::value(&row).map_err(db)
}

pub async fn list_meta<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<MetaRow>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::LIST_META))
        .await
        .map_err(db)?;
    all(&found, rows::meta)
}

// === groups, keys, accounts, prices (reads) ===

pub async fn list_groups<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<GroupRecord>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::LIST_GROUPS))
        .await
        .map_err(db)?;
    rows::groups(&found)
}

pub async fn list_keys<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<KeyRecord>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::LIST_KEYS))
        .await
        .map_err(db)?;
    all(&found, rows::key)
}

pub async fn list_accounts<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<AccountRecord>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::LIST_ACCOUNTS))
        .await
        .map_err(db)?;
    all(&found, rows::account)
}

pub async fn list_prices<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<PriceRecord>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::LIST_PRICES))
        .await
        .map_err(db)?;
    all(&found, rows::price)
}

// === account state and tokens ===

pub async fn save_account_state<DB: Backend>(
    pool: &Pool<DB>,
    name: &str,
    state: &str,
) -> StoreResult<()> {
    let query = sqlx::query(queries::SAVE_ACCOUNT_STATE)
        .value(name)
        .value(state)
        .value(now_secs());
    DB::run(pool, query).await.map_err(db)?;
    Ok(())
}

pub async fn account_states<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<(String, String)>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::ACCOUNT_STATES))
        .await
        .map_err(db)?;
    all(&found, rows::account_state)
}

pub async fn saved_tokens<DB: Backend>(pool: &Pool<DB>) -> StoreResult<Vec<SealedTokens>> {
    let found = DB::fetch_all(pool, sqlx::query(queries::SAVED_TOKENS))
        .await
        .map_err(db)?;
    all(&found, rows::tokens)
}

// === usage ===

/// Inserts the rows in one transaction, many to a statement: each statement is a round trip
/// (to SQLite's worker thread, or to the server), and one per row cost more than the insert
/// itself. Returns how many were new.
///
/// Only the full-size statement is kept prepared, its text made once by the backend
/// (`full_sql`): each shorter remainder has a text of its own, and caching those filled every
/// connection's statement cache with large programs (memory grew by megabytes a minute under
/// load).
pub async fn insert_usage<DB: Backend>(
    pool: &Pool<DB>,
    rows: &[UsageRow],
    full_sql: &str,
) -> StoreResult<u64> {
    let mut tx = pool.begin().await.map_err(db)?;
    let mut new = 0;
    for chunk in rows.chunks(DB::USAGE_ROWS_PER_STATEMENT) {
        let full = chunk.len() == DB::USAGE_ROWS_PER_STATEMENT;
        let remainder_sql;
        let sql: &str = if full {
            full_sql
        } else {
            remainder_sql = queries::usage_insert_sql::<DB>(chunk.len());
            &remainder_sql
        };
        let mut insert = sqlx::query::<DB>(sql);
        for r in chunk {
            insert = queries::bind_usage(insert, r);
        }
        new += DB::execute(&mut *tx, insert.persistent(full))
            .await
            .map_err(db)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(new)
}

pub async fn list_usage<DB: Backend>(
    pool: &Pool<DB>,
    filter: &UsageFilter,
    limit: u32,
    offset: u64,
) -> StoreResult<Vec<UsageRow>> {
    let mut query = queries::list_usage::<DB>(filter, limit, offset);
    let found = DB::fetch_all(pool, DB::built(&mut query))
        .await
        .map_err(db)?;
    all(&found, rows::usage)
}

pub async fn count_usage<DB: Backend>(pool: &Pool<DB>, filter: &UsageFilter) -> StoreResult<u64> {
    let mut query = queries::count_usage::<DB>(filter);
    let row = DB::fetch_optional(pool, DB::built(&mut query))
        .await
        .and_then(|row| row.ok_or(sqlx::Error::RowNotFound))
        .map_err(db)?;
    let n = rows::count(&row).map_err(db)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub async fn usage_totals<DB: Backend>(
    pool: &Pool<DB>,
    filter: &UsageFilter,
    by: TotalsBy,
) -> StoreResult<Vec<UsageTotals>> {
    let mut query = queries::usage_totals::<DB>(filter, by);
    let found = DB::fetch_all(pool, DB::built(&mut query))
        .await
        .map_err(db)?;
    all(&found, rows::totals)
}

pub async fn spend_since<DB: Backend>(
    pool: &Pool<DB>,
    from_ms: i64,
) -> StoreResult<Vec<(String, f64)>> {
    let sql = queries::spend_since_sql::<DB>();
    let found = DB::fetch_all(pool, sqlx::query(&sql).value(from_ms))
        .await
        .map_err(db)?;
    all(&found, rows::spend)
}

// === audit trail ===

pub async fn append_audit<DB: Backend>(pool: &Pool<DB>, row: &AuditRow) -> StoreResult<()> {
    let query = queries::bind_audit(sqlx::query(queries::APPEND_AUDIT), row);
    DB::run(pool, query).await.map_err(db)?;
    Ok(())
}

pub async fn list_audit<DB: Backend>(
    pool: &Pool<DB>,
    filter: &AuditFilter,
    limit: u32,
) -> StoreResult<Vec<AuditRow>> {
    let mut query = queries::list_audit::<DB>(filter, limit);
    let found = DB::fetch_all(pool, DB::built(&mut query))
        .await
        .map_err(db)?;
    all(&found, rows::audit)
}

pub async fn prune_audit<DB: Backend>(pool: &Pool<DB>, before_ms: i64) -> StoreResult<u64> {
    let query = sqlx::query(queries::PRUNE_AUDIT).value(before_ms);
    DB::run(pool, query).await.map_err(db)
}
