-- Model prices (USD per million tokens) the gateway adds to or replaces in its shipped defaults:
-- the config's `prices:` (source `config`, rewritten at every start) and those set through the
-- admin API (source `admin`). A missing `cached_input` is the input price; a missing
-- `cache_creation` is 0.
CREATE TABLE prices (
    model TEXT PRIMARY KEY,
    input DOUBLE PRECISION NOT NULL,
    cached_input DOUBLE PRECISION,
    output DOUBLE PRECISION NOT NULL,
    cache_creation DOUBLE PRECISION,
    source TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
