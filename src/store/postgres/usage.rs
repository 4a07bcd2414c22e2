//! Usage rows on PostgreSQL: batched multi-row inserts, idempotent by request id (`ON CONFLICT
//! (request_id) DO NOTHING`), and the listings and totals of the admin API.

use sqlx::{Postgres, QueryBuilder, Row};

use super::rows::{self, USAGE_COLUMNS};
use super::{db, PostgresStore};
use crate::store::{StatusFilter, StoreResult, TotalsBy, UsageFilter, UsageRow, UsageTotals};

/// Usage rows per INSERT: 22 values each stays far below PostgreSQL's 65,535 parameters.
const USAGE_ROWS_PER_STATEMENT: usize = 500;

/// `CAST(LEAST(SUM(col), i64::MAX) AS BIGINT)`: `SUM` of BIGINT is NUMERIC in PostgreSQL, so it
/// cannot overflow; the total saturates like the SQLite store's.
fn saturating_sum(column: &str) -> String {
    format!("CAST(LEAST(COALESCE(SUM({column}), 0), 9223372036854775807) AS BIGINT)")
}

/// Appends ` WHERE …` for the filter.
fn push_filter(query: &mut QueryBuilder<'_, Postgres>, filter: &UsageFilter) {
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
        Some(StatusFilter::Code(code)) => {
            query.push(" AND status = ").push_bind(i32::from(code));
        }
        Some(StatusFilter::Success(ok)) => {
            query.push(" AND success = ").push_bind(ok);
        }
        None => {}
    }
}

/// `INSERT INTO usage (…) VALUES ($1, …), … ON CONFLICT (request_id) DO NOTHING`.
fn usage_insert_sql(rows: usize) -> String {
    let columns = USAGE_COLUMNS.split(", ").count();
    let values: Vec<String> = (0..rows)
        .map(|r| rows::placeholders(r * columns, columns))
        .collect();
    format!(
        "INSERT INTO usage ({USAGE_COLUMNS}) VALUES {} ON CONFLICT (request_id) DO NOTHING",
        values.join(", ")
    )
}

static FULL_USAGE_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| usage_insert_sql(USAGE_ROWS_PER_STATEMENT));

impl PostgresStore {
    pub(super) async fn insert_usage_rows(&self, rows: &[UsageRow]) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut new = 0;
        for chunk in rows.chunks(USAGE_ROWS_PER_STATEMENT) {
            // Only the full-size statement stays prepared (see the SQLite store).
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
                insert = insert
                    .bind(r.request_id.as_str())
                    .bind(r.at_ms)
                    .bind(r.key.as_str())
                    .bind(r.account.as_deref())
                    .bind(r.endpoint.as_str())
                    .bind(r.model.as_str())
                    .bind(r.stream)
                    .bind(i32::from(r.status))
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
    }

    pub(super) async fn list_usage_rows(
        &self,
        filter: &UsageFilter,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<UsageRow>> {
        let mut query = QueryBuilder::<Postgres>::new(format!("SELECT {USAGE_COLUMNS} FROM usage"));
        push_filter(&mut query, filter);
        query
            .push(" ORDER BY at_ms DESC, request_id LIMIT ")
            .push_bind(i64::from(limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(offset).unwrap_or(i64::MAX));
        let found = query.build().fetch_all(&self.pool).await.map_err(db)?;
        found
            .iter()
            .map(rows::usage)
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    pub(super) async fn count_usage_rows(&self, filter: &UsageFilter) -> StoreResult<u64> {
        let mut query = QueryBuilder::<Postgres>::new("SELECT COUNT(*) AS n FROM usage");
        push_filter(&mut query, filter);
        let row = query.build().fetch_one(&self.pool).await.map_err(db)?;
        let n: i64 = row.try_get("n").map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(super) async fn usage_totals_of(
        &self,
        filter: &UsageFilter,
        by: TotalsBy,
    ) -> StoreResult<Vec<UsageTotals>> {
        let bucket = match by {
            TotalsBy::Day => {
                "to_char(to_timestamp(CAST(at_ms / 1000 AS DOUBLE PRECISION)) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
            }
            TotalsBy::Key => "key_name",
        };
        let mut query = QueryBuilder::<Postgres>::new(format!(
            "SELECT {bucket} AS bucket, COUNT(*) AS requests, {} AS input_tokens, {} AS cached_input_tokens, {} AS output_tokens, CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost_usd FROM usage",
            saturating_sum("input_tokens"),
            saturating_sum("cached_input_tokens"),
            saturating_sum("output_tokens")
        ));
        push_filter(&mut query, filter);
        query.push(" GROUP BY 1 ORDER BY 1");
        let found = query.build().fetch_all(&self.pool).await.map_err(db)?;
        found
            .iter()
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
    }

    pub(super) async fn spend_since_ms(&self, from_ms: i64) -> StoreResult<Vec<(String, f64)>> {
        let found = sqlx::query(
            "SELECT key_name, CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) AS cost FROM usage WHERE at_ms >= $1 GROUP BY key_name",
        )
        .bind(from_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        found
            .iter()
            .map(|r| Ok((r.try_get("key_name")?, r.try_get("cost")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db)
    }
}
