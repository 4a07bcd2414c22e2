use super::*;
use crate::translate::golden;

#[test]
fn golden_cases() {
    let ran = golden::run_all::<MessagesViaResponses>("messages_via_responses");
    assert!(ran >= 25, "only {ran} golden cases");
}
