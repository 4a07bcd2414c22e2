//! End-to-end harness: the real `subrelay` binary on port 0, configured per test, in front of
//! the in-process fake upstream. Logs are JSON so tests can read the usage records.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test harness: a failed set-up step should fail the test at once"
)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod http_proxy;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod socks;

pub use subrelay_mock::{Behavior, MockUpstream};

pub const KEY: &str = "sk-client-test";

pub struct Gateway {
    child: Child,
    pub url: String,
    lines: Arc<Mutex<Vec<String>>>,
    _config: tempfile::NamedTempFile,
    /// `storage.data_dir`, unless the test's config names its own.
    pub data_dir: Option<tempfile::TempDir>,
    /// The process's working directory: a relative path in a test's config stays in here.
    _cwd: tempfile::TempDir,
    /// With `SUBRELAY_TEST_STORAGE=postgres`: the database this gateway's store is in.
    _suite_db: Option<postgres::SuiteDb>,
}

/// One upstream account of a test config.
pub struct Acct<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub token: &'a str,
}

pub fn apikey<'a>(name: &'a str, token: &'a str) -> Acct<'a> {
    Acct {
        name,
        kind: "apikey",
        token,
    }
}

pub fn oauth<'a>(name: &'a str, token: &'a str) -> Acct<'a> {
    Acct {
        name,
        kind: "oauth",
        token,
    }
}

/// A config with these accounts (in priority order) against the mock, one client key, and
/// `extra` appended under `gateway:`.
pub fn config(mock: &MockUpstream, accounts: &[Acct<'_>], gateway_extra: &str) -> String {
    let mut yaml = format!(
        "gateway:\n{gateway_extra}\napi_keys:\n  - key: {KEY}\n    name: tester\naccounts:\n"
    );
    for (i, a) in accounts.iter().enumerate() {
        let (base, secret) = match a.kind {
            "oauth" => (
                format!("{}/backend-api/codex", mock.url()),
                format!(
                    "access_token: {}\n    chatgpt_account_id: acct-{}",
                    a.token, a.name
                ),
            ),
            _ => (
                format!("{}/v1", mock.url()),
                format!("api_key: {}", a.token),
            ),
        };
        yaml.push_str(&format!(
            "  - name: {}\n    platform: openai\n    type: {}\n    base_url: {base}\n    {secret}\n    priority: {i}\n",
            a.name, a.kind
        ));
    }
    yaml
}

/// One account of a translating group: `(name, platform, type, token, protocols)`; accounts are
/// tried in the order given.
pub type GroupAccount<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>);

