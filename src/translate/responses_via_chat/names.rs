//! Namespaced tools (Codex's MCP and collaboration tools) have no Chat form: each is sent as a
//! function with a flat name, and a call of that name comes back as a `function_call` naming
//! the namespace again.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// The Chat name of tool `name` in `namespace`. Codex's MCP namespaces end in `__`
/// (`mcp__server__`), so their tools keep the flat names Codex once used (`mcp__server__tool`);
/// other namespaces get `__` between the two.
pub fn flat_name(namespace: &str, name: &str) -> String {
    if namespace.ends_with('_') {
        format!("{namespace}{name}")
    } else {
        format!("{namespace}__{name}")
    }
}

/// Flat Chat names of the request's namespaced tools → (namespace, name).
#[derive(Debug, Default, Clone)]
pub struct CallNames {
    namespaced: HashMap<String, (String, String)>,
}

impl CallNames {
    /// Reads the namespaced tools of a client request; any other part is skipped unbuilt. A
    /// body that cannot be read has none (its request was refused before any answer).
    pub fn of_request(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            tools: Option<Vec<Tool>>,
        }
        #[derive(Deserialize)]
        struct Tool {
            #[serde(default, rename = "type")]
            kind: Option<String>,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            tools: Option<Vec<Value>>,
        }
        let mut names = Self::default();
        let Ok(probe) = serde_json::from_slice::<Probe>(body) else {
            return names;
        };
        for tool in probe.tools.into_iter().flatten() {
            let (Some("namespace"), Some(namespace)) = (tool.kind.as_deref(), tool.name) else {
                continue;
            };
            for nested in tool.tools.iter().flatten() {
                if let Some(name) = nested.get("name").and_then(Value::as_str) {
                    names.namespaced.insert(
                        flat_name(&namespace, name),
                        (namespace.clone(), name.to_owned()),
                    );
                }
            }
        }
        names
    }

    /// The client's (namespace, name) of a Chat function name: `None` for a plain tool.
    pub fn resolve(&self, flat: &str) -> Option<(&str, &str)> {
        self.namespaced
            .get(flat)
            .map(|(namespace, name)| (namespace.as_str(), name.as_str()))
    }
}
