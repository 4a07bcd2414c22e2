-- The audit trail (the SQLite store's 0007): one row per admin change. `before_json`/`after_json`
-- are redacted before they get here; `id` is the paging cursor (newest first); old rows are
-- pruned by `at_ms` (admin.audit_retention_days).
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    client TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_at_ms ON audit (at_ms);
