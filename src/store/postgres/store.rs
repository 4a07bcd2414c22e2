//! [`Store`] on PostgreSQL. Writes of groups, keys and accounts run in a transaction that also
//! bumps the `changes` counter, so another instance polling it sees every write; after the
//! commit the change hook (if set) tells the others at once.

use futures_util::future::BoxFuture;
use sqlx::{Postgres, Row, Transaction};

use super::rows::{self, ACCOUNT_COLUMNS, KEY_COLUMNS};
use super::{affected, db, PostgresStore};
use crate::store::{
    AccountRecord, AuditFilter, AuditRow, ChangeHook, GroupRecord, KeyRecord, SealedTokens, Source,
    Store, StoreResult, TotalsBy, UsageFilter, UsageRow, UsageTotals,
};

/// Moves the change counter inside the write's transaction.
async fn bump(tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
    sqlx::query("UPDATE changes SET counter = counter + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    Ok(())
}

impl PostgresStore {
    /// The one way a write of groups, keys or accounts ends: the counter moved and committed
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

    async fn write_key(&self, key: &KeyRecord, upsert: bool) -> StoreResult<()> {
        let conflict = if upsert {
            " ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash, prefix = excluded.prefix, suffix = excluded.suffix, group_name = excluded.group_name, enabled = excluded.enabled, expires_at = excluded.expires_at, concurrency = excluded.concurrency, rpm_limit = excluded.rpm_limit, daily_spend_limit = excluded.daily_spend_limit, monthly_spend_limit = excluded.monthly_spend_limit, allowed_models = excluded.allowed_models, source = excluded.source"
        } else {
            ""
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES {}{conflict}",
            rows::placeholders(0, 14)
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
        .bind(rows::json_list(&key.allowed_models))
        .bind(key.source.as_str())
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.commit_change(tx).await
    }

    async fn write_account(&self, a: &AccountRecord, upsert: bool) -> StoreResult<()> {
        let conflict = if upsert {
            " ON CONFLICT (name) DO UPDATE SET platform = excluded.platform, kind = excluded.kind, base_url = excluded.base_url, chatgpt_account_id = excluded.chatgpt_account_id, expires_at = excluded.expires_at, priority = excluded.priority, concurrency = excluded.concurrency, groups = excluded.groups, enabled = excluded.enabled, models = excluded.models, model_map = excluded.model_map, credentials = excluded.credentials, source = excluded.source, updated_at = excluded.updated_at, protocols = excluded.protocols"
        } else {
            ""
        };
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES {}{conflict}",
            rows::placeholders(0, 17)
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
        .bind(rows::json_list(&a.models))
        .bind(serde_json::to_string(&a.model_map).unwrap_or_default())
        .bind(&a.credentials)
        .bind(a.source.as_str())
        .bind(a.created_at)
        .bind(a.updated_at)
        .bind(rows::json_list(&a.protocols.as_ref().map(|list| {
            list.iter().map(|p| p.api_name().to_owned()).collect()
        })))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        self.commit_change(tx).await
    }

    /// One statement that changes groups, keys or accounts, with the counter bumped; how many
    /// rows it touched.
    async fn changing(&self, sql: &str, name: &str) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let done = sqlx::query(sql)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        self.commit_change(tx).await?;
        Ok(done.rows_affected())
    }
}

impl Store for PostgresStore {
    fn get_meta(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>> {
        let name = name.to_owned();
        Box::pin(async move {
            let row = sqlx::query("SELECT value FROM meta WHERE name = $1")
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
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
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
                "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&name)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            let row = sqlx::query("SELECT value FROM meta WHERE name = $1")
                .bind(&name)
                .fetch_one(&self.pool)
                .await
                .map_err(db)?;
            row.try_get::<Vec<u8>, _>("value").map_err(db)
        })
    }

    fn list_meta(&self) -> BoxFuture<'_, StoreResult<Vec<crate::store::MetaRow>>> {
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

    fn list_groups(&self) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT name, platform, source, created_at FROM groups ORDER BY name")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db)?;
            let mut groups = Vec::with_capacity(rows.len());
            for r in &rows {
                let platform = match rows::named(r, "platform") {
                    Ok(platform) => platform,
                    Err(e) => {
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
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query(
                "INSERT INTO groups (name, platform, source, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET platform = excluded.platform, source = excluded.source",
            )
            .bind(&group.name)
            .bind(group.platform.as_str())
            .bind(group.source.as_str())
            .bind(group.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            self.commit_change(tx).await
        })
    }

    fn delete_group(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = self
                .changing("DELETE FROM groups WHERE name = $1", &name)
                .await?;
            affected(done, &name)
        })
    }

    fn list_keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>> {
        Box::pin(async move {
            let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY name"))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            rows.iter()
                .map(rows::key)
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
            let mut tx = self.pool.begin().await.map_err(db)?;
            let done = sqlx::query(
                "UPDATE api_keys SET group_name = $1, enabled = $2, expires_at = $3, concurrency = $4, rpm_limit = $5, daily_spend_limit = $6, monthly_spend_limit = $7, allowed_models = $8, source = $9 WHERE name = $10",
            )
            .bind(&key.group)
            .bind(key.enabled)
            .bind(key.expires_at)
            .bind(i64::from(key.concurrency))
            .bind(i64::from(key.rpm_limit))
            .bind(key.daily_spend_limit)
            .bind(key.monthly_spend_limit)
            .bind(rows::json_list(&key.allowed_models))
            .bind(key.source.as_str())
            .bind(&key.name)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            affected(done.rows_affected(), &key.name)?;
            self.commit_change(tx).await
        })
    }

    fn upsert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        let key = key.clone();
        Box::pin(async move { self.write_key(&key, true).await })
    }

    fn delete_key(&self, name: &str) -> BoxFuture<'_, StoreResult<()>> {
        let name = name.to_owned();
        Box::pin(async move {
            let done = self
                .changing("DELETE FROM api_keys WHERE name = $1", &name)
                .await?;
            affected(done, &name)
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
                .map(rows::account)
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
            let mut tx = self.pool.begin().await.map_err(db)?;
            sqlx::query("DELETE FROM account_state WHERE name = $1")
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let done = sqlx::query("DELETE FROM accounts WHERE name = $1")
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            affected(done.rows_affected(), &name)?;
            self.commit_change(tx).await
        })
    }

    fn save_account_state(&self, name: &str, state: &str) -> BoxFuture<'_, StoreResult<()>> {
        let (name, state) = (name.to_owned(), state.to_owned());
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO account_state (name, state, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(state)
            .bind(crate::store::now_secs())
            .execute(&self.pool)
            .await
            .map_err(db)?;
            Ok(())
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

    fn saved_tokens(&self) -> BoxFuture<'_, StoreResult<Vec<SealedTokens>>> {
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

    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.insert_usage_rows(rows))
    }

    fn list_usage(
        &self,
        filter: &UsageFilter,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>> {
        let filter = filter.clone();
        Box::pin(async move { self.list_usage_rows(&filter, limit, offset).await })
    }

    fn count_usage(&self, filter: &UsageFilter) -> BoxFuture<'_, StoreResult<u64>> {
        let filter = filter.clone();
        Box::pin(async move { self.count_usage_rows(&filter).await })
    }

    fn usage_totals(
        &self,
        filter: &UsageFilter,
        by: TotalsBy,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageTotals>>> {
        let filter = filter.clone();
        Box::pin(async move { self.usage_totals_of(&filter, by).await })
    }

    fn spend_since(&self, from_ms: i64) -> BoxFuture<'_, StoreResult<Vec<(String, f64)>>> {
        Box::pin(self.spend_since_ms(from_ms))
    }

    fn append_audit<'a>(&'a self, row: &'a AuditRow) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(self.append_audit_row(row))
    }

    fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRow>>> {
        let filter = filter.clone();
        Box::pin(async move { self.list_audit_rows(&filter, limit).await })
    }

    fn prune_audit(&self, before_ms: i64) -> BoxFuture<'_, StoreResult<u64>> {
        Box::pin(self.prune_audit_rows(before_ms))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move { self.pool.close().await })
    }
}
