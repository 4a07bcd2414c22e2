//! Where the pool's accounts come from.

use std::future::Future;
use std::pin::Pin;

use crate::domain::AccountSpec;

/// A source of account declarations. The config file implements it now; the store of a later
/// issue implements it too, so the pool does not care where accounts are kept.
pub trait AccountSource: Send + Sync {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<AccountSpec>, String>> + Send + '_>>;
}

/// Accounts declared under `accounts:` in the config file.
pub struct ConfigAccounts(pub Vec<AccountSpec>);

impl AccountSource for ConfigAccounts {
    fn load(&self) -> Pin<Box<dyn Future<Output = Result<Vec<AccountSpec>, String>> + Send + '_>> {
        let accounts = self.0.clone();
        Box::pin(async move { Ok(accounts) })
    }
}
