//! Tools whose calls return in another form than they went: namespaced tools (Codex's MCP and
//! collaboration tools) are sent as functions with flat names, and a call of one comes back as a
//! `function_call` naming the namespace again; freeform (`custom`) tools are sent as functions
//! with one `input` argument, and a call comes back as a `custom_tool_call` with that input.

use std::collections::{HashMap, HashSet};

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

/// What a Chat function name stands for in the client's request.
#[derive(Debug, Default, Clone)]
pub struct CallNames {
    /// Flat names of namespaced tools → (namespace, name).
    namespaced: HashMap<String, (String, String)>,
    /// Names of freeform (`custom`) tools: their calls return as `custom_tool_call` items.
    custom: HashSet<String>,
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
            if let (Some("custom"), Some(name)) = (tool.kind.as_deref(), &tool.name) {
                names.custom.insert(name.clone());
                continue;
            }
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

    /// Whether the Chat function `name` is a freeform tool of the client's.
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.contains(name)
    }

    /// The client's (namespace, name) of a Chat function name: `None` for a plain tool.
    pub fn resolve(&self, flat: &str) -> Option<(&str, &str)> {
        self.namespaced
            .get(flat)
            .map(|(namespace, name)| (namespace.as_str(), name.as_str()))
    }
}
