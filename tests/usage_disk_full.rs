//! Usage rows when the disk is full, on a real small file system: `storage.data_dir` (the
//! database and the usage spool) is a tmpfs of a few MiB mounted for the test, filled to the last
//! byte with a filler file, then freed. Mounting needs root (CAP_SYS_ADMIN); where it is not
//! allowed the tests skip visibly (`skip_or_fail`: a failure in CI).

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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use admin_common::*;
use common::*;
use serde_json::{json, Value};

const CLAUDE_KEY: &str = "sk-claude-client-test";
const QUEUE: usize = 100;

/// A tmpfs mounted on a temporary directory for the test's lifetime.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            skip_or_fail("mounting a tmpfs (`mount -t tmpfs`, needs root) for the disk-full test");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a filler file until the file system refuses another byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut size = chunk.len();
    loop {
        match file.write(&chunk[..size]) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) && size > 1 => size /= 2,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let probe = dir.join("probe");
    assert!(
        std::fs::write(&probe, vec![0u8; 8192]).is_err(),
        "the file system is full"
    );
    let _ = std::fs::remove_file(probe);
    path
}

fn config(mock: &MockUpstream, data_dir: &Path) -> String {
    store_config(
        mock,
        data_dir,
        &format!(
            "  - name: claude-up\n    platform: anthropic\n    type: apikey\n    base_url: {}\n    api_key: sk-ant-upstream\n    groups: [claude]\ngroups:\n  - {{name: claude, platform: anthropic}}\n",
            mock.url()
        ),
    )
    .replace(
        "storage:\n",
        &format!("storage:\n  usage_queue_capacity: {QUEUE}\n  usage_batch_interval_ms: 50\n"),
    )
    .replace(
        "api_keys:\n",
        &format!("api_keys:\n  - {{key: {CLAUDE_KEY}, name: claude-user, group: claude}}\n"),
    )
}

fn message() -> Value {
    json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    })
}

/// What one request got.
struct Answer {
    status: u16,
    request_id: String,
    body: Value,
}

