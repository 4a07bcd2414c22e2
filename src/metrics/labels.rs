//! The label sets of the series, and the interned names used as label values.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use prometheus_client::encoding::EncodeLabelSet;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabels {
    pub protocol: &'static str,
    pub route: &'static str,
    pub status: u16,
    pub group: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProtocolLabels {
    pub protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AttemptLabels {
    pub account: Arc<String>,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AccountLabels {
    pub account: Arc<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AccountStateLabels {
    pub account: Arc<String>,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub version: &'static str,
}

/// Group and account names as shared strings: a label set holds an `Arc`, so counting a
/// request clones a pointer instead of the name. The names are the configured groups and
/// accounts (a bounded set; an account removed by the admin API keeps its entry).
#[derive(Default)]
pub(super) struct Interned(RwLock<HashMap<String, Arc<String>>>);

impl Interned {
    pub fn get(&self, name: &str) -> Arc<String> {
        // Plain data: a panic elsewhere cannot leave the map half-updated in a way that matters.
        if let Some(found) = self.0.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Arc::clone(found);
        }
        let mut names = self.0.write().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            names
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(name.to_owned())),
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabels {
    pub kind: &'static str,
}
