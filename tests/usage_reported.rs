//! What a broken or hostile upstream reports as usage: `u64::MAX` tokens are clamped (and logged
//! with the request id) and the usage totals still answer; a `usage` object of the wrong types
//! is recorded as unparsed and logged once, not silently as 0 tokens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

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

#[tokio::test]
async fn a_garbage_usage_object_is_counted_as_unparsed_and_logged_once() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, &[apikey("up", "sk-up")], ""));
    let mut ids = Vec::new();
    for stream in [false, true] {
        let response = post(&gw, "/v1/responses", &body("gpt-5+garbage_usage", stream)).await;
        assert_eq!(response.status(), 200);
        ids.push(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
        response.bytes().await.unwrap();
    }
    // The control: a readable usage object is not flagged.
    let fine = post(&gw, "/v1/responses", &body("gpt-5", false)).await;
    let fine_id = fine.headers()["x-request-id"].to_str().unwrap().to_owned();
    fine.bytes().await.unwrap();

    let records = gw.wait_for_usage(3).await;
    for record in &records {
        let id = record["request_id"].as_str().unwrap();
        if id == fine_id {
            assert!(record["tokens"].get("unparsed").is_none(), "{record}");
            assert_eq!(record["tokens"]["input"], 11, "{record}");
        } else {
            assert_eq!(record["tokens"]["unparsed"], true, "{record}");
            assert_eq!(record["tokens"]["input"], 0, "{record}");
        }
    }
    for id in &ids {
        let warnings: Vec<String> = gw
            .logs()
            .into_iter()
            .filter(|l| l.contains(id.as_str()) && l.contains("could not be read"))
            .collect();
        assert_eq!(warnings.len(), 1, "one warning per request: {warnings:#?}");
        assert!(
            warnings[0].contains("\"level\":\"WARN\""),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[0].contains("\"account\":\"up\""),
            "{}",
            warnings[0]
        );
    }
    assert!(
        !gw.logs()
            .iter()
            .any(|l| l.contains(fine_id.as_str()) && l.contains("could not be read")),
        "the readable one is not warned about"
    );
}
