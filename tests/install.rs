//! The install items: shell completions, the systemd unit in `contrib/` and the Dockerfile. The
//! unit and the Dockerfile are checked against the binary they will run: their command line
//! must start it and their environment names must be config keys it reads. Docker cannot run in
//! the test environment, so the image itself is not built here.

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

use std::process::{Command, Stdio};

use common::*;

fn subrelay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_subrelay"))
}

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// `check-config` with these environment variables: its output, which names every key taken
/// from the environment (`# server.host from environment variable SERVER_HOST`).
fn check_config_with(env: &[(String, String)]) -> String {
    let out = subrelay()
        .arg("check-config")
        .env_remove("SUBRELAY_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

// === completions ===

#[test]
fn bash_completions_name_every_subcommand() {
    let out = subrelay().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let script = String::from_utf8(out.stdout).unwrap();
    assert!(script.contains("complete -F _subrelay"), "{script}");
    for command in [
        "serve",
        "check-config",
        "accounts",
        "keys",
        "usage",
        "completions",
    ] {
        assert!(
            script.contains(&format!("subrelay,{command})")),
            "{command} is not completed"
        );
    }
    for action in ["login", "refresh", "reset", "create", "disable"] {
        assert!(script.contains(&format!("__{action})")), "{action}");
    }
}

#[test]
fn every_documented_shell_gets_a_script_and_an_unknown_one_exits_2() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = subrelay().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("check-config"), "{shell}: {script}");
    }
    let out = subrelay().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("[possible values: bash, elvish, fish, powershell, zsh]"),
        "{err}"
    );
}

// === systemd unit ===

/// `Key=value` lines of the unit (comments and sections dropped), in order.
fn unit_settings() -> Vec<(String, String)> {
    repo_file("contrib/subrelay.service")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('['))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn unit_value(key: &str) -> String {
    let settings = unit_settings();
    let found: Vec<&String> = settings
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(found.len(), 1, "{key}: {found:?}");
    found[0].clone()
}

/// The unit's `Environment=NAME=value` pairs.
fn unit_environment() -> Vec<(String, String)> {
    unit_settings()
        .into_iter()
        .filter(|(k, _)| k == "Environment")
        .map(|(_, v)| {
            let (name, value) = v.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

#[test]
fn the_unit_is_hardened() {
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "subrelay"),
        ("ConfigurationDirectory", "subrelay"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("KillSignal", "SIGTERM"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(unit_value(key), value, "{key}");
    }
    assert!(unit_value("LimitNOFILE").parse::<u32>().unwrap() >= 4096);
    // The state directory is where the data lives.
    let env = unit_environment();
    assert!(env.contains(&("STORAGE_DATA_DIR".into(), "/var/lib/subrelay".into())));
    // `systemctl reload` is SIGHUP: the config file read again in place (tests/config_reload.rs).
    assert_eq!(unit_value("ExecReload"), "/bin/kill -HUP $MAINPID");
}

#[test]
fn the_unit_waits_longer_than_the_drain_before_killing() {
    let effective = check_config_with(&[]);
    let drain: u64 = effective
        .lines()
        .find_map(|l| l.trim().strip_prefix("shutdown_timeout: "))
        .unwrap()
        .parse()
        .unwrap();
    let stop: u64 = unit_value("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > drain,
        "TimeoutStopSec={stop}, shutdown_timeout={drain}"
    );
}

#[test]
fn the_units_environment_names_are_config_keys() {
    let env: Vec<(String, String)> = unit_environment()
        .into_iter()
        // Read by the log formatter (tracing-subscriber), not a config key.
        .filter(|(name, _)| name != "NO_COLOR")
        .collect();
    assert!(!env.is_empty());
    let text = check_config_with(&env);
    for (name, _) in &env {
        assert!(
            text.contains(&format!("from environment variable {name}\n")),
            "{name} is not a config key:\n{text}"
        );
    }
}

#[test]
fn the_units_command_line_starts_the_gateway() {
    let exec = unit_value("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/subrelay"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args, ["serve", "--config", "/etc/subrelay/config.yaml"]);
    // The same arguments, with the config path pointing at a test config and the data
    // directory at a temporary one.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "server:\n  port: 0\n").unwrap();
    let mut command = subrelay();
    command
        .args(&args[..2])
        .arg(&config)
        .env_remove("SUBRELAY_CONFIG")
        .envs(unit_environment())
        .env("STORAGE_DATA_DIR", dir.path().join("state"))
        .stdout(Stdio::piped());
    let (mut child, url, _) = spawn_and_wait(command);
    let _ = child.kill();
    let _ = child.wait();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(dir.path().join("state").is_dir());
}

#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let available = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available && skip_or_fail("systemd-analyze (apt package systemd)") {
        return;
    }
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("subrelay.service");
    let text = repo_file("contrib/subrelay.service")
        .replace("/usr/local/bin/subrelay", env!("CARGO_BIN_EXE_subrelay"));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // verify warns (and exits 0) about a value it ignores; any line about this unit is a fault.
    let about_unit: Vec<&str> = err.lines().filter(|l| l.contains("subrelay")).collect();
    assert!(out.status.success() && about_unit.is_empty(), "{err}");
}

// === Dockerfile ===

/// The `ENV` pairs of the Dockerfile's last stage (`ENV A=1 \ B=2` continuation lines joined).
fn docker_env() -> Vec<(String, String)> {
    let text = repo_file("Dockerfile").replace("\\\n", " ");
    let last_stage = text.rsplit("\nFROM ").next().unwrap();
    last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn the_dockerfiles_environment_names_are_config_keys() {
    let env = docker_env();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"STORAGE_DATA_DIR") && names.contains(&"SERVER_HOST"));
    let text = check_config_with(&env);
    for (name, _) in &env {
        assert!(
            text.contains(&format!("from environment variable {name}\n")),
            "{name} is not a config key:\n{text}"
        );
    }
    assert!(text.contains("data_dir: /data"), "{text}");
    assert!(text.contains("host: 0.0.0.0"), "{text}");
}

#[test]
fn the_dockerfile_builds_locked_and_runs_unprivileged_with_a_data_volume() {
    let text = repo_file("Dockerfile");
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "multi-stage: {stages:?}");
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("USER subrelay") && !text.contains("USER root"));
    assert!(text.contains("VOLUME [\"/data\"]"));
    let port = docker_env()
        .into_iter()
        .find(|(k, _)| k == "SERVER_PORT")
        .unwrap()
        .1;
    assert!(text.contains(&format!("EXPOSE {port}\n")), "{port}");
    let ignore = repo_file(".dockerignore");
    for path in ["target/", "data/", ".git/"] {
        assert!(ignore.lines().any(|l| l == path), "{path}");
    }
}
