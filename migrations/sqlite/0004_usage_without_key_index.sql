-- The (key_name, at_ms) index cost more than the rest of the usage store together: every batch
-- of rows touched one of its pages per API key (random pages, read back and rewritten to the WAL),
-- while rows, `usage_at` and the primary key (time-ordered request ids) only grow at their ends.
-- Per-key listings and totals read the time range through `usage_at` instead.
DROP INDEX IF EXISTS usage_key_at;
