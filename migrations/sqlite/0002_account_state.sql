-- Runtime state of an account worth keeping across restarts (a disable with its reason, a rate
-- limit until its reset, the last quota snapshot), as JSON. `credential` is a keyed hash of the
-- credential the state was observed with: a new credential starts fresh.
CREATE TABLE account_state (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
