-- Issue 16: a group's routing settings live with the group, so groups made through the admin API
-- can translate and map model names, and a reload or another instance's change reaches every
-- request through the store. `translate`: `groups[].translate`; `model_map` and
-- `model_fallback`: JSON objects (`{"claude-*": "gpt-5.1-codex"}`, `{"gpt-5": ["gpt-5-mini"]}`),
-- NULL when empty.
ALTER TABLE groups ADD COLUMN translate BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE groups ADD COLUMN model_map TEXT;
ALTER TABLE groups ADD COLUMN model_fallback TEXT;
