//! The files the running gateway keeps in `storage.data_dir` are its owner's alone: the
//! database with its WAL and shared-memory files (0600), the usage spool directory (0700) and its
//! segment (0600).

#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::admin_common;
use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use admin_common::*;
use common::*;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_database_its_wal_and_shm_and_the_usage_spool_are_owner_only() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    // A batch interval longer than the test: the row stays in the spool segment.
    let yaml = store_config(&mock, data.path(), "")
        .replace("storage:\n", "storage:\n  usage_batch_interval_ms: 60000\n");
    let gw = Gateway::start(&yaml);
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );
    gw.wait_for_usage(1).await;
    let dir = data.path();
    let segment = dir.join("usage-spool").join("current.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !segment.exists() {
        assert!(std::time::Instant::now() < deadline, "no spool segment");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for name in ["subrelay.db", "subrelay.db-wal", "subrelay.db-shm"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    assert_eq!(mode(&dir.join("usage-spool")), 0o700, "usage-spool/");
    assert_eq!(mode(&segment), 0o600, "usage-spool/current.jsonl");
}
