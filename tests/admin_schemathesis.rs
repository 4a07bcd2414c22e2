//! The admin API fuzzed from its own OpenAPI document by schemathesis (PyPI; installed by
//! .ci/run from tests/python/requirements.txt): no 5xx, every status, content type, header and
//! body as the document says, through coverage, fuzzing and stateful (create → use → delete)
//! phases.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use admin_common::*;
use common::*;

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

#[tokio::test]
async fn schemathesis_finds_nothing_the_document_does_not_promise() {
    let program =
        std::env::var("SUBRELAY_TEST_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let installed = std::process::Command::new(&program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed && skip_or_fail("schemathesis (tests/python/requirements.txt)") {
        return;
    }
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&store_config(&mock, data.path(), ""));
    let reports = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&program)
        .arg("run")
        .arg(format!("{}/admin/api/openapi.json", gw.url))
        .args(["--header", &format!("Authorization: Bearer {ADMIN}")])
        .args(["--checks", CHECKS])
        .args([
            "--max-examples",
            "50",
            "--no-color",
            "--request-timeout",
            "10",
            "--report",
            "har,json",
            "--report-har-path",
            "requests.har.json",
            "--report-json-path",
            "run.json",
        ])
        .current_dir(reports.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");

    // schemathesis' own report: every operation of the document was tested, in every phase.
    let (status, document) = admin(&gw, "GET", "/admin/api/openapi.json", None).await;
    assert_eq!(status, 200);
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| item.get(**m).is_some())
                .count()
        })
        .sum();
    assert!(operations >= 15, "{operations} operations in the document");
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.path().join("run.json")).unwrap()).unwrap();
    assert_eq!(
        run["operations"]["tested"], operations,
        "{}",
        run["operations"]
    );
    for phase in ["coverage", "fuzzing", "stateful"] {
        assert_eq!(
            run["phases"][phase]["status"], "success",
            "{}",
            run["phases"]
        );
    }
    let generated = run["test_cases"]["generated"].as_u64().unwrap();
    assert!(generated >= 500, "only {generated} test cases");

    // The requests reached the API past its token check: most answers are the API's own (2xx
    // with a body, or a 4xx about the input), not 401s. A wrong or dropped token fails here.
    let har: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reports.path().join("requests.har.json")).unwrap())
            .unwrap();
    let statuses: Vec<u64> = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.len() as u64 >= generated,
        "{} requests",
        statuses.len()
    );
    let served = statuses.iter().filter(|s| (200..300).contains(*s)).count();
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        served >= 200 && unauthorized * 10 < statuses.len(),
        "{served} 2xx and {unauthorized} 401 answers of {}",
        statuses.len()
    );
    // And the gateway is still alive.
    let (status, _) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert_eq!(status, 200);
}
