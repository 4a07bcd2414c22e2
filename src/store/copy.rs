//! `subrelay store copy`: moves a single-instance SQLite store into a shared PostgreSQL one.
//!
//! Copies groups, prices, API keys (their hashes: the key-hashing secret goes along, so every key keeps
//! working), accounts (credentials stay sealed: both stores use the same encryption key, which
//! is checked against each), sign-in tokens, account state, `meta`, the data directory's
//! secrets (sealed into the store) and usage. Rows the destination already holds (by name, or
//! by request id for usage) are left as they are, so a second run adds nothing.

use super::crypto::Sealer;
use super::startup::{KEY_HASH_SECRET, SESSION_SECRET};
use super::{Store, UsageFilter};

/// Usage rows read and written per round.
const USAGE_PAGE: u32 = 4096;

/// What a copy added (rows already in the destination are not counted).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    pub groups: u64,
    pub prices: u64,
    pub keys: u64,
    pub accounts: u64,
    pub tokens: u64,
    pub account_states: u64,
    pub meta: u64,
    pub usage: u64,
}

impl std::fmt::Display for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} group(s), {} API key(s), {} account(s), {} price(s), {} saved sign-in token set(s), {} account state(s), {} meta value(s), {} usage row(s)",
            self.groups, self.keys, self.accounts, self.prices, self.tokens, self.account_states, self.meta, self.usage
        )
    }
}

/// The secrets a single instance keeps in its data directory: `(key hash, session)`.
pub struct DirSecrets {
    pub key_hash: [u8; 32],
    pub session: [u8; 32],
}

/// Copies `from` into `to`. `sealer` must open both stores (checked first: nothing is written
/// with a wrong key).
pub async fn copy(
    from: &dyn Store,
    to: &dyn Store,
    sealer: &Sealer,
    secrets: &DirSecrets,
) -> Result<Copied, String> {
    let read = |e: super::StoreError| format!("cannot read the source store: {e}");
    let write = |e: super::StoreError| format!("cannot write the destination store: {e}");
    if let Some(check) = from.get_meta(Sealer::CHECK_NAME).await.map_err(read)? {
        sealer
            .check(&check)
            .map_err(|e| format!("the source store: {e}"))?;
    }
    sealer
        .verify(to)
        .await
        .map_err(|e| format!("the destination store: {e}"))?;
    let mut copied = Copied::default();

    for (name, value) in [
        (KEY_HASH_SECRET, &secrets.key_hash),
        (SESSION_SECRET, &secrets.session),
    ] {
        let sealed = sealer.seal(name, value)?;
        let stored = to.meta_or_insert(name, &sealed).await.map_err(write)?;
        if sealer.open(name, &stored)?.as_slice() != value.as_slice() {
            return Err(format!(
                "the destination store already has another {name} (an instance started on it before the copy): the copied API keys would not work there; copy into a fresh database"
            ));
        }
        if stored == sealed {
            copied.meta += 1;
        }
    }
    for (name, value) in from.list_meta().await.map_err(read)? {
        if name == Sealer::CHECK_NAME {
            continue;
        }
        if to.get_meta(&name).await.map_err(write)?.is_none() {
            to.meta_or_insert(&name, &value).await.map_err(write)?;
            copied.meta += 1;
        }
    }

    let have: Vec<String> = names(to.list_groups().await.map_err(write)?, |g| g.name);
    for group in from.list_groups().await.map_err(read)? {
        if !have.contains(&group.name) {
            to.upsert_group(&group).await.map_err(write)?;
            copied.groups += 1;
        }
    }
    let have = names(to.list_prices().await.map_err(write)?, |p| p.model);
    for price in from.list_prices().await.map_err(read)? {
        if !have.contains(&price.model) {
            to.upsert_price(&price).await.map_err(write)?;
            copied.prices += 1;
        }
    }
    let have = names(to.list_keys().await.map_err(write)?, |k| k.name);
    for key in from.list_keys().await.map_err(read)? {
        if !have.contains(&key.name) {
            to.insert_key(&key).await.map_err(write)?;
            copied.keys += 1;
        }
    }
    let have = names(to.list_accounts().await.map_err(write)?, |a| a.name);
    for account in from.list_accounts().await.map_err(read)? {
        if !have.contains(&account.name) {
            to.insert_account(&account).await.map_err(write)?;
            copied.accounts += 1;
        }
    }
    let have = names(to.saved_tokens().await.map_err(write)?, |t| t.0);
    for (name, sealed) in from.saved_tokens().await.map_err(read)? {
        if !have.contains(&name) {
            to.save_tokens(&name, &sealed).await.map_err(write)?;
            copied.tokens += 1;
        }
    }
    let have = names(to.account_states().await.map_err(write)?, |s| s.0);
    for (name, state) in from.account_states().await.map_err(read)? {
        if !have.contains(&name) {
            to.save_account_state(&name, &state).await.map_err(write)?;
            copied.account_states += 1;
        }
    }

    // Oldest first, one page at a time, each page one idempotent batch.
    let all = UsageFilter::default();
    let total = from.count_usage(&all).await.map_err(read)?;
    let mut offset = 0;
    while offset < total {
        // `list_usage` is newest first: read the pages from the end.
        let skip = total.saturating_sub(offset + u64::from(USAGE_PAGE));
        let take = u32::try_from((total - offset).min(u64::from(USAGE_PAGE))).unwrap_or(USAGE_PAGE);
        let page = from.list_usage(&all, take, skip).await.map_err(read)?;
        copied.usage += to.insert_usage(&page).await.map_err(write)?;
        offset += u64::from(take);
    }
    Ok(copied)
}

fn names<T>(rows: Vec<T>, name: impl Fn(T) -> String) -> Vec<String> {
    rows.into_iter().map(name).collect()
}
