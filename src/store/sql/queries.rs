//! The SQL both backends run, and the values bound to it. Statements are built at run time
//! (building needs no database); `$n` parameters are read by SQLite as by PostgreSQL.

use sqlx::QueryBuilder;

use super::rows::json_list;
use super::{Backend, BindValue, DbQuery};
use crate::store::{
    AccountRecord, AuditFilter, AuditRow, GroupRecord, KeyRecord, PriceRecord, StatusFilter,
    TotalsBy, UsageFilter, UsageRow,
};

macro_rules! key_columns {
    () => {
        "name, key_hash, prefix, suffix, group_name, enabled, expires_at, concurrency, rpm_limit, daily_spend_limit, monthly_spend_limit, allowed_models, source, created_at"
    };
}
macro_rules! account_columns {
    () => {
        "name, platform, kind, base_url, chatgpt_account_id, expires_at, priority, concurrency, groups, enabled, models, model_map, credentials, source, created_at, updated_at, protocols"
    };
}
macro_rules! usage_columns {
    () => {
        "request_id, at_ms, key_name, account, endpoint, model, stream, status, success, input_tokens, cached_input_tokens, cache_creation_tokens, output_tokens, reasoning_tokens, cost_usd, priced, duration_ms, ttft_ms, attempts, client_disconnected, client_model, transport"
    };
}

// === meta ===

pub const GET_META: &str = "SELECT value FROM meta WHERE name = $1";
pub const SET_META: &str = "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value";
pub const INSERT_META_IF_NEW: &str =
    "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub const LIST_META: &str = "SELECT name, value FROM meta ORDER BY name";

// === groups ===

pub const LIST_GROUPS: &str = "SELECT name, platform, source, created_at, translate, model_map, model_fallback FROM groups ORDER BY name";
pub const UPSERT_GROUP: &str = "INSERT INTO groups (name, platform, source, created_at, translate, model_map, model_fallback) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET platform = excluded.platform, source = excluded.source, translate = excluded.translate, model_map = excluded.model_map, model_fallback = excluded.model_fallback";
pub const DELETE_GROUP: &str = "DELETE FROM groups WHERE name = $1";

/// The values of [`UPSERT_GROUP`].
pub fn bind_group<'q, DB: Backend>(
    query: DbQuery<'q, DB>,
    group: &'q GroupRecord,
) -> DbQuery<'q, DB> {
    query
        .value(group.name.as_str())
        .value(group.platform.as_str())
        .value(group.source.as_str())
        .value(group.created_at)
        .value(group.settings.translate)
        .value(json_map(&group.settings.model_map))
        .value(json_map(&group.settings.model_fallback))
}

/// A map as JSON text, `None` when empty.
fn json_map<V: serde::Serialize>(map: &std::collections::BTreeMap<String, V>) -> Option<String> {
    (!map.is_empty()).then(|| serde_json::to_string(map).unwrap_or_default())
}

// === API keys ===

pub const LIST_KEYS: &str = concat!("SELECT ", key_columns!(), " FROM api_keys ORDER BY name");
/// The insert of one key, written once for [`INSERT_KEY`] and [`UPSERT_KEY`].
macro_rules! insert_key {
    () => {
        concat!(
            "INSERT INTO api_keys (",
            key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )
    };
}
pub const INSERT_KEY: &str = insert_key!();
pub const UPSERT_KEY: &str = concat!(
    insert_key!(),
    " ON CONFLICT (name) DO UPDATE SET key_hash = excluded.key_hash, prefix = excluded.prefix, suffix = excluded.suffix, group_name = excluded.group_name, enabled = excluded.enabled, expires_at = excluded.expires_at, concurrency = excluded.concurrency, rpm_limit = excluded.rpm_limit, daily_spend_limit = excluded.daily_spend_limit, monthly_spend_limit = excluded.monthly_spend_limit, allowed_models = excluded.allowed_models, source = excluded.source"
);
/// Every field but the hash and the creation time, by name.
pub const UPDATE_KEY: &str = "UPDATE api_keys SET group_name = $1, enabled = $2, expires_at = $3, concurrency = $4, rpm_limit = $5, daily_spend_limit = $6, monthly_spend_limit = $7, allowed_models = $8, source = $9 WHERE name = $10";
pub const DELETE_KEY: &str = "DELETE FROM api_keys WHERE name = $1";

