//! The admin API fuzzed from its own OpenAPI document by schemathesis (PyPI; installed by
//! .ci/run from tests/python/requirements.txt): no 5xx, every status, content type, header and
//! body as the document says, through coverage, fuzzing and stateful (create → use → delete)
//! phases.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

mod admin_common;
mod common;

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
    // The fuzzer's requests really reached the API (and the gateway is still alive).
    let (status, _) = admin(&gw, "GET", "/admin/api/keys", None).await;
    assert_eq!(status, 200);
}
