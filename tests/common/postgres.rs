//! PostgreSQL for tests: the machine's server at 127.0.0.1:5432 when it answers, else (or when
//! a test must stop and start it) a private one made with `initdb` and `pg_ctl` from
//! /usr/lib/postgresql/*/bin on a free port in a temporary directory. PostgreSQL refuses to run
//! as root, so as root the private server runs as the `postgres` user (`runuser`) in a directory
//! it owns. Each test makes its own database ([`PgServer::database`]), dropped when the test
//! ends.
//!
//! `SUBRELAY_TEST_STORAGE=postgres` runs the rest of the suite on PostgreSQL too: every gateway
//! a test starts ([`suite_storage`]) gets `storage.backend: postgres` with a database of its
//! data directory's own (so a restart on the same directory finds its store again).

#![allow(
    clippy::disallowed_methods,
    reason = "test helpers: they block on child processes and own their temporary directories"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A PostgreSQL server (trust authentication, user `postgres`) on 127.0.0.1.
pub struct PgServer {
    pub port: u16,
    /// `Some` for a private server this process started (and stops on drop).
    private: Option<Private>,
}

struct Private {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
pub fn bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `psql` (or another client program) from the PostgreSQL bin directory, else the PATH.
fn client_program(name: &str) -> PathBuf {
    bin_dir()
        .map(|b| b.join(name))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Whether a server on `port` accepts `psql` as `postgres` without a password.
fn answers(port: u16) -> bool {
    Command::new(client_program("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-d", "postgres", "-tAc", "SELECT 1"])
        .env("PGCONNECT_TIMEOUT", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgServer {
    /// The machine's server when it answers on 5432, else a private one. `None` (a visible
    /// skip, a failure in CI) when neither is possible.
    pub fn any() -> Option<PgServer> {
        if answers(5432) {
            return Some(PgServer {
                port: 5432,
                private: None,
            });
        }
        Self::private()
    }

    /// A server of this test's own, which it may stop and start; `None` as for [`PgServer::any`].
    pub fn private() -> Option<PgServer> {
        let Some(bin) = bin_dir() else {
            assert!(
                super::skip_or_fail(
                    "PostgreSQL's server programs (/usr/lib/postgresql/*/bin/initdb): install the `postgresql` package (tests/run does as root)"
                ),
                "PostgreSQL's server programs are missing"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let as_postgres = is_root();
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");
        std::fs::create_dir(&data).unwrap();
        if as_postgres {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::write(&log, b"").unwrap();
            let status = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&data)
                .arg(&log)
                .status()
                .unwrap();
            assert!(status.success(), "chown of the private server's directory");
        }
        let server = PgServer {
            port: free_port(),
            private: Some(Private {
                bin,
                data,
                log,
                as_postgres,
                _dir: dir,
            }),
        };
        let private = server.private.as_ref().unwrap();
        let mut initdb = private.command("initdb");
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&private.data);
        let out = initdb.output().unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.start();
        Some(server)
    }

    /// Starts the private server (again) and waits until it accepts connections.
    pub fn start(&self) {
        let private = self.private.as_ref().expect("only a private server starts");
        let mut ctl = private.command("pg_ctl");
        ctl.arg("-D")
            .arg(&private.data)
            .arg("-l")
            .arg(&private.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {} -h 127.0.0.1 -k '' -c fsync=off -c max_connections=200",
                self.port
            ))
            .arg("start");
        let out = ctl.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&private.log).unwrap_or_default()
        );
    }

    /// Stops the private server (fast shutdown: open connections are cut).
    pub fn stop(&self) {
        let private = self.private.as_ref().expect("only a private server stops");
        let mut ctl = private.command("pg_ctl");
        ctl.arg("-D")
            .arg(&private.data)
            .args(["-w", "-t", "60", "-m", "fast", "stop"]);
        let out = ctl.output().unwrap();
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A fresh database with a unique name, dropped when the returned value is.
    pub fn database(&self) -> TestDb<'_> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "subrelay_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        self.psql(&format!("CREATE DATABASE {name}"));
        TestDb { server: self, name }
    }

    /// Runs one SQL statement on `postgres` as `postgres`; panics when it fails.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_on("postgres", sql)
    }

