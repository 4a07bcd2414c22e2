-- The embedded store: groups, API keys (keyed hashes only), accounts (credentials sealed with
-- AES-256-GCM before they reach SQL), usage rows (one per request, keyed by the request id).
-- Types are chosen so the PostgreSQL migrations of a later issue can mirror them one to one.

CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    name TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    suffix TEXT NOT NULL,
    group_name TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    expires_at BIGINT,
    concurrency BIGINT NOT NULL,
    rpm_limit BIGINT NOT NULL,
    daily_spend_limit DOUBLE PRECISION,
    monthly_spend_limit DOUBLE PRECISION,
    allowed_models TEXT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    name TEXT PRIMARY KEY,
    platform TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    chatgpt_account_id TEXT,
    expires_at BIGINT,
    priority BIGINT NOT NULL,
    concurrency BIGINT NOT NULL,
    groups TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    models TEXT,
    model_map TEXT NOT NULL,
    credentials BLOB NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE usage (
    request_id TEXT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    key_name TEXT NOT NULL,
    account TEXT,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    stream BOOLEAN NOT NULL,
    status INTEGER NOT NULL,
    success BOOLEAN NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_creation_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    priced BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL,
    ttft_ms BIGINT,
    attempts INTEGER NOT NULL,
    client_disconnected BOOLEAN NOT NULL
);

CREATE INDEX usage_at ON usage (at_ms);
CREATE INDEX usage_key_at ON usage (key_name, at_ms);
