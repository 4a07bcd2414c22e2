//! Usage that is never lost: load through the real binary, SIGKILL while requests are in flight,
//! restart, and the stored usage rows are exactly the requests the fake upstream completed — no
//! row lost, none twice.

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

use std::collections::HashSet;
use std::time::{Duration, Instant};

use admin_common::*;
use common::*;

const FAST: usize = 60;
const SLOW: usize = 8;

#[tokio::test]
async fn a_killed_gateway_loses_no_usage_row_and_writes_none_twice() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    // Short batches, so at the kill some rows are committed, some sealed and some only spooled.
    let yaml = store_config(&mock, data.path(), "")
        .replace("storage:\n", "storage:\n  usage_batch_interval_ms: 20\n");
    let gw = Gateway::start(&yaml);

    // Slow requests that are still waiting upstream when the gateway dies.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let url = gw.responses_url();
        slow.push(tokio::spawn(async move {
            client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5+delay_ms=60000", true))
                .send()
                .await
        }));
    }
    // Fast ones, concurrently, streamed and not.
    let mut fast = Vec::new();
    for i in 0..FAST {
        let url = gw.responses_url();
        fast.push(tokio::spawn(async move {
            let response = client()
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5", i % 2 == 0))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.bytes().await.unwrap();
        }));
    }
    for task in fast {
        task.await.unwrap();
    }
    // Every fast request was recorded and every slow one reached the upstream: the load is
    // mid-flight. The `usage` line is logged when a row is queued; the row reaches the spool
    // only when that turn of the gateway's event loop ends (src/store/usage_writer.rs), and a
    // kill in between loses it by design. The promise is for spooled rows: wait until every row
    // is spooled or stored (the spool read first: a segment stored meanwhile is in the store
    // after).
    let logged = gw.wait_for_usage(FAST).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut durable = spooled_request_ids(data.path());
        let (status, page) = admin(&gw, "GET", "/admin/api/usage?limit=1000", None).await;
        assert_eq!(status, 200, "{page}");
        durable.extend(
            page["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["request_id"].as_str().unwrap().to_owned()),
        );
        if logged
            .iter()
            .all(|r| durable.contains(r["request_id"].as_str().unwrap()))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "usage rows never reached the spool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock.total_calls() < FAST + SLOW {
        assert!(
            Instant::now() < deadline,
            "slow requests never reached the mock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(gw); // SIGKILL
    for task in slow {
        let _ = task.await;
    }
    let completed = mock.completed();
    assert_eq!(completed, FAST, "the slow answers never completed");

    let mut gw = Gateway::start(&yaml);
    let rows = wait_for_stored_usage(&gw, completed as u64).await;
    let ids: HashSet<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), completed, "no request id twice");
    assert!(rows
        .iter()
        .all(|r| r["status"] == 200 && r["key"] == "tester"));

    // A second start replays nothing again.
    gw.sigterm();
    assert!(gw.wait_exit().success());
    let gw = Gateway::start(&yaml);
    wait_for_stored_usage(&gw, completed as u64).await;
    let leftovers = std::fs::read_dir(data.path().join("usage-spool"))
        .unwrap()
        .count();
    assert_eq!(
        leftovers, 0,
        "the spool is empty after a replay and a clean stop"
    );
}

#[tokio::test]
async fn a_graceful_stop_flushes_rows_still_waiting_for_their_batch() {
    let mock = MockUpstream::start().await;
    let data = tempfile::tempdir().unwrap();
    // A batch interval far longer than the test: only the shutdown flush can write the rows.
    let yaml = store_config(&mock, data.path(), "")
        .replace("storage:\n", "storage:\n  usage_batch_interval_ms: 60000\n");
    let mut gw = Gateway::start(&yaml);
    for _ in 0..5 {
        assert_eq!(
            post(&gw, "/v1/responses", &body("gpt-5", false))
                .await
                .status(),
            200
        );
    }
    gw.wait_for_usage(5).await;
    let (_, page) = admin(&gw, "GET", "/admin/api/usage", None).await;
    assert_eq!(page["total"], 0, "still in the spool");
    gw.sigterm();
    assert!(gw.wait_exit().success());
    let spooled = std::fs::read_dir(data.path().join("usage-spool"))
        .unwrap()
        .count();
    assert_eq!(spooled, 0, "the shutdown wrote and removed the spool");

    let gw = Gateway::start(&yaml);
    wait_for_stored_usage(&gw, 5).await;
    assert!(
        !gw.logs()
            .iter()
            .any(|l| l.contains("recovered from the spool")),
        "nothing was left to replay"
    );
}
