-- Sign-in tokens issued by a refresh (access and rotated refresh token, with the fingerprint of
-- the config token their chain started from), sealed with the store's encryption key. A
-- restart must use these, never the spent refresh token the config still names.
CREATE TABLE account_tokens (
    name TEXT PRIMARY KEY,
    sealed BLOB NOT NULL,
    updated_at BIGINT NOT NULL
);
