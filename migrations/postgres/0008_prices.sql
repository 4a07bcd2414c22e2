-- Model prices (the SQLite store's 0008): the config's `prices:` (source `config`) and those set
-- through the admin API (source `admin`), shared by every instance; each write moves the
-- `changes` counter so the others reload them.
CREATE TABLE prices (
    model TEXT PRIMARY KEY,
    input DOUBLE PRECISION NOT NULL,
    cached_input DOUBLE PRECISION,
    output DOUBLE PRECISION NOT NULL,
    cache_creation DOUBLE PRECISION,
    source TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
