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

/// The [`Store`](crate::store::Store) methods both SQL stores answer alike, each one of the
/// operations above on `self.pool`; used inside each backend's `impl Store`, which must have a
/// `FULL_USAGE_INSERT` (its text of the full-size usage insert) in scope. A macro because the
/// methods of a trait impl cannot come from a generic; what each backend writes its own way
/// (groups, keys, accounts, tokens) stays in its impl.
macro_rules! shared_store_methods {
    () => {
        fn get_meta(
            &self,
            name: &str,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<Option<Vec<u8>>>>
        {
            let name = name.to_owned();
            Box::pin(async move { $crate::store::sql::ops::get_meta(&self.pool, &name).await })
        }

        fn set_meta(
            &self,
            name: &str,
            value: &[u8],
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<()>> {
            let (name, value) = (name.to_owned(), value.to_vec());
            Box::pin(async move {
                $crate::store::sql::ops::set_meta(&self.pool, &name, &value).await
            })
        }

        fn meta_or_insert(
            &self,
            name: &str,
            value: &[u8],
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<Vec<u8>>> {
            let (name, value) = (name.to_owned(), value.to_vec());
            Box::pin(async move {
                $crate::store::sql::ops::meta_or_insert(&self.pool, &name, &value).await
            })
        }

        fn list_meta(
            &self,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::MetaRow>>,
        > {
            Box::pin($crate::store::sql::ops::list_meta(&self.pool))
        }

        fn list_groups(
            &self,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::GroupRecord>>,
        > {
            Box::pin($crate::store::sql::ops::list_groups(&self.pool))
        }

        fn list_keys(
            &self,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::KeyRecord>>,
        > {
            Box::pin($crate::store::sql::ops::list_keys(&self.pool))
        }

        fn list_accounts(
            &self,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::AccountRecord>>,
        > {
            Box::pin($crate::store::sql::ops::list_accounts(&self.pool))
        }

        fn save_account_state(
            &self,
            name: &str,
            state: &str,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<()>> {
            let (name, state) = (name.to_owned(), state.to_owned());
            Box::pin(async move {
                $crate::store::sql::ops::save_account_state(&self.pool, &name, &state).await
            })
        }

        fn account_states(
            &self,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<Vec<(String, String)>>>
        {
            Box::pin($crate::store::sql::ops::account_states(&self.pool))
        }

        fn saved_tokens(
            &self,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::SealedTokens>>,
        > {
            Box::pin($crate::store::sql::ops::saved_tokens(&self.pool))
        }

        fn insert_usage<'a>(
            &'a self,
            rows: &'a [$crate::store::UsageRow],
        ) -> ::futures_util::future::BoxFuture<'a, $crate::store::StoreResult<u64>> {
            // Borrowed for the whole insert: a copy of a 4,096-row batch was 20,000 allocations.
            Box::pin($crate::store::sql::ops::insert_usage(
                &self.pool,
                rows,
                &FULL_USAGE_INSERT,
            ))
        }

        fn list_usage(
            &self,
            filter: &$crate::store::UsageFilter,
            limit: u32,
            offset: u64,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::UsageRow>>,
        > {
            let filter = filter.clone();
            Box::pin(async move {
                $crate::store::sql::ops::list_usage(&self.pool, &filter, limit, offset).await
            })
        }

        fn count_usage(
            &self,
            filter: &$crate::store::UsageFilter,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            let filter = filter.clone();
            Box::pin(async move { $crate::store::sql::ops::count_usage(&self.pool, &filter).await })
        }

        fn usage_totals(
            &self,
            filter: &$crate::store::UsageFilter,
            by: $crate::store::TotalsBy,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::UsageTotals>>,
        > {
            let filter = filter.clone();
            Box::pin(async move {
                $crate::store::sql::ops::usage_totals(&self.pool, &filter, by).await
            })
        }

        fn spend_since(
            &self,
            from_ms: i64,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<Vec<(String, f64)>>>
        {
            Box::pin($crate::store::sql::ops::spend_since(&self.pool, from_ms))
        }

        fn append_audit<'a>(
            &'a self,
            row: &'a $crate::store::AuditRow,
        ) -> ::futures_util::future::BoxFuture<'a, $crate::store::StoreResult<()>> {
            Box::pin($crate::store::sql::ops::append_audit(&self.pool, row))
        }

        fn list_audit(
            &self,
            filter: &$crate::store::AuditFilter,
            limit: u32,
        ) -> ::futures_util::future::BoxFuture<
            '_,
            $crate::store::StoreResult<Vec<$crate::store::AuditRow>>,
        > {
            let filter = filter.clone();
            Box::pin(async move {
                $crate::store::sql::ops::list_audit(&self.pool, &filter, limit).await
            })
        }

        fn prune_audit(
            &self,
            before_ms: i64,
        ) -> ::futures_util::future::BoxFuture<'_, $crate::store::StoreResult<u64>> {
            Box::pin($crate::store::sql::ops::prune_audit(&self.pool, before_ms))
        }

        fn close(&self) -> ::futures_util::future::BoxFuture<'_, ()> {
            Box::pin(async move { self.pool.close().await })
        }
    };
}
pub(crate) use shared_store_methods;
