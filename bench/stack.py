"""The processes under test: the fake upstream, nginx and subrelay, plus /proc readings.

Everything listens on 127.0.0.1 on a free port and lives in one temporary directory (configs,
logs). A `Stack` is started fresh for each scenario, so that the peak memory figures of a scenario
are not inherited from the one before it.
"""

import atexit
import os
import re
import resource
import secrets
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

N_API_KEYS = 1000
N_ACCOUNTS = 20


class StartError(RuntimeError):
    """A target did not come up; the message says which and where its log is."""


# --- /proc readings -------------------------------------------------------------------------


def cpu_seconds(pid):
    """utime + stime of a whole process (all threads, also exited ones), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / CLK_TCK


def memory_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def reset_peak(pid):
    """Resets VmHWM to the current RSS (`5` > clear_refs, Linux 4.0+). False if refused."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(path, pattern, proc, what, timeout=20.0):
    """Polls a log file until `pattern` matches; returns the match. Bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    regex = re.compile(pattern)
    while time.monotonic() < deadline:
        try:
            text = Path(path).read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        found = regex.search(text)
        if found:
            return found
        if proc.poll() is not None:
            raise StartError(f"{what} exited with status {proc.returncode}; see {path}")
        time.sleep(0.02)
    raise StartError(f"{what} did not announce itself within {timeout:.0f} s; see {path}")


def wait_for_port(port, proc, what, log, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StartError(f"{what} exited with status {proc.returncode}; see {log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise StartError(f"{what} is not accepting connections on port {port}; see {log}")


# --- one process ----------------------------------------------------------------------------


class Process:
    def __init__(self, name, argv, log_path, cwd=None):
        self.name = name
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )
        self.pid = self.proc.pid
        self.port = None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()

    def alive(self):
        return self.proc.poll() is None


# --- configs --------------------------------------------------------------------------------


def api_keys(count=N_API_KEYS):
    """Client keys: random, so nothing can be learnt from their order."""
    salt = secrets.token_hex(8)
    return [f"sk-bench-{i:04d}-{salt}" for i in range(count)]


# `bench/run --metrics`: subrelay serves Prometheus metrics, scraped every SCRAPE_EVERY seconds
# while it runs (as a Prometheus would), so CPU per request can be compared with metrics off.
METRICS = False
SCRAPE_EVERY = 5

# `bench/run --shared`: a second subrelay, target `shared`, runs beside the usual one with its
# store in PostgreSQL (127.0.0.1:5432, user postgres, trust) and its runtime state in Redis
# (127.0.0.1:6379), as instances of a scale-out deployment do (docs/DEPLOY.md), so both backends
# are measured in the same rounds (issue 17); each start gets a fresh database and key prefix,
# dropped at exit. Scenarios 7 and 8 (variants of one subrelay) do not start it.
SHARED = False
SHARED_DATABASES = []

# `bench/run --binaries DIR`: run subrelay and subrelay-mock from DIR instead of target/release
# (a quick check of the harness itself against a debug build; figures then mean nothing).
BINARIES = None


def shared_store_lines():
    """The `storage`/`state` lines of a fresh database and Redis prefix."""
    name = f"subrelay_bench_{secrets.token_hex(6)}"
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                    f"CREATE DATABASE {name}"], check=True, stdout=subprocess.DEVNULL)
    if not SHARED_DATABASES:
        atexit.register(drop_shared_databases)
    SHARED_DATABASES.append(name)
    return ([
        "  backend: postgres",
        f"  postgres_url: postgres://postgres@127.0.0.1:5432/{name}",
    ], [
        "state:",
        "  backend: redis",
        "  redis_url: redis://127.0.0.1:6379/0",
        f"  redis_prefix: \"bench-{secrets.token_hex(4)}:\"",
    ])


def drop_shared_databases():
    for name in SHARED_DATABASES:
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c",
                        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def subrelay_config(mock_port, keys, data_dir, ca_file=None, translate=False, shared=False):
    """A realistic configuration: 1,000 keys, 20 accounts, log level info, a usage record per
    request in the store (the usage log line is at debug: off at info), the default keepalive
    settings, plus the compact keepalive scenario
    (6) needs. The store lives in the run's temporary directory, fresh for each start.
    With `ca_file` the accounts reach the mock over TLS (`https://localhost`, HTTP/2 by ALPN),
    trusting the mock's test authority through `upstream.ca_file`.
    With `translate` (scenario 7, issue 16) the `default` group translates and its accounts speak
    only the Responses API, so a Messages client is translated and a Responses client is not;
    the keys of `translate_keys(keys)[1]` are in a group `claude` of one Anthropic account on the
    mock, the native Messages stream. With `shared`, the store is a fresh PostgreSQL database and
    the runtime state Redis (`bench/run --shared`)."""
    lines = [
        "server:",
        "  host: 127.0.0.1",
        "  port: 0",
        "storage:",
        f"  data_dir: {data_dir}",
        f"  encryption_key: {secrets.token_hex(32)}",
    ]
    state = []
    if shared:
        storage, state = shared_store_lines()
        lines += storage
    lines += state + [
        "gateway:",
        "  openai_compact_nonstream_keepalive_interval: 5",
        "log:",
        "  level: info",
    ]
    base_url = f"http://127.0.0.1:{mock_port}/v1"
    if ca_file is not None:
        lines += ["upstream:", f"  ca_file: {ca_file}"]
        base_url = f"https://localhost:{mock_port}/v1"
    protocols = ", protocols: [responses]" if translate else ""
    if translate:
        lines += ["groups:",
                  "  - {name: default, platform: openai, translate: true}",
                  "  - {name: claude, platform: anthropic}"]
    lines.append("accounts:")
    for i in range(N_ACCOUNTS):
        lines.append(
            f"  - {{name: bench-{i:02d}, platform: openai, type: apikey, "
            f"api_key: sk-upstream-{i:02d}, base_url: \"{base_url}\"{protocols}}}"
        )
    claude_keys = set()
    if translate:
        lines.append(f"  - {{name: bench-claude, platform: anthropic, type: apikey, "
                     f"api_key: sk-ant-upstream, base_url: \"{base_url.removesuffix('/v1')}\", "
                     f"groups: [claude]}}")
        claude_keys = set(translate_keys(keys)[1])
    lines.append("api_keys:")
    for i, key in enumerate(keys):
        group = ", group: claude" if key in claude_keys else ""
        lines.append(f"  - {{name: user-{i:04d}, key: {key}{group}}}")
    if METRICS:
        lines += ["metrics:", f"  listen: 127.0.0.1:{free_port()}"]
    return "\n".join(lines) + "\n"


def translate_keys(keys):
    """A `translate` stack's keys: (the translating OpenAI group's, the Anthropic group's)."""
    half = len(keys) // 2
    return keys[:half], keys[half:]


