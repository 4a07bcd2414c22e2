//! What a group does with a request before selection: translation between protocols and the
//! group's model map (issue 16).

use std::collections::BTreeMap;

/// A group's routing settings (`groups[].translate`, `groups[].model_map`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupRouting {
    /// A key of the group may call any client protocol; an account that does not speak it
    /// natively gets the request translated.
    pub translate: bool,
    pub model_map: ModelMap,
}

/// Client model names → upstream model names. A key may hold `*` wildcards (each matches any
/// run of characters, empty included); an exact key wins over any pattern, and among patterns
/// the one with the most literal characters (then the fewest `*`, then the first in name order)
/// wins. Unmatched names pass unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelMap {
    exact: BTreeMap<String, String>,
    /// Patterns, most specific first.
    patterns: Vec<(String, String)>,
}

/// At most this many entries in a group's `model_map`.
pub const MAX_MODEL_MAP: usize = 256;
/// At most this many models to fall back to, per model (`groups[].model_fallback`).
pub const MAX_FALLBACKS: usize = 8;
/// At most this many models with fallbacks, per group.
pub const MAX_FALLBACK_MODELS: usize = 256;
/// The longest model name a group's settings may hold.
pub const MAX_MODEL_NAME: usize = 256;

impl ModelMap {
    /// Fails naming the first bad entry (an empty or overlong key or value) or the size.
    pub fn new(entries: &BTreeMap<String, String>) -> Result<Self, String> {
        if entries.len() > MAX_MODEL_MAP {
            return Err(format!("at most {MAX_MODEL_MAP} entries"));
        }
        let mut map = ModelMap::default();
        for (from, to) in entries {
            if from.trim().is_empty() {
                return Err("a model name to map from is empty".to_owned());
            }
            if to.trim().is_empty() {
                return Err(format!("{from:?} maps to an empty model name"));
            }
            if from.len() > MAX_MODEL_NAME || to.len() > MAX_MODEL_NAME {
                return Err(format!(
                    "{from:?}: model names are at most {MAX_MODEL_NAME} bytes"
                ));
            }
            if from.contains('*') {
                map.patterns.push((from.clone(), to.clone()));
            } else {
                map.exact.insert(from.clone(), to.clone());
            }
        }
        map.patterns.sort_by(|(a, _), (b, _)| {
            let literal = |p: &str| p.chars().filter(|c| *c != '*').count();
            let stars = |p: &str| p.chars().filter(|c| *c == '*').count();
            literal(b)
                .cmp(&literal(a))
                .then(stars(a).cmp(&stars(b)))
                .then(a.cmp(b))
        });
        Ok(map)
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }

    /// The upstream name for `model`, or `None` when no entry matches.
    pub fn map(&self, model: &str) -> Option<&str> {
        if let Some(to) = self.exact.get(model) {
            return Some(to);
        }
        self.patterns
            .iter()
            .find(|(pattern, _)| matches(pattern, model))
            .map(|(_, to)| to.as_str())
    }

    /// Every entry as written, for display.
    pub fn entries(&self) -> BTreeMap<String, String> {
        self.exact
            .iter()
            .chain(self.patterns.iter().map(|(a, b)| (a, b)))
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect()
    }
}

/// Checks a group's `model_fallback`: non-empty names, none falling back to itself, 1 to
/// [`MAX_FALLBACKS`] models each. The error names the model it is about.
pub fn check_model_fallback(
    fallback: &BTreeMap<String, Vec<String>>,
) -> Result<(), (String, String)> {
    if fallback.len() > MAX_FALLBACK_MODELS {
        return Err((
            String::new(),
            format!("at most {MAX_FALLBACK_MODELS} models"),
        ));
    }
    for (model, next) in fallback {
        let fail = |message: String| Err((model.clone(), message));
        if model.trim().is_empty() || next.iter().any(|m| m.trim().is_empty()) {
            return fail("model names must not be empty".to_owned());
        }
        if model.len() > MAX_MODEL_NAME || next.iter().any(|m| m.len() > MAX_MODEL_NAME) {
            return fail(format!("model names are at most {MAX_MODEL_NAME} bytes"));
        }
        if next.is_empty() || next.len() > MAX_FALLBACKS {
            return fail(format!("list 1–{MAX_FALLBACKS} models to try instead"));
        }
        if next.contains(model) {
            return fail("a model cannot fall back to itself".to_owned());
        }
    }
    Ok(())
}

/// Whether `text` matches `pattern`, whose `*` match any run of characters.
fn matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match parts.split_first() {
        Some(split) => split,
        None => return text.is_empty(),
    };
    let Some(mut left) = text.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return left.is_empty();
    };
    for part in middle {
        match left.find(part) {
            Some(at) => left = &left[at + part.len()..],
            None => return false,
        }
    }
    left.len() >= last.len() && left.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> ModelMap {
        let entries = entries
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        ModelMap::new(&entries).unwrap()
    }

    #[test]
    fn wildcards_match_runs_of_characters() {
        assert!(matches("claude-*", "claude-sonnet-4"));
        assert!(matches("claude-*", "claude-"));
        assert!(!matches("claude-*", "gpt-5"));
        assert!(matches("*-mini", "gpt-5-mini"));
        assert!(matches("gpt-*-mini", "gpt-5-mini"));
        assert!(!matches("gpt-*-mini", "gpt-mini"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXbYc"));
        assert!(!matches("a*b*c", "aXcYb"));
    }

    #[test]
    fn the_most_specific_entry_wins_and_unmatched_names_pass() {
        let m = map(&[
            ("*", "fallback"),
            ("claude-*", "gpt-5.1-codex"),
            ("claude-haiku-*", "gpt-5.1-codex-mini"),
            ("claude-opus-4", "gpt-5.1-codex-max"),
        ]);
        assert_eq!(m.map("claude-opus-4"), Some("gpt-5.1-codex-max"));
        assert_eq!(m.map("claude-haiku-4-5"), Some("gpt-5.1-codex-mini"));
        assert_eq!(m.map("claude-sonnet-4-5"), Some("gpt-5.1-codex"));
        assert_eq!(m.map("other"), Some("fallback"));
        let no_catch_all = map(&[("claude-*", "gpt-5.1-codex")]);
        assert_eq!(no_catch_all.map("gpt-5"), None);
    }

    #[test]
    fn empty_names_are_refused() {
        let bad: BTreeMap<String, String> = [("a".to_owned(), " ".to_owned())].into();
        assert!(ModelMap::new(&bad).unwrap_err().contains("empty"));
    }
}