    pub fn psql_on(&self, database: &str, sql: &str) -> String {
        let out = Command::new(client_program("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Private {
    /// A server program, run as `postgres` when this process is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command.current_dir(Path::new("/"));
            command
        } else {
            Command::new(path)
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(private) = &self.private {
            let mut ctl = private.command("pg_ctl");
            ctl.arg("-D")
                .arg(&private.data)
                .args(["-w", "-m", "immediate", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = ctl.status();
        }
    }
}

/// A database of one test.
pub struct TestDb<'a> {
    server: &'a PgServer,
    pub name: String,
}

impl TestDb<'_> {
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    pub fn psql(&self, sql: &str) -> String {
        self.server.psql_on(&self.name, sql)
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        // WITH (FORCE): gateways of the test may still hold connections.
        let _ = Command::new(client_program("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.server.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", "postgres", "-tAc"])
            .arg(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `SUBRELAY_TEST_STORAGE`: `postgres` puts every gateway of the suite on PostgreSQL.
pub const SUITE_ENV: &str = "SUBRELAY_TEST_STORAGE";
/// The encryption key of suite gateways whose config names none (PostgreSQL requires one).
pub const SUITE_ENCRYPTION_KEY: &str =
    "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// A suite gateway's database; dropped with the gateway when the gateway owned its data
/// directory (the test cannot start it again). A database of a test's own directory is kept for
/// a restart, and dropped by the next sweep once that directory is gone.
pub struct SuiteDb {
    port: u16,
    name: String,
    drop_it: bool,
}

impl Drop for SuiteDb {
    fn drop(&mut self) {
        if self.drop_it {
            let _ = Command::new(client_program("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-d", "postgres", "-tAc"])
                .arg(format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Drops the suite databases whose data directory is gone (its test ended), so a run leaves at
/// most the databases of the tests still running.
fn sweep_suite_databases(server: &PgServer) {
    let listed = server.psql(
        "SELECT datname || '|' || COALESCE(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname LIKE 'subrelay_suite_%'",
    );
    for line in listed.lines() {
        let Some((name, dir)) = line.split_once('|') else {
            continue;
        };
        if !dir.is_empty() && !Path::new(dir).exists() {
            let _ = Command::new(client_program("psql"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &server.port.to_string(),
                    "-U",
                    "postgres",
                ])
                .args(["-d", "postgres", "-tAc"])
                .arg(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// With `SUBRELAY_TEST_STORAGE=postgres`, rewrites a gateway's config to use PostgreSQL (the
/// machine's server on 5432; one must answer there). `owned_dir`: the data directory the harness
/// made; else the config's `data_dir` (relative to `cwd`) names the database.
pub fn suite_storage(yaml: &mut String, owned_dir: Option<&Path>, cwd: &Path) -> Option<SuiteDb> {
    if std::env::var(SUITE_ENV).ok().as_deref() != Some("postgres") || yaml.contains("backend:") {
        return None;
    }
    assert!(
        answers(5432),
        "{SUITE_ENV}=postgres needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust)"
    );
    let dir = match owned_dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let named = yaml
                .lines()
                .find_map(|l| l.trim().strip_prefix("data_dir:"))
                .map(|v| v.trim().trim_matches('"').to_owned())
                .unwrap_or_else(|| "./data".to_owned());
            cwd.join(named)
        }
    };
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = format!("subrelay_suite_{:016x}", hasher.finish());
    let server = PgServer {
        port: 5432,
        private: None,
    };
    sweep_suite_databases(&server);
    let exists = format!("SELECT 1 FROM pg_database WHERE datname = '{name}'");
    if server.psql(&exists) != "1" {
        server.psql(&format!("CREATE DATABASE {name}"));
        // The directory it belongs to, for the sweep.
        let dir_text = dir.display().to_string().replace('\'', "''");
        server.psql(&format!("COMMENT ON DATABASE {name} IS '{dir_text}'"));
    }
    let mut lines = format!(
        "storage:\n  backend: postgres\n  postgres_url: {}\n",
        server.url(&name)
    );
    if !yaml.contains("encryption_key") {
        lines.push_str(&format!("  encryption_key: {SUITE_ENCRYPTION_KEY}\n"));
    }
    if yaml.contains("storage:\n") {
        *yaml = yaml.replacen("storage:\n", &lines, 1);
    } else {
        yaml.push('\n');
        yaml.push_str(&lines);
    }
    Some(SuiteDb {
        port: 5432,
        name,
        drop_it: owned_dir.is_some(),
    })
}
