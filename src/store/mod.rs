//! The store: groups, API keys, accounts, prices and usage that outlive a restart.
//!
//! [`Store`] is the interface; [`sqlite::SqliteStore`] (a file in `storage.data_dir`) is the
//! embedded default, and [`postgres::PostgresStore`] (`storage.backend: postgres`, shared by
//! several instances) implements the same trait with its own migrations; the SQL both share is in
//! [`sql`]. The trait speaks in plain values (unix times, names, sealed bytes), so
//! nothing in it depends on one engine. Secrets never reach it in the clear: API keys arrive as
//! keyed hashes ([`keys`]) and account credentials sealed by [`crypto::Sealer`].

pub mod account_state;
pub mod accounts;
pub mod audit;
pub mod copy;
pub mod crypto;
pub mod data_dir;
pub mod keys;
pub mod postgres;
pub mod sql;
pub mod sqlite;
pub mod startup;
pub mod sync;
pub mod tokens;
pub mod usage_writer;

use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::domain::{AccountKind, Platform};

/// What went wrong in the store, worded for an operator.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("already exists: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a row came from. Config rows are rewritten from the file at every start, so the admin
/// API refuses to edit them (the edit would silently vanish at the next restart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Self {
        if text == "config" {
            Source::Config
        } else {
            Source::Admin
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub name: String,
    pub platform: Platform,
    pub source: Source,
    pub created_at: i64,
    /// `groups[].translate`, `groups[].model_map` and `groups[].model_fallback` as written
    /// (checked before they are stored; compiled when the snapshot takes them).
    pub settings: GroupSettingsRecord,
}

/// A group's routing settings as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettingsRecord {
    pub translate: bool,
    pub model_map: std::collections::BTreeMap<String, String>,
    pub model_fallback: std::collections::BTreeMap<String, Vec<String>>,
}

/// An API key as stored: its keyed hash, never the key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub name: String,
    /// Hex HMAC-SHA256 of the key under the data dir's `key_hash.key` secret.
    pub key_hash: String,
    /// A few leading and trailing characters, so a person can tell keys apart in a listing.
    pub prefix: String,
    pub suffix: String,
    pub group: String,
    pub enabled: bool,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// Requests in flight at once; 0 = unlimited.
    pub concurrency: u32,
    /// Requests per minute; 0 = unlimited.
    pub rpm_limit: u32,
    /// USD per UTC day / calendar month.
    pub daily_spend_limit: Option<f64>,
    pub monthly_spend_limit: Option<f64>,
    /// `None` = every model.
    pub allowed_models: Option<Vec<String>>,
    pub source: Source,
    pub created_at: i64,
}

/// An account as stored. `credentials` is sealed (see [`accounts`]); the store never sees it open.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRecord {
    pub name: String,
    pub platform: Platform,
    pub kind: AccountKind,
    pub base_url: String,
    pub chatgpt_account_id: Option<String>,
    /// Unix seconds the access token expires.
    pub expires_at: Option<i64>,
    pub priority: i32,
    pub concurrency: u32,
    pub groups: Vec<String>,
    pub enabled: bool,
    pub models: Option<Vec<String>>,
    pub model_map: std::collections::BTreeMap<String, String>,
    /// The upstream APIs the account speaks, as declared (`None`: the defaults).
    pub protocols: Option<Vec<crate::domain::Protocol>>,
    pub credentials: Vec<u8>,
    pub source: Source,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A model's price as stored (USD per million tokens): from the config's `prices:` or set
/// through the admin API.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceRecord {
    pub model: String,
    pub price: crate::pricing::PriceSpec,
    pub source: Source,
    /// Unix seconds.
    pub updated_at: i64,
}

/// One request's usage, as stored (and spooled, as JSON). `request_id` makes a second write of
/// the same row a no-op.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRow {
    pub request_id: String,
    /// Unix milliseconds the record was taken.
    pub at_ms: i64,
    pub key: String,
    pub account: Option<String>,
    pub endpoint: String,
    pub model: String,
    /// The model the client asked for, when it differs from `model` (a group's `model_map`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub success: bool,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_usd: f64,
    /// False when the model has no price: tokens are recorded, the cost is 0.
    pub priced: bool,
    pub duration_ms: i64,
    pub ttft_ms: Option<i64>,
    /// Accounts tried.
    pub attempts: i32,
    pub client_disconnected: bool,
    /// `http`, or `websocket` for one turn of a Responses WebSocket. Spool lines written before
    /// the field existed read as `http`.
    #[serde(default = "http_transport")]
    pub transport: String,
}