/// The values of [`INSERT_KEY`] / [`UPSERT_KEY`].
pub fn bind_key<'q, DB: Backend>(query: DbQuery<'q, DB>, key: &'q KeyRecord) -> DbQuery<'q, DB> {
    query
        .value(key.name.as_str())
        .value(key.key_hash.as_str())
        .value(key.prefix.as_str())
        .value(key.suffix.as_str())
        .value(key.group.as_str())
        .value(key.enabled)
        .value(key.expires_at)
        .value(i64::from(key.concurrency))
        .value(i64::from(key.rpm_limit))
        .value(key.daily_spend_limit)
        .value(key.monthly_spend_limit)
        .value(json_list(&key.allowed_models))
        .value(key.source.as_str())
        .value(key.created_at)
}

/// The values of [`UPDATE_KEY`].
pub fn bind_key_update<'q, DB: Backend>(
    query: DbQuery<'q, DB>,
    key: &'q KeyRecord,
) -> DbQuery<'q, DB> {
    query
        .value(key.group.as_str())
        .value(key.enabled)
        .value(key.expires_at)
        .value(i64::from(key.concurrency))
        .value(i64::from(key.rpm_limit))
        .value(key.daily_spend_limit)
        .value(key.monthly_spend_limit)
        .value(json_list(&key.allowed_models))
        .value(key.source.as_str())
        .value(key.name.as_str())
}

// === accounts ===

pub const LIST_ACCOUNTS: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts ORDER BY priority, name"
);
/// The insert of one account, written once for [`INSERT_ACCOUNT`] and [`UPSERT_ACCOUNT`].
macro_rules! insert_account {
    () => {
        concat!(
            "INSERT INTO accounts (",
            account_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        )
    };
}
pub const INSERT_ACCOUNT: &str = insert_account!();
pub const UPSERT_ACCOUNT: &str = concat!(
    insert_account!(),
    " ON CONFLICT (name) DO UPDATE SET platform = excluded.platform, kind = excluded.kind, base_url = excluded.base_url, chatgpt_account_id = excluded.chatgpt_account_id, expires_at = excluded.expires_at, priority = excluded.priority, concurrency = excluded.concurrency, groups = excluded.groups, enabled = excluded.enabled, models = excluded.models, model_map = excluded.model_map, credentials = excluded.credentials, source = excluded.source, updated_at = excluded.updated_at, protocols = excluded.protocols"
);
/// An account's runtime state goes with it (before the account row).
pub const DELETE_ACCOUNT_STATE: &str = "DELETE FROM account_state WHERE name = $1";
pub const DELETE_ACCOUNT: &str = "DELETE FROM accounts WHERE name = $1";
pub const SAVE_ACCOUNT_STATE: &str = "INSERT INTO account_state (name, state, updated_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at";
pub const ACCOUNT_STATES: &str = "SELECT name, state FROM account_state";
pub const SAVED_TOKENS: &str = "SELECT name, sealed FROM account_tokens";

/// The values of [`INSERT_ACCOUNT`] / [`UPSERT_ACCOUNT`].
pub fn bind_account<'q, DB: Backend>(
    query: DbQuery<'q, DB>,
    a: &'q AccountRecord,
) -> DbQuery<'q, DB> {
    let protocols = a
        .protocols
        .as_ref()
        .map(|list| list.iter().map(|p| p.api_name().to_owned()).collect());
    query
        .value(a.name.as_str())
        .value(a.platform.as_str())
        .value(a.kind.as_str())
        .value(a.base_url.as_str())
        .value(a.chatgpt_account_id.as_deref())
        .value(a.expires_at)
        .value(i64::from(a.priority))
        .value(i64::from(a.concurrency))
        .value(serde_json::to_string(&a.groups).unwrap_or_default())
        .value(a.enabled)
        .value(json_list(&a.models))
        .value(serde_json::to_string(&a.model_map).unwrap_or_default())
        .value(a.credentials.as_slice())
        .value(a.source.as_str())
        .value(a.created_at)
        .value(a.updated_at)
        .value(json_list(&protocols))
}

