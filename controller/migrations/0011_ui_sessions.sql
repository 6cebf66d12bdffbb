-- Dashboard sessions (controller/src/ui): the SHA-256 of the session id,
-- the operator token that signed in, and when the session ends. Revoking
-- the token ends its sessions (the lookup joins operator_tokens).
CREATE TABLE ui_sessions (
    id_hash    TEXT PRIMARY KEY,
    token_id   TEXT NOT NULL REFERENCES operator_tokens(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions(expires_at);