/// A group `tr` (`translate` as given, model map `claude-*` → `gpt-5.1-codex`) holding
/// `accounts`, and the test key in it.
pub fn group_config(mock: &MockUpstream, translate: bool, accounts: &[GroupAccount<'_>]) -> String {
    let mut yaml = format!(
        "groups:\n  - {{name: tr, platform: openai, translate: {translate}, model_map: {{'claude-*': gpt-5.1-codex}}}}\napi_keys:\n  - {{key: {KEY}, name: tester, group: tr}}\naccounts:\n"
    );
    for (i, (name, platform, kind, token, protocols)) in accounts.iter().enumerate() {
        let (base, secret) = match (*platform, *kind) {
            ("openai", "oauth") => (
                format!("{}/backend-api/codex", mock.url()),
                format!("access_token: {token}"),
            ),
            ("openai", _) => (format!("{}/v1", mock.url()), format!("api_key: {token}")),
            _ => (mock.url(), format!("api_key: {token}")),
        };
        yaml.push_str(&format!(
            "  - name: {name}\n    platform: {platform}\n    type: {kind}\n    base_url: {base}\n    {secret}\n    groups: [tr]\n    priority: {i}\n"
        ));
        if let Some(p) = protocols {
            yaml.push_str(&format!("    protocols: [{p}]\n"));
        }
    }
    yaml
}

impl Gateway {
    pub fn start(config_yaml: &str) -> Gateway {
        Self::start_with_env(config_yaml, &[])
    }

    pub fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> Gateway {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let mut yaml = format!(
            "server:\n  port: 0\nlog:\n  format: json\n  level: info,usage=debug\n{config_yaml}"
        );
        let data_dir = (!config_yaml.contains("storage:")).then(|| tempfile::tempdir().unwrap());
        if let Some(dir) = &data_dir {
            yaml.push_str(&format!(
                "\nstorage:\n  data_dir: {}\n",
                dir.path().display()
            ));
        }
        let cwd = tempfile::tempdir().unwrap();
        let suite_db =
            postgres::suite_storage(&mut yaml, data_dir.as_ref().map(|d| d.path()), cwd.path());
        redis::suite_state(&mut yaml);
        file.write_all(yaml.as_bytes()).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_subrelay"));
        command
            .current_dir(cwd.path())
            .arg("serve")
            .arg("--config")
            .arg(file.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        without_config_env(&mut command);
        for (k, v) in env {
            command.env(k, v);
        }
        let (child, url, lines) = spawn_and_wait(command);
        Gateway {
            child,
            url,
            lines,
            _config: file,
            data_dir,
            _cwd: cwd,
            _suite_db: suite_db,
        }
    }

    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn usage_records(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["target"] == "usage")
            .filter_map(|v| serde_json::from_str(v["record"].as_str()?).ok())
            .collect()
    }

    /// Waits (up to 20 s) until `n` usage records were logged.
    pub async fn wait_for_usage(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let records = self.usage_records();
            if records.len() >= n {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} usage records, got {}: {:#?}",
                records.len(),
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (up to 20 s) for a log line containing `needle`.
    pub async fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(line) = self.logs().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {needle:?}: {:#?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The config file the gateway was started with (what a reload re-reads).
    pub fn config_path(&self) -> &std::path::Path {
        self._config.path()
    }

    /// Rewrites the config file through `edit` (the gateway reads it again only on a reload).
    #[allow(
        clippy::disallowed_methods,
        reason = "a test's own small file, between requests"
    )]
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        std::fs::write(self.config_path(), edit(text)).unwrap();
    }

    /// Sends SIGHUP: the gateway re-reads its config file.
    pub fn sighup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn responses_url(&self) -> String {
        format!("{}/v1/responses", self.url)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sigterm(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The request ids whose usage row has a whole line in a spool segment of `data_dir`
/// (`usage-spool/*.jsonl`): rows a killed gateway replays at its next start. A segment sealed or
/// stored while this reads is missed; read the spool before the store, so a row that moved on is
/// seen there.
#[allow(
    clippy::disallowed_methods,
    reason = "a test reads its own gateway's spool"
)]
pub fn spooled_request_ids(data_dir: &std::path::Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    let Ok(entries) = std::fs::read_dir(data_dir.join("usage-spool")) else {
        return ids;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        // A line still being written has no newline yet.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            if let Some(id) = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|row| row["request_id"].as_str().map(str::to_owned))
            {
                ids.insert(id);
            }
        }
    }
    ids
}

/// Removes the configuration's environment variables (`STORAGE_DATA_DIR`, `SUBRELAY_CONFIG`, …)
/// that the developer's shell may hold: a test's gateway reads only its own config (and what the
/// test sets), never the user's real data directory or settings.
pub fn without_config_env(command: &mut Command) -> &mut Command {
    command.env_remove("SUBRELAY_CONFIG");
    for key in subrelay::config::reference::KEYS {
        command.env_remove(subrelay::config::env_name(key.path));
    }
    command
}

/// Starts the command and reads its stdout on a thread until it says where it listens.
pub fn spawn_and_wait(mut command: Command) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on ".len()..];
                let url: String = rest
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect();
                let _ = tx.send(url);
            }
            sink.lock().unwrap().push(line);
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("subrelay did not start: {:#?}", lines.lock().unwrap()));
    (child, url, lines)
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

pub fn body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        "instructions": "be brief",
        "stream": stream,
    })
}

pub async fn post(gw: &Gateway, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}{path}", gw.url))
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// A usage record's attempts as (account, outcome) pairs, in order.
pub fn outcomes(record: &Value) -> Vec<(String, String)> {
    record["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account"].as_str().unwrap().to_owned(),
                a["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Asserts that a Responses stream reached the client as one clean answer after failover: a
/// single `response.created` (the failed attempts' preambles were held back and dropped), no
/// `response.failed`, and `response.completed` last.
pub fn assert_one_clean_responses_stream(text: &str) {
    let types = event_types(text);
    assert_eq!(
        types.iter().filter(|t| *t == "response.created").count(),
        1,
        "only the answering attempt's preamble reaches the client: {text}"
    );
    assert!(!types.iter().any(|t| t == "response.failed"), "{text}");
    assert_eq!(
        types.last().map(String::as_str),
        Some("response.completed"),
        "{text}"
    );
}

/// The SSE event types in a stream body, in order (comments skipped).
pub fn event_types(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .map(str::to_owned)
        })
        .collect()
}

/// Whether the test may skip when an external program is missing: in CI (any truthy `CI`) this
/// fails the test; elsewhere it records the skip for `python3 tests/run` (which counts and lists
/// skips apart from passes) and returns `true`. See `subrelay_mock::skip`.
pub fn skip_or_fail(what: &str) -> bool {
    subrelay_mock::skip::skip_or_fail(what)
}

/// Runs `tests/python/<script>` with `args` under a Python that has `module`; `None` (after
/// printing why) when there is none on a developer machine, a failure in CI.
pub async fn run_python(module: &str, script: &str, args: &[&str]) -> Option<std::process::Output> {
    let python = std::env::var("SUBRELAY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_module = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_module {
        skip_or_fail(&format!(
            "python3 with the {module} package (tests/python/requirements.txt)"
        ));
        return None;
    }
    let path = format!("{}/tests/python/{script}", env!("CARGO_MANIFEST_DIR"));
    // In a temporary directory: whatever the script or its packages write stays out of the
    // repository.
    let cwd = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(python)
        .arg(path)
        .args(args)
        .current_dir(cwd.path())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out)
}