def scrape_metrics(relay_log, stop):
    """Scrapes subrelay's /metrics every SCRAPE_EVERY seconds until `stop` is set."""
    import urllib.request
    found = None
    while found is None:
        # The line follows the "listening on" one by a moment.
        found = re.search(r"Prometheus metrics on (http://[0-9.:]+/metrics)",
                          relay_log.read_text())
        if found is None and stop.wait(0.1):
            return
    while not stop.wait(SCRAPE_EVERY):
        try:
            with urllib.request.urlopen(found.group(1), timeout=5) as answer:
                answer.read()
        except OSError:
            pass


def nginx_config(tmp, port, mock_port, fd_limit, ca_file=None):
    """One worker, upstream keepalive, HTTP/1.1 upstream, no buffering, access log on: nginx
    writes a line per request, as subrelay does with its default `log.access: true` -- each
    target kept as an admin would run it. With `ca_file`: the upstream over TLS, verified
    against it (nginx 1.22 proxies over HTTP/1.1 only, so it holds one TLS connection to the
    upstream per open stream)."""
    scheme, tls = "http", ""
    if ca_file is not None:
        scheme = "https"
        tls = f"""
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca_file};
            proxy_ssl_server_name on;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;"""
    return f"""daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {fd_limit};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections {min(32768, fd_limit)};
}}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-client-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    upstream mock {{
        server 127.0.0.1:{mock_port};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass {scheme}://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 120s;{tls}
        }}
    }}
}}
"""


# --- the stack ------------------------------------------------------------------------------


