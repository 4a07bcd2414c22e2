-- A group's routing settings (the SQLite store's 0009): `translate`, and `model_map` and
-- `model_fallback` as JSON text (NULL when empty), so `store copy` moves them unchanged.
ALTER TABLE groups ADD COLUMN translate BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE groups ADD COLUMN model_map TEXT;
ALTER TABLE groups ADD COLUMN model_fallback TEXT;