// === prices ===

pub const LIST_PRICES: &str = "SELECT model, input, cached_input, output, cache_creation, source, updated_at FROM prices ORDER BY model";
pub const UPSERT_PRICE: &str = "INSERT INTO prices (model, input, cached_input, output, cache_creation, source, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (model) DO UPDATE SET input = excluded.input, cached_input = excluded.cached_input, output = excluded.output, cache_creation = excluded.cache_creation, source = excluded.source, updated_at = excluded.updated_at";
pub const DELETE_PRICE: &str = "DELETE FROM prices WHERE model = $1";

/// The values of [`UPSERT_PRICE`].
pub fn bind_price<'q, DB: Backend>(query: DbQuery<'q, DB>, p: &'q PriceRecord) -> DbQuery<'q, DB> {
    query
        .value(p.model.as_str())
        .value(p.price.input)
        .value(p.price.cached_input)
        .value(p.price.output)
        .value(p.price.cache_creation)
        .value(p.source.as_str())
        .value(p.updated_at)
}

// === usage ===

const USAGE_COLUMNS: &str = usage_columns!();
pub const SELECT_USAGE: &str = concat!("SELECT ", usage_columns!(), " FROM usage");
pub const COUNT_USAGE: &str = "SELECT COUNT(*) AS n FROM usage";

/// `INSERT INTO usage (…) VALUES (…), … ON CONFLICT (request_id) DO NOTHING` for `rows` rows,
/// in the backend's placeholders.
pub fn usage_insert_sql<DB: Backend>(rows: usize) -> String {
    let columns = USAGE_COLUMNS.split(", ").count();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let row: Vec<String> = (1..=columns)
                .map(|c| DB::placeholder(r * columns + c))
                .collect();
            format!("({})", row.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO usage ({USAGE_COLUMNS}) VALUES {} ON CONFLICT (request_id) DO NOTHING",
        values.join(", ")
    )
}

/// One usage row's values, in [`USAGE_COLUMNS`] order. `&str`, not `&String`: sqlx copies a
/// bound `String` (five allocations a row).
pub fn bind_usage<'q, DB: Backend>(query: DbQuery<'q, DB>, r: &'q UsageRow) -> DbQuery<'q, DB> {
    query
        .value(r.request_id.as_str())
        .value(r.at_ms)
        .value(r.key.as_str())
        .value(r.account.as_deref())
        .value(r.endpoint.as_str())
        .value(r.model.as_str())
        .value(r.stream)
        .value(i32::from(r.status))
        .value(r.success)
        .value(r.input_tokens)
        .value(r.cached_input_tokens)
        .value(r.cache_creation_tokens)
        .value(r.output_tokens)
        .value(r.reasoning_tokens)
        .value(r.cost_usd)
        .value(r.priced)
        .value(r.duration_ms)
        .value(r.ttft_ms)
        .value(r.attempts)
        .value(r.client_disconnected)
        .value(r.client_model.as_deref())
        .value(r.transport.as_str())
}

/// Appends ` WHERE …` for the filter.
fn push_filter<DB: Backend>(query: &mut QueryBuilder<'_, DB>, filter: &UsageFilter) {
    query.push(" WHERE 1=1");
    if let Some(key) = &filter.key {
        query.push(" AND key_name = ");
        DB::push_bind(query, key.clone());
    }
    if let Some(account) = &filter.account {
        query.push(" AND account = ");
        DB::push_bind(query, account.clone());
    }
    if let Some(model) = &filter.model {
        query.push(" AND model = ");
        DB::push_bind(query, model.clone());
    }
    if let Some(from) = filter.from_ms {
        query.push(" AND at_ms >= ");
        DB::push_bind(query, from);
    }
    if let Some(to) = filter.to_ms {
        query.push(" AND at_ms < ");
        DB::push_bind(query, to);
    }
    match filter.status {
        Some(StatusFilter::Code(code)) => {
            query.push(" AND status = ");
            DB::push_bind(query, i32::from(code));
        }
        Some(StatusFilter::Success(ok)) => {
            query.push(" AND success = ");
            DB::push_bind(query, ok);
        }
        None => {}
    }
}

