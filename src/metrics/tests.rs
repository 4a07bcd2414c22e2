#![allow(clippy::unwrap_used, reason = "tests")]

use std::time::Duration;

use super::Metrics;
use crate::protocol::{Protocol, TokenUsage};

fn exposition(metrics: &Metrics) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry).unwrap();
    text
}

#[test]
fn a_refused_request_is_counted_with_bounded_labels() {
    let metrics = Metrics::new();
    metrics.request(
        Some(Protocol::Responses),
        "responses",
        401,
        super::NO_GROUP,
        Duration::from_millis(3),
        None,
    );
    let text = exposition(&metrics);
    assert!(
        text.contains(
            r#"subrelay_requests_total{protocol="responses",route="responses",status="401",group="-"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"subrelay_request_duration_seconds_count{protocol="responses"} 1"#),
        "{text}"
    );
    // No first output: the time-to-first-token histogram stays empty.
    assert!(
        text.contains(r#"subrelay_time_to_first_token_seconds_count{protocol="responses"} 0"#),
        "{text}"
    );
}

#[test]
fn build_info_and_token_directions_are_exposed() {
    let metrics = Metrics::new();
    metrics.tokens(&TokenUsage {
        input: 10,
        cached_input: 4,
        output: 7,
        reasoning: 2,
        ..TokenUsage::default()
    });
    let text = exposition(&metrics);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.contains(&format!(r#"subrelay_build_info{{version="{version}"}} 1"#)),
        "{text}"
    );
    for (direction, n) in [
        ("input", 10),
        ("cached_input", 4),
        ("output", 7),
        ("reasoning", 2),
    ] {
        let line = format!(r#"subrelay_tokens_total{{direction="{direction}"}} {n}"#);
        assert!(text.contains(&line), "{line} missing in {text}");
    }
}

#[test]
fn usage_pending_never_goes_below_zero() {
    let metrics = Metrics::new();
    metrics.usage_recorded();
    metrics.usage_recorded();
    metrics.usage_stored(1);
    assert_eq!(metrics.usage_pending.get(), 1);
    // Rows replayed from an earlier run were never counted in.
    metrics.usage_stored(5);
    assert_eq!(metrics.usage_pending.get(), 0);
}

#[test]
fn the_same_name_is_one_shared_label_value() {
    let metrics = Metrics::new();
    let a = metrics.names.get("team-a");
    let b = metrics.names.get("team-a");
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}
