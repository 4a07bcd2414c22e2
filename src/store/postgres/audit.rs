//! The audit trail on PostgreSQL: the SQLite backend's queries with PostgreSQL's placeholders.

use sqlx::{Postgres, QueryBuilder, Row};

use super::{db, PostgresStore};
use crate::store::{AuditFilter, AuditRow, StoreResult};

impl PostgresStore {
    pub(super) async fn append_audit_row(&self, row: &AuditRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit (at_ms, actor, client, action, target, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    }

    pub(super) async fn list_audit_rows(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>> {
        let mut query = QueryBuilder::<Postgres>::new(
            "SELECT id, at_ms, actor, client, action, target, before_json, after_json FROM audit WHERE TRUE",
        );
        if let Some(prefix) = &filter.action_prefix {
            // `left`, not LIKE: a `_` or `%` in the prefix means itself.
            query
                .push(" AND left(action, ")
                .push_bind(i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX))
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
    }

    pub(super) async fn prune_audit_rows(&self, before_ms: i64) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM audit WHERE at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }
}
