//! Issue 13, item 10: running out of file descriptors while connecting upstream is the gateway's
//! trouble, not the account's. The real binary runs under a low `ulimit -n`; idle client
//! connections use up its descriptors; a request then cannot open its upstream socket (EMFILE).
//! It must get a 503 in its protocol's shape, and the account must not be cooled: once
//! descriptors are free again, the same (only) account serves the next request.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]
#![cfg(target_os = "linux")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests: a failed step should fail the test at once"
)]

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The gateway's soft and hard file limit in this test.
const LIMIT: usize = 64;

/// Descriptors open below `LIMIT` (inherited ones above it take no slot of the table).
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
                .filter(|&fd| fd < LIMIT)
                .count()
        })
        .unwrap_or(0)
}

/// Waits until the process has `n` descriptors open (its accept loop took the connections).
fn wait_for_fds(pid: u32, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) != n {
        assert!(
            Instant::now() < deadline,
            "the gateway has {} descriptors open, not {n}",
            open_fds(pid)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the gateway however the test ends.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// Multi-threaded: the test blocks on plain sockets while the in-process mock must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emfile_on_connect_answers_503_and_leaves_the_account_alone() {
    let mock = MockUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("subrelay.yaml");
    // The connection cap (by default 40% of the file limit) is lifted: this test means to run the
    // table out of descriptors, which the cap exists to prevent.
    let yaml = format!(
        "server:\n  port: 0\n  max_connections: 1000\nlog:\n  format: json\n  level: info,usage=debug\nstorage:\n  data_dir: {}\n{}",
        dir.path().join("data").display(),
        config(&mock, &[apikey("a", "tok-a")], "")
    );
    std::fs::write(&config_path, yaml).unwrap();
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n {LIMIT} && exec \"$0\" serve --config \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_subrelay"))
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let (child, url, lines) = spawn_and_wait(command);
    let pid = child.id();
    let _child = Kill(child);
    let logs = || lines.lock().unwrap().join("\n");
    let addr = url.trim_start_matches("http://").to_owned();

    // Fill the descriptor table with idle client connections.
    let baseline = open_fds(pid);
    assert!(
        baseline + 4 < LIMIT,
        "the gateway already holds {baseline} of {LIMIT} descriptors"
    );
    let mut held: Vec<TcpStream> = (baseline..LIMIT)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    wait_for_fds(pid, LIMIT);

    // A request on one of them: its upstream socket cannot be opened.
    let body = serde_json::to_string(&body("gpt-5", false)).unwrap();
    let mut conn = held.pop().unwrap();
    write!(
        conn,
        "POST /v1/responses HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no answer ({e}): {}", logs()));
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 503"), "{answer}\n{}", logs());
    let v: Value = serde_json::from_str(json).expect("a JSON error body");
    assert_eq!(v["error"]["code"], "gateway_out_of_resources", "{v}");
    assert_eq!(v["error"]["type"], "service_unavailable", "{v}");
    assert_eq!(mock.total_calls(), 0, "nothing reached the upstream");

    // Descriptors free again: the same account answers, so it was not cooled down.
    drop(conn);
    drop(held);
    let response = client()
        .post(format!("{url}/v1/responses"))
        .bearer_auth(KEY)
        .json(&common::body("gpt-5", false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", logs());
    assert_eq!(mock.calls("tok-a"), 1);
}
