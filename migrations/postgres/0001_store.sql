-- The shared store of `storage.backend: postgres`: the SQLite schema through its migration 0006
-- (migrations/sqlite/), same tables, columns and meaning, in PostgreSQL types (BIGINT, BOOLEAN,
-- BYTEA, DOUBLE PRECISION, TEXT). A PostgreSQL store starts at this schema, so the SQLite
-- history (0002–0006) is folded in; later migrations keep the SQLite numbers (0007 onwards).
-- Applied at start under an advisory lock, so instances starting together do not race.

CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
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

-- `protocols`: SQLite 0005.
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
    credentials BYTEA NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    protocols TEXT
);

-- `client_model`: SQLite 0005; `transport`: 0006. No (key_name, at_ms) index (0004).
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
    client_disconnected BOOLEAN NOT NULL,
    client_model TEXT,
    transport TEXT NOT NULL DEFAULT 'http'
);

CREATE INDEX usage_at ON usage (at_ms);

-- SQLite 0002.
CREATE TABLE account_state (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- SQLite 0003, plus the generation every save moves forward (compare-and-swap: a save that
-- read an older generation than the stored one writes nothing).
CREATE TABLE account_tokens (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    updated_at BIGINT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0
);

-- PostgreSQL only: one counter, bumped in the same transaction as every write of groups, keys
-- and accounts. Each instance polls it and reloads its snapshot when it moved.
CREATE TABLE changes (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    counter BIGINT NOT NULL
);
INSERT INTO changes (id, counter) VALUES (1, 0);
