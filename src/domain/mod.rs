//! The shared vocabulary: what an account, a client key, a platform and a protocol are, and the
//! rule for names. A leaf: nothing here imports the rest of the crate, so every other module may
//! use it without tying itself to another (`tests/module_dag.rs` keeps the modules a DAG).

mod account;
mod group;
mod key;
mod name;
mod protocol;
pub(crate) mod secret;
mod validate;

pub use account::{AccountCredential, AccountKind, AccountSpec, Platform, UnknownName};
pub use group::{check_model_fallback, GroupRouting, ModelMap};
pub use key::{KeyLimits, KeySpec};
pub use name::{valid_name, NAME_RULE};
pub use protocol::{api_names, Protocol};
pub use secret::Secret;
pub use validate::AccountSpecError;
