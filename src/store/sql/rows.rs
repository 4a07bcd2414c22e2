//! Rows of either backend turned into the trait's values. Lists are JSON text in both (so
//! `store copy` moves them unchanged); an unknown enum name is a decoding error naming the row.

use super::{db, StoreRow};
use crate::domain::Protocol;
use crate::store::{
    AccountRecord, AuditRow, GroupRecord, GroupSettingsRecord, KeyRecord, MetaRow, PriceRecord,
    SealedTokens, Source, StoreResult, UsageRow, UsageTotals,
};

/// Every row decoded by `decode`, or the first error.
pub fn all<R, T>(rows: &[R], decode: fn(&R) -> Result<T, sqlx::Error>) -> StoreResult<Vec<T>> {
    rows.iter()
        .map(decode)
        .collect::<Result<_, _>>()
        .map_err(db)
}

pub fn json_list(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).unwrap_or_default())
}

fn parse_list(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// The groups; a row of an unknown platform is left out with a warning, not fatal (as before
/// platforms were typed).
pub fn groups<R: StoreRow>(rows: &[R]) -> StoreResult<Vec<GroupRecord>> {
    let mut groups = Vec::with_capacity(rows.len());
    for r in rows {
        let platform = match named(r, "platform") {
            Ok(platform) => platform,
            Err(e) => {
                tracing::warn!("a stored group is left out: {e}");
                continue;
            }
        };
        groups.push(GroupRecord {
            name: r.col("name").map_err(db)?,
            platform,
            source: Source::parse(r.col::<&str>("source").map_err(db)?),
            created_at: r.col("created_at").map_err(db)?,
            settings: GroupSettingsRecord {
                translate: r.col("translate").map_err(db)?,
                model_map: json_map(r.col("model_map").map_err(db)?),
                model_fallback: json_map(r.col("model_fallback").map_err(db)?),
            },
        });
    }
    Ok(groups)
}

/// A JSON object column; NULL (and text that is not one, which only a hand edit makes) is empty.
fn json_map<T: serde::de::DeserializeOwned + Default>(text: Option<String>) -> T {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

pub fn key<R: StoreRow>(row: &R) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        name: row.col("name")?,
        key_hash: row.col("key_hash")?,
        prefix: row.col("prefix")?,
        suffix: row.col("suffix")?,
        group: row.col("group_name")?,
        enabled: row.col("enabled")?,
        expires_at: row.col("expires_at")?,
        concurrency: u32::try_from(row.col::<i64>("concurrency")?).unwrap_or(0),
        rpm_limit: u32::try_from(row.col::<i64>("rpm_limit")?).unwrap_or(0),
        daily_spend_limit: row.col("daily_spend_limit")?,
        monthly_spend_limit: row.col("monthly_spend_limit")?,
        allowed_models: parse_list(row.col("allowed_models")?),
        source: Source::parse(row.col::<&str>("source")?),
        created_at: row.col("created_at")?,
    })
}

