//! The reference of every scalar config key: default, allowed values, environment name.
//!
//! This table is the single source for three things: which environment variables are read
//! (only these), the wording of validation errors, and `docs/CONFIG.md` (a test renders the
//! table and compares it with the file, another compares the defaults with the code).

/// One scalar key of the configuration.
pub struct KeyDoc {
    /// Dotted path, as in the YAML file.
    pub path: &'static str,
    /// The default, as it would be written in YAML.
    pub default: &'static str,
    /// What is allowed; used verbatim in errors: "`path` = value: must be {allowed}".
    pub allowed: &'static str,
    pub description: &'static str,
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        path: "server.host",
        default: "127.0.0.1",
        allowed: "an IP address or host name to listen on",
        description: "Address the gateway listens on. Use 0.0.0.0 to accept connections from other machines.",
    },
    KeyDoc {
        path: "server.port",
        default: "8080",
        allowed: "a port number 0–65535 (0 picks a free port)",
        description: "TCP port the gateway listens on.",
    },
    KeyDoc {
        path: "server.shutdown_timeout",
        default: "30",
        allowed: "1–3600 seconds",
        description: "On SIGTERM/SIGINT, how long in-flight requests may take to finish before the process exits.",
    },
    KeyDoc {
        path: "server.drain_delay",
        default: "0",
        allowed: "0–300 seconds",
        description: "On SIGTERM/SIGINT, how long the gateway keeps accepting and serving new requests while `/readyz` already answers 503 (`draining`), so a load balancer stops sending before the listener closes; then `server.shutdown_timeout` applies. 0: close the listener at once.",
    },
    KeyDoc {
        path: "server.workers",
        default: "1",
        allowed: "0–256 (0 = one per CPU core)",
        description: "Event-loop threads. Each is single-threaded with its own listening socket (SO_REUSEPORT), so a request never hops between threads; one relays well over 10,000 requests/s, raise it only when one core is not enough.",
    },
    KeyDoc {
        path: "server.header_read_timeout",
        default: "30",
        allowed: "1–3600 seconds",
        description: "How long a client may take to send a request's head (request line and headers), counted from the connection's start or, on a kept-alive connection, from the first byte of the next request. Slower clients are disconnected without an answer.",
    },
    KeyDoc {
        path: "server.idle_timeout",
        default: "120",
        allowed: "1–86400 seconds",
        description: "A kept-alive connection with no request in flight is closed after this long without a new request. A response being sent (a stream) is never idle.",
    },
    KeyDoc {
        path: "server.body_read_timeout",
        default: "60",
        allowed: "1–3600 seconds",
        description: "How long a request body may take to arrive in all, counted from its head (not between chunks); a slower upload gets 408 in the route's error shape (400 on the admin API).",
    },
    KeyDoc {
        path: "server.max_connections",
        default: "0",
        allowed: "0 (derived from the file limit) or 1–1000000",
        description: "Client connections open at once, over all workers. Beyond it a new connection is closed at once without an answer (one log line per 10 s with the count); connections already open go on. 0 = 40% of the open-file limit (after it is raised to the hard limit at start), leaving the rest for upstream connections and the store.",
    },
    KeyDoc {
        path: "server.trusted_proxies",
        default: "",
        allowed: "empty or IP addresses and CIDRs, separated by commas or spaces",
        description: "Proxies in front of subrelay (nginx, a load balancer) whose `X-Forwarded-For` is believed: the client address is its rightmost hop that is not a trusted proxy. From any other peer the header is ignored and the peer's address is the client's. Used to throttle failed admin sign-ins per client.",
    },
    KeyDoc {
        path: "gateway.response_header_timeout",
        default: "600",
        allowed: "1–3600 seconds",
        description: "How long to wait for an upstream's response headers before the attempt fails over.",
    },
    KeyDoc {
        path: "gateway.connect_timeout",
        default: "10",
        allowed: "1–300 seconds",
        description: "How long a new upstream connection may take to open (TCP connect, through the account's proxy if it has one); then the attempt fails over. A dead host costs this, not `response_header_timeout`.",
    },
    KeyDoc {
        path: "gateway.first_token_timeout",
        default: "0",
        allowed: "0 (off) or 1–3600 seconds",
        description: "Streaming requests: an upstream that has sent no real output (only headers, or events held back such as `response.created`) this long after the request went out is given up and the next account tried; nothing has reached the client yet. Counts from the send, alongside `response_header_timeout`, which still bounds the headers alone.",
    },
    KeyDoc {
        path: "gateway.stream_keepalive_interval",
        default: "10",
        allowed: "0 (off) or 5–30 seconds",
        description: "Streaming requests: after this much silence (before the upstream answers, or between its events) a `: keepalive` SSE comment goes downstream. A Responses WebSocket gets a ping after this much silence instead (during a turn and between turns); a client that leaves two pings in a row unanswered is closed.",
    },
    KeyDoc {
        path: "gateway.stream_data_interval_timeout",
        default: "180",
        allowed: "0 (off) or 30–300 seconds",
        description: "An upstream stream silent this long is given up: before output the next account is tried, after output the stream ends with `response.failed`.",
    },
    KeyDoc {
        path: "gateway.openai_compact_nonstream_keepalive_interval",
        default: "0",
        allowed: "0 (off) or 5–60 seconds",
        description: "Non-stream `/responses/compact`: while waiting, write a `\\n` every interval (blank lines before the JSON body) so proxies do not cut the connection.",
    },
    KeyDoc {
        path: "gateway.nonstream_keepalive_interval",
        default: "0",
        allowed: "0 (off) or 5–60 seconds",
        description: "The same blank-line keepalive for every other non-stream request (non-stream `/responses`).",
    },
    KeyDoc {
        path: "gateway.max_account_switches",
        default: "10",
        allowed: "0–100",
        description: "How many times one request may move to another account after a failure.",
    },
    KeyDoc {
        path: "gateway.max_body_size",
        default: "268435456",
        allowed: "1024–4294967296 bytes",
        description: "Largest request body accepted (after decompression); larger bodies get 413.",
    },
    KeyDoc {
        path: "gateway.upstream_response_read_max_bytes",
        default: "134217728",
        allowed: "1024–4294967296 bytes",
        description: "Largest upstream answer read into memory (JSON answers, streams aggregated for non-stream clients).",
    },
    KeyDoc {
        path: "gateway.sticky_session_ttl",
        default: "3600",
        allowed: "0 (off) or 60–86400 seconds",
        description: "How long a conversation stays bound to the account that served it (refreshed on use). The session is the `session_id`/`session-id` or `conversation_id`/`thread-id` header, else `prompt_cache_key`, scoped by API key.",
    },
    KeyDoc {
        path: "gateway.sticky_slow_ttft_ms",
        default: "0",
        allowed: "0 (off) or 100–600000 milliseconds",
        description: "A binding is released when the bound account's time to first token exceeds this for `sticky_slow_strikes` requests in a row.",
    },
    KeyDoc {
        path: "gateway.sticky_slow_strikes",
        default: "3",
        allowed: "1–100",
        description: "Consecutive slow first tokens that release a sticky binding.",
    },
    KeyDoc {
        path: "gateway.probe_interval",
        default: "60",
        allowed: "0 (off) or 1–3600 seconds",
        description: "How often an account cooling for an error (not for a known quota reset) or disabled at run time is probed with its platform's cheapest request (the model list; a token count on Anthropic), which costs no quota. A pass brings it back at once; a failure keeps it out one more interval, within `max_cooldown`. `subrelay accounts test NAME` and the dashboard's Test button run one on demand.",
    },
    KeyDoc {
        path: "gateway.quota_reserve_percent",
        default: "0",
        allowed: "0 (off) or 1–50 percent",
        description: "Sign-in accounts report how much of their usage windows (about 5 h and 7 d) is used. An account whose tightest window is above 100 − this is not chosen while another account of the same priority has room, and a conversation bound to it moves; when none has room, the least used is chosen. (Among accounts of equal priority, the one with the most room is always preferred, in steps of 10 points; an account at 100 % is avoided even when this is 0.)",
    },
    KeyDoc {
        path: "gateway.queue_wait_timeout",
        default: "30",
        allowed: "0 (no queue) – 600 seconds",
        description: "When every candidate account (or the key) is at its concurrency limit, how long a request waits for a slot before 429.",
    },
    KeyDoc {
        path: "gateway.queue_max_waiting",
        default: "100",
        allowed: "0–100000",
        description: "Requests that may wait for a slot at once; more get 429 at once.",
    },
    KeyDoc {
        path: "gateway.overload_cooldown",
        default: "600",
        allowed: "1–86400 seconds",
        description: "How long an account rests after a 529 (overloaded).",
    },
    KeyDoc {
        path: "gateway.max_cooldown",
        default: "21600",
        allowed: "60–604800 seconds",
        description: "The longest any single failure can cool an account, whatever the upstream's reset headers say.",
    },
    KeyDoc {
        path: "gateway.max_event_bytes",
        default: "16777216",
        allowed: "1024–1073741824 bytes",
        description: "Largest single event of an upstream stream, and largest preamble (events before the first output) held back. Beyond it the attempt fails over when the client has seen no output, else the stream ends in-protocol (`response.failed`, an Anthropic `error` event, a Chat error chunk).",
    },
    KeyDoc {
        path: "gateway.websocket_max_history_bytes",
        default: "33554432",
        allowed: "65536–1073741824 bytes",
        description: "What one Responses WebSocket keeps of its conversation (the input and output items of earlier turns) to rebuild the full request of a turn that sends only new items with `previous_response_id`. A turn that takes the history past it is answered in full, then the socket is closed (1000, the reason names this key): the client reconnects and sends its whole conversation on a new socket.",
    },
    KeyDoc {
        path: "gateway.orphan_read_timeout",
        default: "600",
        allowed: "1–86400 seconds",
        description: "After the client went away, how long the upstream answer is still read to learn its usage; then the attempt is given up, the usage known so far is recorded and the account's slot freed.",
    },
    KeyDoc {
        path: "gateway.orphan_read_max_bytes",
        default: "67108864",
        allowed: "1024–4294967296 bytes",
        description: "After the client went away, how many more bytes of the upstream answer are read to learn its usage; then the same as `gateway.orphan_read_timeout`.",
    },
    KeyDoc {
        path: "upstream.ca_file",
        default: "",
        allowed: "empty or the path of a PEM file of one or more CA certificates (relative to the config file's directory)",
        description: "Extra certificate authorities trusted for upstream TLS, beside the built-in Mozilla root set (webpki-roots): for a provider or gateway with a private CA, or a TLS-inspecting proxy. Used by every upstream connection (relay, proxies, token refresh, sign-in). Read at start; a file that is missing or holds no usable certificate stops the start. Certificate verification cannot be turned off.",
    },
    KeyDoc {
        path: "oauth.openai_token_url",
        default: "https://auth.openai.com/oauth/token",
        allowed: "an http:// or https:// URL",
        description: "Token endpoint for refreshing ChatGPT (Codex) sign-in accounts.",
    },
    KeyDoc {
        path: "oauth.openai_client_id",
        default: "app_EMoamEEZ73f0CkXaXp7hrann",
        allowed: "a non-empty string",
        description: "OAuth client id sent with OpenAI token refreshes.",
    },
    KeyDoc {
        path: "oauth.anthropic_token_url",
        default: "https://console.anthropic.com/v1/oauth/token",
        allowed: "an http:// or https:// URL",
        description: "Token endpoint for refreshing Claude sign-in accounts.",
    },
    KeyDoc {
        path: "oauth.anthropic_client_id",
        default: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
        allowed: "a non-empty string",
        description: "OAuth client id sent with Anthropic token refreshes.",
    },
    KeyDoc {
        path: "oauth.refresh_ahead",
        default: "1800",
        allowed: "0 (only on demand) or 60–86400 seconds",
        description: "Sign-in tokens are refreshed in the background this long before they expire.",
    },
    KeyDoc {
        path: "oauth.openai_authorize_url",
        default: "https://auth.openai.com/oauth/authorize",
        allowed: "an http:// or https:// URL",
        description: "Authorization endpoint the dashboard links to when signing a ChatGPT (Codex) account in (authorization code with PKCE).",
    },
    KeyDoc {
        path: "oauth.openai_redirect_uri",
        default: "http://localhost:1455/auth/callback",
        allowed: "an http:// or https:// URL",
        description: "Redirect URI of the OpenAI sign-in; the user pastes back the URL it led to (or its code).",
    },
    KeyDoc {
        path: "oauth.anthropic_authorize_url",
        default: "https://claude.ai/oauth/authorize",
        allowed: "an http:// or https:// URL",
        description: "Authorization endpoint the dashboard links to when signing a Claude account in (authorization code with PKCE).",
    },
    KeyDoc {
        path: "oauth.anthropic_redirect_uri",
        default: "https://console.anthropic.com/oauth/code/callback",
        allowed: "an http:// or https:// URL",
        description: "Redirect URI of the Anthropic sign-in; the user pastes back the URL it led to (or the code it shows).",
    },
    KeyDoc {
        path: "storage.data_dir",
        default: "./data",
        allowed: "a directory path (created if missing); a relative one is relative to the config file's directory (without a file, or set through the environment: to the working directory)",
        description: "Where subrelay keeps state across restarts: the store (`subrelay.db`: groups, API keys, accounts, rotated sign-in tokens, usage), the usage spool (`usage-spool/`), the generated encryption key (`encryption.key`), the key-hashing and session secrets. Files are owner-only; back the directory up. One subrelay at a time uses it: a second one on the same directory stops at start (advisory lock on `subrelay.lock` inside it).",
    },
    KeyDoc {
        path: "storage.encryption_key",
        default: "",
        allowed: "empty (a key generated into storage.data_dir/encryption.key) or 64 hex digits (inline, env:NAME or file:PATH)",
        description: "AES-256-GCM key that encrypts upstream credentials in the store (and, with `storage.backend: postgres`, the shared key-hashing and session secrets). Keep it with your backups: a store cannot be opened with another key (start-up stops with an error; nothing is re-encrypted or dropped). Required, the same on every instance, when `storage.backend` is postgres.",
    },
    KeyDoc {
        path: "storage.usage_batch_interval_ms",
        default: "500",
        allowed: "10–60000 milliseconds",
        description: "How often recorded usage rows are written to the store in one transaction (sooner when 4,096 are waiting). Until then they are in the append-only spool file, which survives a crash.",
    },
    KeyDoc {
        path: "storage.usage_queue_capacity",
        default: "100000",
        allowed: "100–1000000 rows",
        description: "Usage rows kept in memory while the usage spool cannot be written (a full disk, a read-only file system); a row leaves memory only once it is in the spool. While the spool fails and this many rows wait, new requests are refused with 503 (\"usage cannot be recorded\") instead of being served unrecorded. About 0.5 KiB per row.",
    },
    KeyDoc {
        path: "storage.backend",
        default: "sqlite",
        allowed: "sqlite or postgres",
        description: "Where groups, API keys, accounts, sign-in tokens and usage live. `sqlite`: `subrelay.db` in `storage.data_dir`, for one instance. `postgres`: the database at `storage.postgres_url`, shared by several instances that then act as one gateway (docs/DEPLOY.md, \"Shared store\"); needs `storage.encryption_key` set explicitly. `storage.data_dir` stays per instance (usage spool, lock file).",
    },
    KeyDoc {
        path: "storage.postgres_url",
        default: "",
        allowed: "empty, or a postgres:// URL (inline, env:NAME or file:PATH); required when storage.backend is postgres",
        description: "The PostgreSQL database of `storage.backend: postgres`, e.g. `postgres://subrelay:PASSWORD@db:5432/subrelay` (`?sslmode=require` for TLS). Redacted in `check-config` unless written as a reference. Migrations (`migrations/postgres/`) run at start under an advisory lock.",
    },
    KeyDoc {
        path: "storage.postgres_max_connections",
        default: "10",
        allowed: "1–100 connections",
        description: "Connections each instance keeps to PostgreSQL at most (the usage writer, the admin API, the change poll).",
    },
    KeyDoc {
        path: "storage.change_poll_ms",
        default: "0",
        allowed: "0 (automatic), or 50–600000 milliseconds",
        description: "With `storage.backend: postgres`, how often each instance reads the store's change counter to pick up groups, keys and accounts written through another instance. 0: every 300 ms; every 1000 ms with `state.backend: redis`, where a write is also announced on `{state.redis_prefix}changes` and every instance looks at once (the poll is then only the fallback for a missed message).",
    },
    KeyDoc {
        path: "state.backend",
        default: "local",
        allowed: "local or redis",
        description: "Where runtime state lives (cooldowns, disabled flags, quota, concurrency slots, sticky bindings, per-key request windows (`rpm_limit`) and spending totals (`daily_spend_limit`, `monthly_spend_limit`), dashboard sessions and sign-ins, the token refresh lock): `local` in this process; `redis` in the Redis at `state.redis_url`, shared by every instance using the same Redis and `state.redis_prefix` (docs/DEPLOY.md, \"Shared runtime state\"). If Redis cannot be reached, each instance goes on with its own state, logs a warning and sets `subrelay_state_backend_up` to 0 until it is back.",
    },
    KeyDoc {
        path: "state.redis_url",
        default: "",
        allowed: "a redis:// or rediss:// URL (inline, env:NAME or file:PATH); required with state.backend redis",
        description: "The Redis of `state.backend: redis`: `redis://[user:password@]host:port/db`, or `rediss://` for TLS. Shown redacted.",
    },
    KeyDoc {
        path: "state.redis_prefix",
        default: "'subrelay:'",
        allowed: "up to 64 characters without spaces",
        description: "Prefix of every Redis key and of the pub/sub channel: instances with the same prefix act as one gateway; another prefix keeps a second gateway apart in the same Redis.",
    },
    KeyDoc {
        path: "state.lease_ttl",
        default: "30",
        allowed: "1–3600 seconds",
        description: "With `state.backend: redis`: how long a concurrency slot outlives its instance. Each instance renews the slots it holds every third of this; the slots of an instance that died (SIGKILL, lost machine) come back after at most this long.",
    },
    KeyDoc {
        path: "admin.token",
        default: "",
        allowed: "empty (admin API off) or a secret of at least 16 characters (inline, env:NAME or file:PATH)",
        description: "Bearer token of the admin API (`/admin/api/…`, used by `subrelay accounts`, `subrelay keys`, `subrelay usage`). Without it the admin API is off.",
    },
    KeyDoc {
        path: "admin.session_ttl",
        default: "43200",
        allowed: "10–2592000 seconds",
        description: "How long a dashboard session lasts after sign-in (12 hours by default); the server refuses the session cookie after that, and the browser is sent back to sign-in.",
    },
    KeyDoc {
        path: "admin.audit_retention_days",
        default: "365",
        allowed: "1–36500 days",
        description: "How long the audit trail (`GET /admin/api/audit`, `subrelay audit`, the dashboard's Audit page) keeps a row: who changed which key, account, group or setting, when and from where. Older rows are deleted in the background (at start, then hourly).",
    },
    KeyDoc {
        path: "config.watch",
        default: "false",
        allowed: "true or false",
        description: "Watch the configuration file and reload it when it changes (debounced 500 ms; an editor that replaces the file by renaming counts too), exactly as SIGHUP does: a file that does not validate is refused whole, logged and counted, and the running configuration stays. Needs `--config`.",
    },
    KeyDoc {
        path: "log.format",
        default: "pretty",
        allowed: "pretty or json",
        description: "Log line format on stdout.",
    },
    KeyDoc {
        path: "log.level",
        default: "info",
        allowed: "a level (trace, debug, info, warn, error, off) or a tracing filter whose every directive ends in one, such as `info,subrelay=debug`",
        description: "Which log lines are written. Usage records go to the store; `info,usage=debug` also logs each one as a JSON line under the `usage` target.",
    },
    KeyDoc {
        path: "log.access",
        default: "true",
        allowed: "true or false",
        description: "One access line per request, relayed or refused (401, 404, 413...), admin API and dashboard included, under the target `access` at level info: `request_id route method status key account model duration_ms bytes` (`key` is the key's name, never the key; `-` for what the request did not get to; no query strings). With `log.level: warn`, keep them with `warn,access=info`.",
    },
    KeyDoc {
        path: "telemetry.otlp_endpoint",
        default: "''",
        allowed: "empty (off) or an http:// or https:// URL",
        description: "Exports each request's span (request id, key name, account, attempt) to an OpenTelemetry collector over OTLP/HTTP (protobuf), posted to `<this URL>/v1/traces` in batches from a thread of its own; `http://127.0.0.1:4318` for a local collector. The standard `OTEL_EXPORTER_OTLP_TRACES_HEADERS` and `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT` variables apply.",
    },
    KeyDoc {
        path: "metrics.listen",
        default: "''",
        allowed: "empty (off) or an IP address and port such as 127.0.0.1:9464",
        description: "Serves Prometheus metrics (text exposition) on `http://<listen>/metrics`, on a listener of its own (no API key; keep it private). README, \"Operating subrelay\", lists the series.",
    },
];

pub fn find(path: &str) -> Option<&'static KeyDoc> {
    KEYS.iter().find(|k| k.path == path)
}

/// `docs/CONFIG.md`'s key table, rendered from [`KEYS`].
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | default | allowed | environment variable | what it does |\n|---|---|---|---|---|\n",
    );
    for key in KEYS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} | `{}` | {} |\n",
            key.path,
            key.default,
            key.allowed,
            super::env::env_name(key.path),
            key.description
        ));
    }
    out
}
