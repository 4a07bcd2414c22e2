//! What a request cost: a price table per model (USD per million tokens), shipped defaults for
//! current OpenAI and Anthropic models, extended or overridden by `prices:` in the config.
//!
//! A model is priced by its exact name, else by the longest listed name it starts with followed
//! by `-` (so dated snapshots like `claude-sonnet-4-5-20250929` use `claude-sonnet-4-5`). A
//! model with no price costs 0 and its usage row says `priced: false`, so gaps are visible; a key
//! with a spending limit is refused such a model (src/limits.rs), or the limit would never apply.
//!
//! The running table is the shipped defaults plus the store's `prices` rows: the config's
//! `prices:` are written there at start (`store::sync`), next to the prices set through the admin
//! API, so every instance sharing a store prices alike.

use std::collections::BTreeMap;

use crate::protocol::TokenUsage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    /// Input served from the prompt cache (OpenAI cached tokens, Anthropic cache reads).
    pub cached_input: f64,
    pub output: f64,
    /// Anthropic prompt-cache writes; OpenAI has none.
    pub cache_creation: f64,
}

/// (model, input, cached input, output, cache creation), USD per million tokens.
///
/// Every model `GET /v1/models` advertises (src/http/models.rs) must be priced here, by name or
/// family prefix (a test checks it): an unpriced model costs 0 and is refused to keys with a
/// spending limit. The GPT-5.2/5.4/5.5 rows are OpenAI's published standard-tier API prices as
/// reproduced in third-party price tables (November 2026; not read from openai.com here): check
/// them against the provider's price page when they change, and override with `prices:`.
const DEFAULTS: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-5.5", 5.0, 0.5, 30.0, 0.0),
    ("gpt-5.4", 2.5, 0.25, 15.0, 0.0),
    ("gpt-5.4-mini", 0.75, 0.075, 4.5, 0.0),
    ("gpt-5.2", 1.75, 0.175, 14.0, 0.0),
    // `gpt-5.1-codex-max` is priced as its family, `gpt-5.1-codex` (OpenAI lists the same price).
    ("gpt-5", 1.25, 0.125, 10.0, 0.0),
    ("gpt-5-mini", 0.25, 0.025, 2.0, 0.0),
    ("gpt-5-nano", 0.05, 0.005, 0.4, 0.0),
    ("gpt-5-codex", 1.25, 0.125, 10.0, 0.0),
    ("gpt-5.1", 1.25, 0.125, 10.0, 0.0),
    ("gpt-5.1-codex", 1.25, 0.125, 10.0, 0.0),
    ("gpt-5.1-codex-mini", 0.25, 0.025, 2.0, 0.0),
    ("gpt-4.1", 2.0, 0.5, 8.0, 0.0),
    ("gpt-4.1-mini", 0.4, 0.1, 1.6, 0.0),
    ("gpt-4.1-nano", 0.1, 0.025, 0.4, 0.0),
    ("gpt-4o", 2.5, 1.25, 10.0, 0.0),
    ("gpt-4o-mini", 0.15, 0.075, 0.6, 0.0),
    ("o3", 2.0, 0.5, 8.0, 0.0),
    ("o4-mini", 1.1, 0.275, 4.4, 0.0),
    ("claude-opus-4-5", 5.0, 0.5, 25.0, 6.25),
    ("claude-opus-4-1", 15.0, 1.5, 75.0, 18.75),
    ("claude-opus-4", 15.0, 1.5, 75.0, 18.75),
    ("claude-sonnet-4-5", 3.0, 0.3, 15.0, 3.75),
    ("claude-sonnet-4", 3.0, 0.3, 15.0, 3.75),
    ("claude-haiku-4-5", 1.0, 0.1, 5.0, 1.25),
    ("claude-3-5-haiku", 0.8, 0.08, 4.0, 1.0),
];

/// A price as declared (`prices:` in the config, the admin API, a store row): USD per million
/// tokens; `cached_input` defaults to `input`, `cache_creation` to 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    #[schema(minimum = 0)]
    pub input: f64,
    /// Input served from the prompt cache; the input price when absent.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cached_input: Option<f64>,
    #[schema(minimum = 0)]
    pub output: f64,
    /// Anthropic prompt-cache writes; 0 when absent.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cache_creation: Option<f64>,
}

impl PriceSpec {
    /// The first field that is not a price (finite, 0 or more), with its value.
    pub fn invalid_field(&self) -> Option<(&'static str, f64)> {
        [
            ("input", Some(self.input)),
            ("cached_input", self.cached_input),
            ("output", Some(self.output)),
            ("cache_creation", self.cache_creation),
        ]
        .into_iter()
        .find_map(|(field, value)| {
            value
                .filter(|v| !v.is_finite() || *v < 0.0)
                .map(|v| (field, v))
        })
    }

