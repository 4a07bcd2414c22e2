//! A real Redis for the shared-state tests: the machine's on 127.0.0.1:6379 when it answers,
//! else a private `redis-server` on a free port (always private for a test that stops it). Each
//! test keeps apart by its own random `state.redis_prefix`.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    pub port: u16,
    /// A private server (`None`: the machine's).
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
}

fn redis_server() -> Option<PathBuf> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Sends one inline command and returns the first reply line.
pub fn command(port: u16, line: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{line}\r\n").as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = stream.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn answers(port: u16) -> bool {
    command(port, "PING").is_some_and(|r| r.starts_with("+PONG"))
}

/// A random key prefix for one test.
pub fn prefix() -> String {
    use rand::Rng;
    format!("t{:016x}:", rand::thread_rng().gen::<u64>())
}

/// The `state:` section of a gateway on the Redis at `url` under `prefix`, with `lease_ttl`
/// seconds when given (else the default).
pub fn state_yaml(url: &str, prefix: &str, lease_ttl: Option<u64>) -> String {
    let mut yaml =
        format!("state:\n  backend: redis\n  redis_url: {url}\n  redis_prefix: '{prefix}'\n");
    if let Some(ttl) = lease_ttl {
        yaml.push_str(&format!("  lease_ttl: {ttl}\n"));
    }
    yaml
}

impl Redis {
    /// The machine's Redis if it answers, else a private one. `None` (after saying why) when
    /// there is neither and no redis-server to start, outside CI.
    pub fn any() -> Option<Redis> {
        if answers(6379) {
            return Some(Redis {
                port: 6379,
                child: None,
                dir: None,
            });
        }
        Self::private()
    }

    /// A private Redis on a free port, which the test may stop and start again.
    pub fn private() -> Option<Redis> {
        if redis_server().is_none() {
            super::skip_or_fail("redis-server (Debian package redis-server)");
            return None;
        }
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let mut redis = Redis {
            port,
            child: None,
            dir: Some(tempfile::tempdir().unwrap()),
        };
        redis.start();
        Some(redis)
    }

    fn start(&mut self) {
        let dir = self.dir.as_ref().expect("a private server has a directory");
        let child = Command::new(redis_server().expect("checked at creation"))
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(self.port) {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops a private server (SIGKILL: as if the machine went away).
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("only a private server is stopped");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts a stopped private server again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.start();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `SUBRELAY_TEST_STATE`: `redis` puts every gateway of the suite on the machine's Redis (6379),
/// each with a prefix of its own (so a gateway restarted within a test starts with fresh state,
/// as a local one does).
pub const SUITE_STATE_ENV: &str = "SUBRELAY_TEST_STATE";

/// With `SUBRELAY_TEST_STATE=redis`, adds `state.backend: redis` to a gateway's config that
/// names no `state:` of its own.
pub fn suite_state(yaml: &mut String) {
    if std::env::var(SUITE_STATE_ENV).ok().as_deref() != Some("redis")
        || yaml.lines().any(|l| l.trim_end() == "state:")
    {
        return;
    }
    assert!(
        answers(6379),
        "{SUITE_STATE_ENV}=redis needs Redis on 127.0.0.1:6379"
    );
    yaml.push('\n');
    yaml.push_str(&state_yaml("redis://127.0.0.1:6379/0", &prefix(), None));
}