/// The rows of the filter, newest first, one page.
pub fn list_usage<DB: Backend>(
    filter: &UsageFilter,
    limit: u32,
    offset: u64,
) -> QueryBuilder<'static, DB> {
    let mut query = QueryBuilder::new(SELECT_USAGE);
    push_filter(&mut query, filter);
    query.push(" ORDER BY at_ms DESC, request_id LIMIT ");
    DB::push_bind(&mut query, i64::from(limit));
    query.push(" OFFSET ");
    DB::push_bind(&mut query, i64::try_from(offset).unwrap_or(i64::MAX));
    query
}

/// `n`: how many rows the filter takes.
pub fn count_usage<DB: Backend>(filter: &UsageFilter) -> QueryBuilder<'static, DB> {
    let mut query = QueryBuilder::new(COUNT_USAGE);
    push_filter(&mut query, filter);
    query
}

/// Totals per day or key (rows for [`super::rows::totals`]).
pub fn usage_totals<DB: Backend>(filter: &UsageFilter, by: TotalsBy) -> QueryBuilder<'static, DB> {
    let bucket = match by {
        TotalsBy::Day => DB::DAY_BUCKET,
        TotalsBy::Key => "key_name",
    };
    let mut query = QueryBuilder::new(format!(
        "SELECT {bucket} AS bucket, COUNT(*) AS requests, {} AS input_tokens, {} AS cached_input_tokens, {} AS output_tokens, {} AS cost_usd FROM usage",
        DB::saturating_sum("input_tokens"),
        DB::saturating_sum("cached_input_tokens"),
        DB::saturating_sum("output_tokens"),
        DB::COST_SUM,
    ));
    push_filter(&mut query, filter);
    query.push(" GROUP BY 1 ORDER BY 1");
    query
}

/// Cost per key name since `$1` (rows for [`super::rows::spend`]).
pub fn spend_since_sql<DB: Backend>() -> String {
    format!(
        "SELECT key_name, {} AS cost FROM usage WHERE at_ms >= $1 GROUP BY key_name",
        DB::COST_SUM
    )
}

// === audit trail ===

pub const APPEND_AUDIT: &str = "INSERT INTO audit (at_ms, actor, client, action, target, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const PRUNE_AUDIT: &str = "DELETE FROM audit WHERE at_ms < $1";

/// The values of [`APPEND_AUDIT`].
pub fn bind_audit<'q, DB: Backend>(query: DbQuery<'q, DB>, row: &'q AuditRow) -> DbQuery<'q, DB> {
    query
        .value(row.at_ms)
        .value(row.actor.as_str())
        .value(row.client.as_deref())
        .value(row.action.as_str())
        .value(row.target.as_str())
        .value(row.before.as_deref())
        .value(row.after.as_deref())
}

/// The rows of the filter, newest first (rows for [`super::rows::audit`]).
pub fn list_audit<DB: Backend>(filter: &AuditFilter, limit: u32) -> QueryBuilder<'static, DB> {
    let mut query = QueryBuilder::new(
        "SELECT id, at_ms, actor, client, action, target, before_json, after_json FROM audit WHERE 1=1",
    );
    if let Some(prefix) = &filter.action_prefix {
        // A function of the first characters, not LIKE: a `_` or `%` in the prefix means itself.
        query.push(" AND ").push(DB::ACTION_HEAD);
        DB::push_bind(
            &mut query,
            i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX),
        );
        query.push(") = ");
        DB::push_bind(&mut query, prefix.clone());
    }
    if let Some(since) = filter.since_ms {
        query.push(" AND at_ms >= ");
        DB::push_bind(&mut query, since);
    }
    if let Some(until) = filter.until_ms {
        query.push(" AND at_ms < ");
        DB::push_bind(&mut query, until);
    }
    if let Some(before) = filter.before_id {
        query.push(" AND id < ");
        DB::push_bind(&mut query, before);
    }
    query.push(" ORDER BY id DESC LIMIT ");
    DB::push_bind(&mut query, i64::from(limit));
    query
}