pub fn account<R: StoreRow>(row: &R) -> Result<AccountRecord, sqlx::Error> {
    Ok(AccountRecord {
        name: row.col("name")?,
        platform: named(row, "platform")?,
        kind: named(row, "kind")?,
        base_url: row.col("base_url")?,
        chatgpt_account_id: row.col("chatgpt_account_id")?,
        expires_at: row.col("expires_at")?,
        priority: i32::try_from(row.col::<i64>("priority")?).unwrap_or(0),
        concurrency: u32::try_from(row.col::<i64>("concurrency")?).unwrap_or(0),
        groups: parse_list(Some(row.col("groups")?)).unwrap_or_default(),
        enabled: row.col("enabled")?,
        models: parse_list(row.col("models")?),
        model_map: serde_json::from_str(row.col::<&str>("model_map")?).unwrap_or_default(),
        protocols: protocols(row)?,
        credentials: row.col("credentials")?,
        source: Source::parse(row.col::<&str>("source")?),
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

/// The `protocols` column: a JSON list of API names, or NULL for the defaults.
fn protocols<R: StoreRow>(row: &R) -> Result<Option<Vec<Protocol>>, sqlx::Error> {
    let Some(names) = parse_list(row.col("protocols")?) else {
        return Ok(None);
    };
    names
        .iter()
        .map(|n| Protocol::from_api_name(n))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
        .map_err(|e| decode_error(row, "protocols", e))
}

/// A column holding one of an enum's names (`openai`, `apikey`).
fn named<R: StoreRow, T>(row: &R, column: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = crate::domain::UnknownName>,
{
    let text: &str = row.col(column)?;
    text.parse().map_err(|e| decode_error(row, column, e))
}

fn decode_error<R: StoreRow>(row: &R, column: &str, e: impl std::fmt::Display) -> sqlx::Error {
    let name: String = row.col("name").unwrap_or_default();
    sqlx::Error::Decode(format!("{name:?}: {column}: {e}").into())
}

pub fn price<R: StoreRow>(row: &R) -> Result<PriceRecord, sqlx::Error> {
    Ok(PriceRecord {
        model: row.col("model")?,
        price: crate::pricing::PriceSpec {
            input: row.col("input")?,
            cached_input: row.col("cached_input")?,
            output: row.col("output")?,
            cache_creation: row.col("cache_creation")?,
        },
        source: Source::parse(row.col::<&str>("source")?),
        updated_at: row.col("updated_at")?,
    })
}

pub fn usage<R: StoreRow>(row: &R) -> Result<UsageRow, sqlx::Error> {
    Ok(UsageRow {
        request_id: row.col("request_id")?,
        at_ms: row.col("at_ms")?,
        key: row.col("key_name")?,
        account: row.col("account")?,
        endpoint: row.col("endpoint")?,
        model: row.col("model")?,
        client_model: row.col("client_model")?,
        stream: row.col("stream")?,
        status: u16::try_from(row.int("status")?).unwrap_or(0),
        success: row.col("success")?,
        input_tokens: row.col("input_tokens")?,
        cached_input_tokens: row.col("cached_input_tokens")?,
        cache_creation_tokens: row.col("cache_creation_tokens")?,
        output_tokens: row.col("output_tokens")?,
        reasoning_tokens: row.col("reasoning_tokens")?,
        cost_usd: row.col("cost_usd")?,
        priced: row.col("priced")?,
        duration_ms: row.col("duration_ms")?,
        ttft_ms: row.col("ttft_ms")?,
        attempts: row.col("attempts")?,
        client_disconnected: row.col("client_disconnected")?,
        transport: row.col("transport")?,
    })
}

pub fn totals<R: StoreRow>(row: &R) -> Result<UsageTotals, sqlx::Error> {
    Ok(UsageTotals {
        bucket: row.col("bucket")?,
        requests: row.col("requests")?,
        input_tokens: row.col("input_tokens")?,
        cached_input_tokens: row.col("cached_input_tokens")?,
        output_tokens: row.col("output_tokens")?,
        cost_usd: row.col("cost_usd")?,
    })
}

pub fn audit<R: StoreRow>(row: &R) -> Result<AuditRow, sqlx::Error> {
    Ok(AuditRow {
        id: row.col("id")?,
        at_ms: row.col("at_ms")?,
        actor: row.col("actor")?,
        client: row.col("client")?,
        action: row.col("action")?,
        target: row.col("target")?,
        before: row.col("before_json")?,
        after: row.col("after_json")?,
    })
}

/// A `meta` row.
pub fn meta<R: StoreRow>(row: &R) -> Result<MetaRow, sqlx::Error> {
    Ok((row.col("name")?, row.col("value")?))
}

/// An account's saved sign-in tokens (sealed).
pub fn tokens<R: StoreRow>(row: &R) -> Result<SealedTokens, sqlx::Error> {
    Ok((row.col("name")?, row.col("sealed")?))
}

/// An account's saved runtime state.
pub fn account_state<R: StoreRow>(row: &R) -> Result<(String, String), sqlx::Error> {
    Ok((row.col("name")?, row.col("state")?))
}

/// A key's name and its spending.
pub fn spend<R: StoreRow>(row: &R) -> Result<(String, f64), sqlx::Error> {
    Ok((row.col("key_name")?, row.col("cost")?))
}

/// The `value` of a `meta` row.
pub fn value<R: StoreRow>(row: &R) -> Result<Vec<u8>, sqlx::Error> {
    row.col("value")
}

/// The `n` of a count.
pub fn count<R: StoreRow>(row: &R) -> Result<i64, sqlx::Error> {
    row.col("n")
}