fn http_transport() -> String {
    "http".to_owned()
}

/// Which usage rows a query looks at. Times are unix milliseconds, `from` inclusive, `to`
/// exclusive.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub key: Option<String>,
    pub account: Option<String>,
    pub model: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub status: Option<StatusFilter>,
}

/// Rows by outcome: a status code the client got, or success / failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Code(u16),
    Success(bool),
}

impl std::str::FromStr for StatusFilter {
    type Err = String;

    /// `ok`, `failed`, or a status code such as `429`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ok" => Ok(StatusFilter::Success(true)),
            "failed" => Ok(StatusFilter::Success(false)),
            code => code
                .parse::<u16>()
                .ok()
                .filter(|c| (100..=599).contains(c))
                .map(StatusFilter::Code)
                .ok_or_else(|| "status: must be ok, failed or a status code (100–599)".to_owned()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageTotals {
    /// The day (`YYYY-MM-DD`, UTC) or the key name.
    pub bucket: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: f64,
}

/// How usage totals are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotalsBy {
    Day,
    Key,
}

/// One admin change as stored (the audit trail). `before`/`after` are JSON texts already
/// redacted ([`audit::redact`]): no secret reaches the store through them.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// Assigned by the store (0 in a row not yet stored); newer rows have larger ids.
    pub id: i64,
    /// Unix milliseconds of the change.
    pub at_ms: i64,
    /// Who: `admin-token`, `cli`, `dashboard (session …)`, `reload (SIGHUP)`, ...
    pub actor: String,
    /// The client's address, when the change came over HTTP.
    pub client: Option<String>,
    /// What, e.g. `key.create`.
    pub action: String,
    /// Which: a key, account or group name, or the configuration file.
    pub target: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Which audit rows a query looks at, newest first. Times are unix milliseconds, `since_ms`
/// inclusive, `until_ms` exclusive; `before_id` is the paging cursor (rows with a smaller id).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actions starting with this text (`key.` matches `key.create`, `key.delete`, ...).
    pub action_prefix: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub before_id: Option<i64>,
}

/// An account's name and its sealed sign-in tokens.
pub type SealedTokens = (String, Vec<u8>);

/// A `meta` row: its name and value.
pub type MetaRow = (String, Vec<u8>);

/// Run after a committed write of groups, keys, accounts or prices ([`Store::on_change`]).
pub type ChangeHook = Box<dyn Fn() + Send + Sync>;

/// The persistence interface. Every backend keeps its own migrations; callers see only
/// these operations. Writes of a row that already exists fail with [`StoreError::Conflict`],
/// except usage, whose inserts are idempotent by request id.
pub trait Store: Send + Sync {
    // === meta ===
    fn get_meta(&self, name: &str) -> BoxFuture<'_, StoreResult<Option<Vec<u8>>>>;
    fn set_meta(&self, name: &str, value: &[u8]) -> BoxFuture<'_, StoreResult<()>>;
    /// Writes `value` under `name` unless a value is there already, and returns the stored value:
    /// instances creating the same value at once all end up with the first one written.
    fn meta_or_insert(&self, name: &str, value: &[u8]) -> BoxFuture<'_, StoreResult<Vec<u8>>>;
    /// Every `meta` row (for `subrelay store copy`).
    fn list_meta(&self) -> BoxFuture<'_, StoreResult<Vec<MetaRow>>>;

