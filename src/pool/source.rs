//! Where the pool's accounts come from.

use std::future::Future;
use std::pin::Pin;

use crate::domain::AccountSpec;

/// A source of account declarations: the store (`store::accounts::StoreAccounts`, which holds the
/// config file's accounts and those added through the admin API), so the pool does not care
/// where accounts are kept.
pub trait AccountSource: Send + Sync {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<AccountSpec>, String>> + Send + '_>>;
}
