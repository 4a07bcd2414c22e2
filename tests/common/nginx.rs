//! A real nginx in front of the gateway, started per test on a free port with its own config:
//! default `proxy_buffering` (on), upstream HTTP/1.1, WebSocket upgrades passed on (README's
//! `map $http_upgrade`), and a short `proxy_read_timeout`; in front of one gateway or balancing
//! over several. Its access log (`METHOD /path STATUS`) is in the temp dir.

#![allow(
    clippy::disallowed_methods,
    reason = "tests may block, spawn freely and touch their own temporary files"
)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

fn nginx_binary() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Nginx {
    /// `None` (after printing why) when nginx is missing on a developer machine; in CI a
    /// missing nginx fails the test.
    pub fn start(upstream: &str, read_timeout_secs: u64) -> Option<Nginx> {
        Self::start_balanced(&[upstream], read_timeout_secs)
    }

    /// nginx balancing over several gateways, round robin (its default), one `server` line each.
    pub fn start_balanced(upstreams: &[&str], read_timeout_secs: u64) -> Option<Nginx> {
        let Some(binary) = nginx_binary() else {
            super::skip_or_fail("nginx (Debian package nginx)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let servers: String = upstreams
            .iter()
            .map(|u| format!(" server {};", u.trim_start_matches("http://")))
            .collect();
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format subrelay '$request_method $uri $status';
    access_log {d}/access.log subrelay;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream subrelay {{{servers} keepalive 16; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://subrelay;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout {read_timeout_secs}s;
        }}
    }}
}}
"#
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        })
    }

    /// nginx's access log, one `METHOD /path STATUS` line per request (an upgraded WebSocket's
    /// `101` line is written when the socket closes).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The access log once a line satisfies `wanted`, waiting up to 10 s for nginx to write it;
    /// the log as it is then otherwise.
    pub async fn access_log_with(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.access_log();
            if log.lines().any(&wanted) || Instant::now() > deadline {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
