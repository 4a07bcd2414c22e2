//! `server.workers`: several single-threaded event loops share the port (SO_REUSEPORT); every
//! one serves requests, and a graceful stop drains the streams open on all of them.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::time::Duration;

use common::*;
use subrelay_mock::{Behavior, MockUpstream};

/// Names of the gateway's threads, from /proc.
fn thread_names(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// How many connections each worker accepted, from its debug log line.
fn accepted_per_worker(gw: &Gateway) -> std::collections::BTreeMap<String, usize> {
    let mut per_worker = std::collections::BTreeMap::new();
    for line in gw.logs() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "connection accepted" {
            *per_worker
                .entry(v["worker"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    per_worker
}

#[tokio::test]
async fn three_workers_share_the_port_all_serve_and_drain_on_sigterm() {
    let mock = MockUpstream::start().await;
    let streams = 120;
    // Long enough (40 events, 250 ms apart: 10 s) that every stream is still open at the
    // SIGTERM even on a slow machine; the test checks that none had finished.
    mock.script(
        "tok-a",
        (0..streams)
            .map(|_| Behavior {
                events: Some(40),
                event_interval: Duration::from_millis(250),
                ..Default::default()
            })
            .collect(),
    );
    let mut gw = Gateway::start_with_env(
        &config(&mock, &[apikey("a", "tok-a")], ""),
        &[
            ("SERVER_WORKERS", "3"),
            (
                "LOG_LEVEL",
                "info,usage=debug,subrelay::server::connections=debug",
            ),
        ],
    );
    gw.wait_for_log("(3 worker threads)").await;
    // A thread names itself once it runs, which may be just after the banner.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let names = thread_names(gw.pid());
        let missing: Vec<_> = ["subrelay-w1", "subrelay-w2"]
            .into_iter()
            .filter(|w| !names.iter().any(|n| n == w))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} not among {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Each stream on a connection of its own, so the kernel spreads them over the workers.
    let mut opening = Vec::new();
    for _ in 0..streams {
        let url = gw.responses_url();
        opening.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut response = client
                .post(url)
                .bearer_auth(KEY)
                .json(&body("gpt-5", true))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let first = response.chunk().await.unwrap().unwrap();
            (response, first)
        }));
    }
    let mut open = Vec::new();
    for task in opening {
        open.push(task.await.unwrap());
    }
    // All open at once: none has finished yet.
    assert_eq!(mock.completed(), 0, "a stream finished before the SIGTERM");
    assert!(gw.usage_records().is_empty());
    let per_worker = accepted_per_worker(&gw);
    assert_eq!(
        per_worker.values().sum::<usize>(),
        streams,
        "{per_worker:?}"
    );
    for worker in ["main", "subrelay-w1", "subrelay-w2"] {
        assert!(
            per_worker.get(worker).is_some_and(|n| *n > 0),
            "worker {worker} served none of {streams} connections: {per_worker:?}"
        );
    }
    gw.sigterm();
    for (response, first) in open {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&first),
            response.text().await.unwrap()
        );
        assert_eq!(
            event_types(&text).last().map(String::as_str),
            Some("response.completed"),
            "every open stream ends normally: {text}"
        );
    }
    assert!(gw.wait_exit().success());
    assert_eq!(gw.usage_records().len(), streams);
    assert_eq!(mock.completed(), streams);
    // After the stop nothing listens any more, on any worker's socket.
    assert!(reqwest::get(format!("{}/healthz", gw.url)).await.is_err());
}

#[tokio::test]
async fn workers_zero_means_one_per_core_and_out_of_range_is_refused() {
    let mock = MockUpstream::start().await;
    let gw = Gateway::start_with_env(
        &config(&mock, &[apikey("a", "tok-a")], ""),
        &[("SERVER_WORKERS", "0")],
    );
    let cores = std::thread::available_parallelism().unwrap().get();
    let plural = if cores == 1 { "" } else { "s" };
    gw.wait_for_log(&format!("({cores} worker thread{plural})"))
        .await;
    assert_eq!(
        post(&gw, "/v1/responses", &body("gpt-5", false))
            .await
            .status(),
        200
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_subrelay"))
        .arg("check-config")
        .env("SERVER_WORKERS", "257")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("server.workers"), "{stderr}");
    assert!(stderr.contains("0–256"), "{stderr}");
}