class Stack:
    """The mock, nginx in front of it, subrelay in front of it; each target's URL and the PID
    whose CPU and memory count for it (`direct`: the mock itself)."""

    def __init__(self, repo, tmp, keys, label, tls=False, translate=False, bin_dir=None,
                 wrap=(), start_timeout=20.0, shared=None):
        self.translate = translate
        # The `shared` target (a second subrelay on PostgreSQL and Redis): with `--shared`,
        # unless the scenario compares variants of one subrelay.
        self.shared = SHARED if shared is None else shared
        self.repo = Path(repo)
        # Where the binaries are (default target/release) and a command to run subrelay under
        # (`bench/heap_profile`: heaptrack).
        self.bin_dir = Path(bin_dir).resolve() if bin_dir else self.repo / "target" / "release"
        self.wrap = list(wrap)
        self.start_timeout = start_timeout
        self.tmp = Path(tmp)
        self.keys = keys
        self.label = label
        # The mock serves TLS (ALPN h2 and http/1.1, at most 100 streams per HTTP/2
        # connection, as real providers announce) with a test authority it writes to ca_file.
        self.ca_file = self.tmp / f"{label}-ca" / "ca.pem" if tls else None
        self.procs = {}

    def start(self):
        release = BINARIES or self.bin_dir
        try:
            mock_log = self.tmp / f"{self.label}-mock.log"
            argv = [str(release / "subrelay-mock"), "--port", "0"]
            if self.ca_file is not None:
                self.ca_file.parent.mkdir(exist_ok=True)
                argv += ["--tls-test-ca", str(self.ca_file.parent),
                         "--max-concurrent-streams", "100"]
            mock = Process("mock", argv, mock_log, cwd=self.tmp)
            self.procs["mock"] = mock
            found = wait_for_line(
                mock_log,
                r"subrelay-mock listening on https?://(?:127\.0\.0\.1|localhost):(\d+)",
                mock.proc, "subrelay-mock")
            mock.port = int(found.group(1))

            nginx_dir = self.tmp / f"{self.label}-nginx"
            nginx_dir.mkdir(exist_ok=True)
            nginx_port = free_port()
            conf = nginx_dir / "nginx.conf"
            fds = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            conf.write_text(nginx_config(nginx_dir, nginx_port, mock.port, fds, self.ca_file))
            nginx_log = nginx_dir / "stdout.log"
            nginx = Process("nginx", [nginx_binary(), "-p", str(nginx_dir), "-c", str(conf)],
                            nginx_log, cwd=self.tmp)
            self.procs["nginx"] = nginx
            wait_for_port(nginx_port, nginx.proc, "nginx", nginx_dir / "nginx-error.log")
            nginx.port = nginx_port

            for name in ("subrelay", "shared") if self.shared else ("subrelay",):
                self.start_subrelay(name, release, mock.port)
            if METRICS:
                self.scraping = threading.Event()
                for name in self.subrelays():
                    threading.Thread(target=scrape_metrics,
                                     args=(self.procs[name].log_path, self.scraping),
                                     daemon=True).start()
        except Exception:
            self.stop()
            raise
        return self

    def start_subrelay(self, name, release, mock_port):
        """One subrelay (`name`: the target) in front of the mock, on SQLite and local state, or
        on PostgreSQL and Redis for `shared`."""
        cfg = self.tmp / f"{self.label}-{name}.yaml"
        data_dir = self.tmp / f"{self.label}-{name}-data"
        cfg.write_text(subrelay_config(mock_port, self.keys, data_dir, self.ca_file,
                                       self.translate, shared=name == "shared"))
        relay_log = self.tmp / f"{self.label}-{name}.log"
        relay = Process(name,
                        [*self.wrap, str(release / "subrelay"), "serve", "--config", str(cfg)],
                        relay_log, cwd=self.tmp)
        self.procs[name] = relay
        found = wait_for_line(relay_log, r"listening on http://127\.0\.0\.1:(\d+)",
                              relay.proc, name, timeout=self.start_timeout)
        relay.port = int(found.group(1))
        wait_for_port(relay.port, relay.proc, name, relay_log)

    def subrelays(self):
        """The subrelay targets of this stack: `subrelay`, and `shared` with `--shared`."""
        return [name for name in ("subrelay", "shared") if name in self.procs]

    def stop(self):
        if getattr(self, "scraping", None) is not None:
            self.scraping.set()
        for name in ("shared", "subrelay", "nginx", "mock"):
            proc = self.procs.get(name)
            if proc is not None:
                proc.stop()

    def port(self, target):
        return self.procs["mock" if target == "direct" else target].port

    def pid(self, target):
        """The process whose CPU and memory count for `target`."""
        return self.procs["mock" if target == "direct" else target].pid

    @property
    def mock_pid(self):
        return self.procs["mock"].pid

    def all_alive(self):
        return {name: p.alive() for name, p in self.procs.items()}

    def subrelay_logs(self):
        """{target: its log} for each subrelay of the stack."""
        return {name: self.procs[name].log_path for name in self.subrelays()}


def nginx_binary():
    for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"):
        if os.path.exists(path):
            return path
    raise StartError("nginx not found (apt-get install nginx)")
