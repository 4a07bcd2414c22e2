-- groups[].model_fallback: the model the client asked for, when another one answered (`model`).
-- NULL on every other row.
ALTER TABLE usage ADD COLUMN requested_model TEXT;
