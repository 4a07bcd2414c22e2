//! The process environment behind a trait, so config loading can be tested with a map.

use std::collections::HashMap;

/// Where environment overrides and `env:` secret references are read from.
pub trait Environment: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// A fixed set of variables, for tests.
#[derive(Default)]
pub struct MapEnv(HashMap<String, String>);

impl<const N: usize> From<[(&str, &str); N]> for MapEnv {
    fn from(vars: [(&str, &str); N]) -> Self {
        Self(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }
}

impl Environment for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// The environment variable that overrides a dotted config key:
/// `gateway.stream_keepalive_interval` ← `GATEWAY_STREAM_KEEPALIVE_INTERVAL`.
pub fn env_name(path: &str) -> String {
    path.replace('.', "_").to_ascii_uppercase()
}
