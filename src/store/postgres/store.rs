//! [`Store`] on PostgreSQL: the shared SQL of [`crate::store::sql`], and what is PostgreSQL's
//! own. Writes of groups, keys, accounts and prices run in a transaction that also bumps the `changes`
//! counter, so another instance polling it sees every write, and after the commit the change hook
//! (if set) tells the others at once; sign-in tokens carry a generation saved by
//! compare-and-swap.

use std::sync::LazyLock;

use futures_util::future::BoxFuture;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::PostgresStore;
use crate::store::sql::{affected, db, ops, queries, Backend, DbQuery, StoreRow, Value};
use crate::store::{
    AccountRecord, ChangeHook, GroupRecord, KeyRecord, PriceRecord, Store, StoreResult,
};

impl Backend for Postgres {
    /// 22 values each stays far below PostgreSQL's 65,535 parameters.
    const USAGE_ROWS_PER_STATEMENT: usize = 500;
    const DAY_BUCKET: &'static str = "to_char(to_timestamp(CAST(at_ms / 1000 AS DOUBLE PRECISION)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')";
    const COST_SUM: &'static str = "CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION)";
    const ACTION_HEAD: &'static str = "left(action, ";

    fn placeholder(i: usize) -> String {
        format!("${i}")
    }

    /// `SUM` of BIGINT is NUMERIC in PostgreSQL, so it cannot overflow; the total saturates like
    /// the SQLite store's.
    fn saturating_sum(column: &str) -> String {
        format!("CAST(LEAST(COALESCE(SUM({column}), 0), 9223372036854775807) AS BIGINT)")
    }

    crate::store::sql::backend_bridge!();
}

impl StoreRow for PgRow {
    fn col<'r, T: Value<'r>>(&'r self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
        self.try_get::<i32, _>(column).map(i64::from)
    }
}

static FULL_USAGE_INSERT: LazyLock<String> =
    LazyLock::new(|| queries::usage_insert_sql::<Postgres>(Postgres::USAGE_ROWS_PER_STATEMENT));

/// Moves the change counter inside the write's transaction.
async fn bump(tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
    sqlx::query("UPDATE changes SET counter = counter + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

impl PostgresStore {
    /// The one way a write of groups, keys, accounts or prices ends: the counter moved and committed
    /// with it, then the other instances told at once (the hook publishes through Redis when
    /// the runtime state is shared; without it they find the change at their next poll).
    async fn commit_change(&self, mut tx: Transaction<'_, Postgres>) -> StoreResult<()> {
        bump(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        if let Some(hook) = self.changed.get() {
            hook();
        }
        Ok(())
    }

    /// One write of groups, keys, accounts or prices, with the counter bumped in its transaction; how
    /// many rows it touched.
    async fn changing(&self, query: DbQuery<'_, Postgres>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = query.execute(&mut *tx).await.map_err(db)?;
        self.commit_change(tx).await?;
        Ok(done.rows_affected())
    }
}

impl Store for PostgresStore {
    crate::store::sql::ops::shared_store_methods!();

    fn shared(&self) -> bool {
        true
    }

    fn on_change(&self, hook: ChangeHook) {
        if self.changed.set(hook).is_err() {
            tracing::warn!("the store's change hook was set twice; the first one stays");
        }
    }

    fn change_counter(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT counter FROM changes WHERE id = 1")
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            row.try_get::<i64, _>("counter").map(Some).map_err(db)
        })
    }

    fn upsert_group(&self, group: &GroupRecord) -> BoxFuture<'_, StoreResult<()>> {
        let group = group.clone();
        Box::pin(async move {
            let query = queries::bind_group(sqlx::query(queries::UPSERT_GROUP), &group);
            self.changing(query).await.map(drop)
        })
    }

    fn delete_group(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = self
                .changing(sqlx::query(queries::DELETE_GROUP).bind(&name))
                .await?;
            affected(done, &name)
        })
    }

    fn insert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let query = queries::bind_key(sqlx::query(queries::INSERT_KEY), &key);
            self.changing(query).await.map(drop)
        })
    }

    fn update_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            // Checked before the commit: an update of no row moves no counter.
            let mut tx = self.pool.begin().await.map_err(db)?;
            let done = queries::bind_key_update(sqlx::query(queries::UPDATE_KEY), &key)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &key.name)?;
            self.commit_change(tx).await
        })
    }

    fn upsert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move {
            let query = queries::bind_key(sqlx::query(queries::UPSERT_KEY), &key);
            self.changing(query).await.map(drop)
        })
    }

    fn delete_key(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = self
                .changing(sqlx::query(queries::DELETE_KEY).bind(&name))
                .await?;
            affected(done, &name)
        })
    }

    fn insert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move {
            let query = queries::bind_account(sqlx::query(queries::INSERT_ACCOUNT), &account);
            self.changing(query).await.map(drop)
        })
    }

    fn upsert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>> {
        let account = account.clone();
        Box::pin(async move {
            let query = queries::bind_account(sqlx::query(queries::UPSERT_ACCOUNT), &account);
            self.changing(query).await.map(drop)
        })
    }

    fn delete_account(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(queries::DELETE_ACCOUNT_STATE)
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let done = sqlx::query(queries::DELETE_ACCOUNT)
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &name)?;
            self.commit_change(tx).await
        })
    }

    fn list_prices(&self) -> BoxFuture<'_, StoreResult<Vec<PriceRecord>>> {
        Box::pin(ops::list_prices(&self.pool))
    }

    fn upsert_price(&self, price: &PriceRecord) -> BoxFuture<'_, StoreResult<()>> {
        let price = price.clone();
        Box::pin(async move {
            let query = queries::bind_price(sqlx::query(queries::UPSERT_PRICE), &price);
            self.changing(query).await.map(drop)
        })
    }

    fn delete_price(&self, model: &str) -> BoxFuture<'_, StoreResult<()>> {
        let model = model.to_owned();
        Box::pin(async move {
            let done = self
                .changing(sqlx::query(queries::DELETE_PRICE).bind(&model))
                .await?;
            affected(done, &model)
        })
    }

    fn save_tokens(&self, name: &str, sealed: &[u8]) -> BoxFuture<'_, StoreResult<()>> {
        let (name, sealed) = (name.to_owned(), sealed.to_vec());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO account_tokens (name, sealed, updated_at, generation) VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at, generation = account_tokens.generation + 1",
            )
            .bind(name)
            .bind(sealed)
            .bind(crate::store::now_secs())
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
        })
    }

    fn token_generation(&self, name: &str) -> BoxFuture<'_, StoreResult<i64>> {
        let name = name.to_owned();
        Box::pin(async move {
            let row = sqlx::query("SELECT generation FROM account_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
            row.map_or(Ok(0), |r| r.try_get::<i64, _>("generation"))
                .map_err(db)
        })
    }

    fn save_tokens_if<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a [u8],
        seen: i64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO account_tokens (name, sealed, updated_at, generation) VALUES ($1, $2, $3, $4 + 1) ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at, generation = excluded.generation WHERE account_tokens.generation = $4",
            )
            .bind(name)
            .bind(sealed)
            .bind(crate::store::now_secs())
            .bind(seen)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(done.rows_affected() == 1)
        })
    }
}
