//! Skipping a test whose external program (nginx, Chromium, a Python package) is missing, in a
//! way the test command can count (`python3 tests/run`).
//!
//! A skipped test returns early, so libtest counts it as passed. To tell the two apart,
//! [`skip_or_fail`] appends one line `<test binary>::<test name>\t<reason>` to the file named by
//! [`LOG_ENV`] (the runner sets it); the runner lists those lines and subtracts them from the
//! passed tests. In CI (any truthy `CI`) a skip is a failure instead: the test panics.
//!
//! Both the gateway's end-to-end tests (`tests/common/mod.rs::skip_or_fail`) and this crate's own
//! tests skip through here, so there is one rule for every test binary.

use std::io::Write;

/// The environment variable naming the file that skips are appended to.
pub const LOG_ENV: &str = "SUBRELAY_SKIP_LOG";

/// Whether a `CI` value means "running in CI": anything but unset, empty, `0`, `false`, `no` or
/// `off` (case and surrounding spaces ignored). `CI=1` and `CI=yes` count, not only `CI=true`.
pub fn ci_is_truthy(value: Option<&str>) -> bool {
    match value.map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) => !matches!(v.as_str(), "" | "0" | "false" | "no" | "off"),
    }
}

/// Skips the calling test because `what` is not available: in CI this panics (a skip is a
/// failure there); elsewhere it records the skip for the runner, prints `SKIPPED: …` and returns
/// `true`, so a test can write `if !installed && skip_or_fail("nginx") { return; }`.
pub fn skip_or_fail(what: &str) -> bool {
    let ci = std::env::var("CI").ok();
    if ci_is_truthy(ci.as_deref()) {
        panic!(
            "{what} is required in CI (CI={}); `python3 tests/run` installs it when run as root",
            ci.unwrap_or_default()
        );
    }
    let reason = format!("{what} is not available on this machine");
    if let Some(path) = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()) {
        let line = log_line(&test_id(), &reason);
        // One `write` of a whole line in append mode: test binaries running at once do not
        // interleave their lines.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .unwrap_or_else(|e| panic!("cannot record the skip in {path:?} ({LOG_ENV}): {e}"));
    }
    eprintln!("SKIPPED: {reason}");
    true
}

/// `<test binary>::<test name>` of the calling test. libtest runs each test on a thread named
/// after it; with one test thread it runs them on the main thread, which names none.
fn test_id() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| binary_name(&stem).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "(test name unknown: run with more than one test thread)".to_owned(),
    };
    format!("{binary}::{test}")
}

/// Cargo names a test binary `<name>-<16 hex digits>`; this is `<name>`.
fn binary_name(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// One line of the skip log; tabs and line breaks in either part become spaces.
fn log_line(test: &str, reason: &str) -> String {
    let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
    format!("{}\t{}\n", clean(test), clean(reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for truthy in ["true", "1", "yes", "TRUE", "on", "github", " true "] {
            assert!(ci_is_truthy(Some(truthy)), "{truthy:?}");
        }
        for falsy in ["", "0", "false", "no", "off", "False", " NO "] {
            assert!(!ci_is_truthy(Some(falsy)), "{falsy:?}");
        }
        assert!(!ci_is_truthy(None));
    }

    #[test]
    fn the_binary_name_loses_cargo_s_hash_only() {
        assert_eq!(binary_name("behind_nginx-0123456789abcdef"), "behind_nginx");
        assert_eq!(
            binary_name("subrelay_mock-fedcba9876543210"),
            "subrelay_mock"
        );
        assert_eq!(binary_name("my-tool"), "my-tool");
        assert_eq!(binary_name("plain"), "plain");
    }

    #[test]
    fn a_log_line_is_one_line_with_one_tab() {
        assert_eq!(
            log_line("cli::a\tb", "no\nnginx\r"),
            "cli::a b\tno nginx \n"
        );
    }

    #[test]
    fn the_test_id_names_this_test() {
        // libtest names the thread after the test (unless it runs with one test thread).
        let id = test_id();
        assert!(id.starts_with("subrelay_mock::"), "{id}");
        if std::thread::current().name() != Some("main") {
            assert_eq!(
                id,
                "subrelay_mock::skip::tests::the_test_id_names_this_test"
            );
        }
    }
}
