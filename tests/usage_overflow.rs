//! A hostile upstream that reports `u64::MAX` tokens: the record is clamped (and logged with its
//! request id), and the usage totals still answer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

mod admin_common;
mod common;

use admin_common::*;
use common::*;

const HUGE: &str = "gpt-5+tokens=18446744073709551615";
const MAX_PER_REQUEST: i64 = 1_000_000_000;

#[tokio::test]
async fn huge_token_counts_are_clamped_and_the_totals_still_answer() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let mut ids = Vec::new();
    for stream in [false, true, false] {
        let response = post(&gw, "/v1/responses", &body(HUGE, stream)).await;
        assert_eq!(response.status(), 200);
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        response.bytes().await.unwrap();
    }
    // A normal request beside them: its counts are kept as reported.
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );

    let rows = wait_for_stored_usage(&gw, 4).await;
    for row in &rows {
        let id = row["request_id"].as_str().unwrap();
        let want = if ids.iter().any(|i| i == id) {
            MAX_PER_REQUEST
        } else {
            11
        };
        assert_eq!(row["input_tokens"], want, "{row}");
    }
    for path in ["/admin/api/usage/totals", "/admin/api/usage/totals?by=key"] {
        let (status, totals) = admin(&gw, "GET", path, None).await;
        assert_eq!(status, 200, "{path}: {totals}");
        assert_eq!(
            totals["totals"][0]["input_tokens"],
            3 * MAX_PER_REQUEST + 11,
            "{totals}"
        );
    }
    // One warning per clamped record, naming its request.
    for id in &ids {
        let line = gw.wait_for_log(id).await;
        let clamped: Vec<String> = gw
            .logs()
            .into_iter()
            .filter(|l| l.contains(id.as_str()) && l.contains("tokens of one kind"))
            .collect();
        assert_eq!(clamped.len(), 1, "{line}");
        assert!(clamped[0].contains("WARN"), "{}", clamped[0]);
    }
}