async fn ask(gw: &Gateway, anthropic: bool) -> Answer {
    let response = if anthropic {
        send_as(gw, CLAUDE_KEY, "/v1/messages", &message()).await
    } else {
        post(gw, "/v1/responses", &body("gpt-5", false)).await
    };
    let status = response.status().as_u16();
    let header_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    // A refusal names its request id in the message.
    let request_id = header_id.unwrap_or_else(|| {
        let message = body["error"]["message"].as_str().unwrap_or_default();
        message
            .split("(request ")
            .nth(1)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_default()
            .to_owned()
    });
    Answer {
        status,
        request_id,
        body,
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_requests_before_any_upstream_and_loses_no_row_of_those_served() {
    let Some(tmpfs) = Tmpfs::mount() else { return };
    let mock = MockUpstream::start().await;
    let yaml = config(&mock, tmpfs.path());
    let mut gw = Gateway::start(&yaml);

    let mut served: Vec<String> = Vec::new();
    for i in 0..4 {
        let answer = ask(&gw, i % 2 == 1).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        served.push(answer.request_id);
    }
    // Nothing left in the spool whose deletion would free space while the disk is full.
    wait_for_stored_usage(&gw, served.len() as u64).await;
    let filler = fill(tmpfs.path());

    // Served while the rows fit in memory, then refused, in each protocol's shape.
    let mut refused: Vec<Answer> = Vec::new();
    let mut calls_before_refusal = 0;
    for i in 0..(QUEUE * 4) {
        let answer = ask(&gw, i % 2 == 1).await;
        match answer.status {
            200 => {
                assert!(
                    refused.is_empty(),
                    "served after a refusal while still full"
                );
                served.push(answer.request_id);
            }
            503 => {
                if refused.is_empty() {
                    calls_before_refusal = mock.total_calls();
                }
                refused.push(answer);
            }
            other => panic!("unexpected status {other}: {}", answer.body),
        }
        if refused.len() >= 6 {
            break;
        }
    }
    assert_eq!(refused.len(), 6, "the gateway kept serving unrecorded");
    assert!(
        served.len() > QUEUE,
        "the queue took {QUEUE} rows first ({} served)",
        served.len()
    );
    assert_eq!(
        mock.total_calls(),
        calls_before_refusal,
        "a refused request reached the upstream"
    );
    assert_eq!(mock.total_calls(), served.len());
    for answer in &refused {
        let anthropic = answer.body["type"] == "error";
        let message = if anthropic {
            assert_eq!(
                answer.body["error"]["type"], "overloaded_error",
                "{}",
                answer.body
            );
            answer.body["error"]["message"].as_str().unwrap()
        } else {
            assert_eq!(
                answer.body["error"]["code"], "usage_not_recordable",
                "{}",
                answer.body
            );
            answer.body["error"]["message"].as_str().unwrap()
        };
        assert!(
            message.contains("usage cannot be recorded"),
            "{}",
            answer.body
        );
        assert!(answer.request_id.starts_with("req_"), "{}", answer.body);
    }
    assert!(
        refused.iter().any(|a| a.body["type"] == "error")
            && refused.iter().any(|a| a.body["type"] != "error"),
        "both shapes were seen"
    );

    // Space comes back: everything queued reaches the spool and the store, and requests are
    // served again.
    std::fs::remove_file(filler).unwrap();
    wait_for_stored_usage(&gw, served.len() as u64).await;
    let answer = ask(&gw, false).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    served.push(answer.request_id);
    wait_for_stored_usage(&gw, served.len() as u64).await;

    // A graceful stop, a restart (a replay): every answered request has exactly one row, the
    // refused ones none.
    gw.sigterm();
    assert!(gw.wait_exit().success());
    let gw = Gateway::start(&yaml);
    let rows = wait_for_stored_usage(&gw, served.len() as u64).await;
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "a row was written twice");
    let expected: HashSet<&str> = served.iter().map(String::as_str).collect();
    assert_eq!(
        unique, expected,
        "the rows are exactly the answered requests"
    );
    for answer in &refused {
        assert!(!unique.contains(answer.request_id.as_str()));
    }
    drop(gw);
}

#[tokio::test]
async fn a_full_disk_is_logged_once_when_it_starts_and_once_when_it_ends_not_per_row() {
    let Some(tmpfs) = Tmpfs::mount() else { return };
    let mock = MockUpstream::start().await;
    let gw = Gateway::start(&config(&mock, tmpfs.path()));
    assert_eq!(ask(&gw, false).await.status, 200);
    wait_for_stored_usage(&gw, 1).await;
    let filler = fill(tmpfs.path());

    // Many rows recorded (fewer than the queue holds, so all are served) while the spool fails,
    // and time for several retries.
    let rows = QUEUE / 2;
    for i in 0..rows {
        assert_eq!(ask(&gw, i % 2 == 1).await.status, 200);
    }
    let spool_errors = || {
        gw.logs()
            .into_iter()
            .filter(|l| l.contains("\"level\":\"ERROR\"") && l.contains("usage spool"))
            .collect::<Vec<_>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while spool_errors().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the failing spool was never logged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Time for several retries of the append while the disk stays full.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(filler).unwrap();
    wait_for_stored_usage(&gw, rows as u64 + 1).await;

    let errors = spool_errors();
    assert_eq!(
        errors.len(),
        1,
        "one error line when the disk filled, not one per row or retry: {errors:#?}"
    );
    assert!(errors[0].contains("disk full"), "{}", errors[0]);
    let recovered: Vec<String> = gw
        .logs()
        .into_iter()
        .filter(|l| l.contains("usage spool") && l.contains("can be written again"))
        .collect();
    assert_eq!(
        recovered.len(),
        1,
        "one line when it recovered: {recovered:#?}"
    );
    drop(gw);
    drop(tmpfs);
}