    /// The price with the defaults of the optional fields filled in.
    pub fn price(&self) -> Price {
        Price {
            input: self.input,
            cached_input: self.cached_input.unwrap_or(self.input),
            output: self.output,
            cache_creation: self.cache_creation.unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

/// The cost of one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub usd: f64,
    /// False: the model has no price (the cost is 0).
    pub priced: bool,
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::with_overrides(BTreeMap::new())
    }
}

impl PriceTable {
    /// The shipped defaults, with `overrides` added or replacing entries.
    pub fn with_overrides(overrides: BTreeMap<String, Price>) -> Self {
        let mut prices: BTreeMap<String, Price> = Self::defaults()
            .map(|(model, price)| (model.to_owned(), price))
            .collect();
        prices.extend(overrides);
        Self { prices }
    }

    /// The shipped defaults with the declared prices (config and admin API) added or replacing.
    pub fn with_specs<'a>(specs: impl IntoIterator<Item = (&'a str, &'a PriceSpec)>) -> Self {
        Self::with_overrides(
            specs
                .into_iter()
                .map(|(model, spec)| (model.to_owned(), spec.price()))
                .collect(),
        )
    }

    /// The shipped prices, by model name.
    pub fn defaults() -> impl Iterator<Item = (&'static str, Price)> {
        DEFAULTS
            .iter()
            .map(|&(model, input, cached_input, output, cache_creation)| {
                (
                    model,
                    Price {
                        input,
                        cached_input,
                        output,
                        cache_creation,
                    },
                )
            })
    }

    pub fn price(&self, model: &str) -> Option<&Price> {
        if let Some(price) = self.prices.get(model) {
            return Some(price);
        }
        self.prices
            .iter()
            .filter(|(name, _)| {
                model
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
            .max_by_key(|(name, _)| name.len())
            .map(|(_, price)| price)
    }

    /// `input_includes_cached`: OpenAI counts cached tokens inside `input`; Anthropic reports
    /// uncached input, cache reads and cache writes separately.
    pub fn cost(&self, model: &str, tokens: &TokenUsage, input_includes_cached: bool) -> Cost {
        let Some(price) = self.price(model) else {
            return Cost {
                usd: 0.0,
                priced: false,
            };
        };
        let uncached = if input_includes_cached {
            tokens.input.saturating_sub(tokens.cached_input)
        } else {
            tokens.input
        };
        let per_token = |n: u64, per_million: f64| n as f64 * per_million / 1_000_000.0;
        Cost {
            usd: per_token(uncached, price.input)
                + per_token(tokens.cached_input, price.cached_input)
                + per_token(tokens.cache_creation, price.cache_creation)
                + per_token(tokens.output, price.output),
            priced: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(input: u64, cached: u64, creation: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            cached_input: cached,
            cache_creation: creation,
            output,
            reasoning: 0,
            unparsed: false,
        }
    }

    #[test]
    fn openai_cached_tokens_are_inside_input() {
        let table = PriceTable::default();
        let cost = table.cost("gpt-5", &tokens(1_000_000, 400_000, 0, 100_000), true);
        // 600k × 1.25 + 400k × 0.125 + 100k × 10, per million
        assert!((cost.usd - (0.75 + 0.05 + 1.0)).abs() < 1e-9, "{cost:?}");
        assert!(cost.priced);
    }

    #[test]
    fn anthropic_snapshots_use_their_family_and_pay_cache_writes() {
        let table = PriceTable::default();
        let cost = table.cost(
            "claude-sonnet-4-5-20250929",
            &tokens(1_000_000, 1_000_000, 1_000_000, 1_000_000),
            false,
        );
        assert!(
            (cost.usd - (3.0 + 0.3 + 3.75 + 15.0)).abs() < 1e-9,
            "{cost:?}"
        );
    }

    #[test]
    fn the_longest_prefix_wins_and_unknown_models_cost_nothing() {
        let table = PriceTable::default();
        assert_eq!(
            table.price("gpt-5-mini-2025-08-07"),
            table.price("gpt-5-mini")
        );
        assert_eq!(
            table.cost("my-local-model", &tokens(10, 0, 0, 10), true),
            Cost {
                usd: 0.0,
                priced: false
            }
        );
        assert!(table.price("gpt-5x").is_none());
    }

    #[test]
    fn config_prices_override_and_extend_the_defaults() {
        let mut extra = BTreeMap::new();
        let price = Price {
            input: 1.0,
            cached_input: 0.0,
            output: 2.0,
            cache_creation: 0.0,
        };
        extra.insert("gpt-5".to_owned(), price);
        extra.insert("local".to_owned(), price);
        let table = PriceTable::with_overrides(extra);
        assert_eq!(table.price("gpt-5"), Some(&price));
        assert_eq!(table.price("local"), Some(&price));
    }
}
