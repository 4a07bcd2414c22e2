//! Secrets in configuration: written inline or as `env:NAME` / `file:PATH` references.
//!
//! A [`SecretRef`] is what the file said; resolving it through an [`Environment`] gives a
//! [`Secret`], the only type that holds the value. Neither prints its value: `Debug`, `Display`
//! and `Serialize` show a redaction (or the reference, which names no secret).

#![allow(
    clippy::disallowed_methods,
    reason = "`file:` secrets are read while the configuration loads, before any request"
)]

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use super::env::Environment;
use crate::domain::secret::REDACTED;
pub use crate::domain::Secret;

/// A secret value as written in the config file, not yet resolved.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(String);

impl SecretRef {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// Reads the value the reference points to. The error names what was missing, never a value.
    pub fn resolve(&self, env: &dyn Environment) -> Result<Secret, String> {
        let value = if let Some(name) = self.0.strip_prefix("env:") {
            env.var(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?
        } else if let Some(path) = self.0.strip_prefix("file:") {
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {path}: {e}"))?
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        } else {
            self.0.clone()
        };
        if value.is_empty() {
            return Err("is empty".to_owned());
        }
        Ok(Secret::new(value))
    }

    /// What may be shown of this reference: the reference itself, or a redaction for inline values.
    fn shown(&self) -> &str {
        if self.0.starts_with("env:") || self.0.starts_with("file:") {
            &self.0
        } else {
            REDACTED
        }
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.shown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env::MapEnv;

    #[test]
    fn inline_env_and_file_references_resolve() {
        let env = MapEnv::from([("UPSTREAM_KEY", "sk-from-env")]);
        assert_eq!(
            SecretRef::new("inline").resolve(&env).unwrap().expose(),
            "inline"
        );
        assert_eq!(
            SecretRef::new("env:UPSTREAM_KEY")
                .resolve(&env)
                .unwrap()
                .expose(),
            "sk-from-env"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "from-file\n").unwrap();
        let reference = SecretRef::new(format!("file:{}", path.display()));
        assert_eq!(reference.resolve(&env).unwrap().expose(), "from-file");
        let err = SecretRef::new("env:MISSING").resolve(&env).unwrap_err();
        assert_eq!(err, "environment variable MISSING is not set");
    }

    #[test]
    fn nothing_prints_the_value() {
        let secret = Secret::new("sk-very-secret");
        assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
        let inline = SecretRef::new("sk-very-secret");
        assert_eq!(format!("{inline:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&inline).unwrap(), "\"<redacted>\"");
        let reference = SecretRef::new("env:KEY");
        assert_eq!(serde_json::to_string(&reference).unwrap(), "\"env:KEY\"");
    }
}
