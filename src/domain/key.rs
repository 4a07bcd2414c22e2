//! A client API key as declared (in the config file; synced into the store at start).

use super::Secret;

#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec {
    pub key: Secret,
    pub name: String,
    pub group: String,
    pub enabled: bool,
    /// Requests in flight at once; 0 = unlimited.
    pub concurrency: u32,
    pub limits: KeyLimits,
}

/// What a key may do, checked before a request reaches an account (`crate::limits`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLimits {
    /// Unix seconds; the key is refused from then on.
    pub expires_at: Option<i64>,
    /// Requests per minute; 0 = unlimited.
    pub rpm_limit: u32,
    /// USD per UTC day / calendar month.
    pub daily_spend_limit: Option<f64>,
    pub monthly_spend_limit: Option<f64>,
    /// `None` = every model.
    pub allowed_models: Option<Vec<String>>,
}
