-- The audit trail: one row per admin change (admin API, dashboard, CLI, configuration reload).
-- `before_json`/`after_json` are redacted before they get here: no key, token, credential or
-- password is ever stored. `id` is the paging cursor (newest first); old rows are pruned by
-- `at_ms` (admin.audit_retention_days).
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    client TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_at_ms ON audit (at_ms);