    // === changes ===
    /// Whether other processes share this store (PostgreSQL): then their writes must be
    /// followed through [`Store::change_counter`].
    fn shared(&self) -> bool {
        false
    }
    /// Sets what runs after each committed write that moved [`Store::change_counter`] (once, at
    /// start: it publishes the change to the other instances). Nothing for an unshared store.
    fn on_change(&self, _hook: ChangeHook) {}
    /// A number that moves with every write of groups, keys, accounts and prices (by any instance);
    /// `None` when the store is not shared.
    fn change_counter(&self) -> BoxFuture<'_, StoreResult<Option<i64>>> {
        Box::pin(async { Ok(None) })
    }

    // === groups ===
    fn list_groups(&self) -> BoxFuture<'_, StoreResult<Vec<GroupRecord>>>;
    fn upsert_group(&self, group: &GroupRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn delete_group(&self, name: &str) -> BoxFuture<'_, StoreResult<()>>;

    // === API keys ===
    fn list_keys(&self) -> BoxFuture<'_, StoreResult<Vec<KeyRecord>>>;
    fn insert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// Replaces the row of `key.name` (every field but the hash and the creation time).
    fn update_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>>;
    /// Inserts or replaces by name, hash included (config keys at start-up).
    fn upsert_key(&self, key: &KeyRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn delete_key(&self, name: &str) -> BoxFuture<'_, StoreResult<()>>;

    // === accounts ===
    fn list_accounts(&self) -> BoxFuture<'_, StoreResult<Vec<AccountRecord>>>;
    fn insert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn upsert_account(&self, account: &AccountRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn delete_account(&self, name: &str) -> BoxFuture<'_, StoreResult<()>>;
    /// An account's runtime state (JSON, see [`account_state`]), replacing the previous one.
    fn save_account_state(&self, name: &str, state: &str) -> BoxFuture<'_, StoreResult<()>>;
    /// Every saved runtime state, by account name.
    fn account_states(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>>;
    /// An account's latest sign-in tokens, sealed, replacing the previous ones.
    fn save_tokens(&self, name: &str, sealed: &[u8]) -> BoxFuture<'_, StoreResult<()>>;
    /// Every account's saved tokens (sealed), by account name.
    fn saved_tokens(&self) -> BoxFuture<'_, StoreResult<Vec<SealedTokens>>>;
    /// The generation of an account's saved tokens: 0 when none are saved; every save moves it
    /// on. Read before a refresh, given back to [`Store::save_tokens_if`].
    fn token_generation(&self, _name: &str) -> BoxFuture<'_, StoreResult<i64>> {
        Box::pin(async { Ok(0) })
    }
    /// Saves tokens only while the stored generation is still `seen` (compare-and-swap), so
    /// tokens another instance saved meanwhile are never overwritten by older ones. Whether it
    /// saved. A store no other process writes (SQLite) saves unconditionally: the process's own
    /// refresh lock already orders its refreshes.
    fn save_tokens_if<'a>(
        &'a self,
        name: &'a str,
        sealed: &'a [u8],
        _seen: i64,
    ) -> BoxFuture<'a, StoreResult<bool>> {
        Box::pin(async move { self.save_tokens(name, sealed).await.map(|()| true) })
    }

    // === prices ===
    fn list_prices(&self) -> BoxFuture<'_, StoreResult<Vec<PriceRecord>>>;
    /// Inserts or replaces the price of `price.model`.
    fn upsert_price(&self, price: &PriceRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn delete_price(&self, model: &str) -> BoxFuture<'_, StoreResult<()>>;

    // === usage ===
    /// Inserts the rows in one transaction; rows whose request id is already stored are
    /// skipped. Returns how many were new.
    fn insert_usage<'a>(&'a self, rows: &'a [UsageRow]) -> BoxFuture<'a, StoreResult<u64>>;
    /// Newest first.
    fn list_usage(
        &self,
        filter: &UsageFilter,
        limit: u32,
        offset: u64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>>;
    fn count_usage(&self, filter: &UsageFilter) -> BoxFuture<'_, StoreResult<u64>>;
    fn usage_totals(
        &self,
        filter: &UsageFilter,
        by: TotalsBy,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageTotals>>>;
    /// Cost per key name since a time (unix ms), for the spending limits at start-up.
    fn spend_since(&self, from_ms: i64) -> BoxFuture<'_, StoreResult<Vec<(String, f64)>>>;

    // === audit trail ===
    /// Appends one row (its `id` is ignored; the store assigns it).
    fn append_audit<'a>(&'a self, row: &'a AuditRow) -> BoxFuture<'a, StoreResult<()>>;
    /// Newest first, at most `limit` rows.
    fn list_audit(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRow>>>;
    /// Deletes the rows older than `before_ms` (unix ms); returns how many.
    fn prune_audit(&self, before_ms: i64) -> BoxFuture<'_, StoreResult<u64>>;

    /// Waits for pending writes and closes the connections.
    fn close(&self) -> BoxFuture<'_, ()>;
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
