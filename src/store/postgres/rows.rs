//! Rows of the PostgreSQL store turned into the trait's values, and the lists kept as JSON text
//! (as in the SQLite store, so `store copy` moves them unchanged).

use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::store::{AccountRecord, KeyRecord, Source, UsageRow};

pub const KEY_COLUMNS: &str = "name, key_hash, prefix, suffix, group_name, enabled, expires_at, concurrency, rpm_limit, daily_spend_limit, monthly_spend_limit, allowed_models, source, created_at";
pub const ACCOUNT_COLUMNS: &str = "name, platform, kind, base_url, chatgpt_account_id, expires_at, priority, concurrency, groups, enabled, models, model_map, credentials, source, created_at, updated_at, protocols";
pub const USAGE_COLUMNS: &str = "request_id, at_ms, key_name, account, endpoint, model, stream, status, success, input_tokens, cached_input_tokens, cache_creation_tokens, output_tokens, reasoning_tokens, cost_usd, priced, duration_ms, ttft_ms, attempts, client_disconnected, client_model, transport";

pub fn json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).unwrap_or_default())
}

fn parse_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// `$1, $2, …` for `count` values starting after `from`, in parentheses.
pub fn placeholders(from: usize, count: usize) -> String {
    let list: Vec<String> = (from + 1..=from + count).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

pub fn key(row: &PgRow) -> Result<KeyRecord, sqlx::Error> {
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

pub fn account(row: &PgRow) -> Result<AccountRecord, sqlx::Error> {
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
        protocols: protocols(row)?,
        credentials: row.try_get("credentials")?,
        source: Source::parse(row.try_get::<&str, _>("source")?),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// The `protocols` column: a JSON list of API names, or NULL for the defaults.
fn protocols(row: &PgRow) -> Result<Option<Vec<crate::domain::Protocol>>, sqlx::Error> {
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

/// A column holding one of an enum's names; an unknown name is a decoding error naming the row.
pub fn named<T>(row: &PgRow, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = crate::domain::UnknownName>,
{
    let text: &str = row.try_get(column)?;
    text.parse().map_err(|e| {
        let name: String = row.try_get("name").unwrap_or_default();
        sqlx::Error::Decode(format!("{name:?}: {column}: {e}").into())
    })
}

pub fn usage(row: &PgRow) -> Result<UsageRow, sqlx::Error> {
    Ok(UsageRow {
        request_id: row.try_get("request_id")?,
        at_ms: row.try_get("at_ms")?,
        key: row.try_get("key_name")?,
        account: row.try_get("account")?,
        endpoint: row.try_get("endpoint")?,
        model: row.try_get("model")?,
        client_model: row.try_get("client_model")?,
        stream: row.try_get("stream")?,
        status: u16::try_from(row.try_get::<i32, _>("status")?).unwrap_or(0),
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
