-- Identity (issue 3): operator tokens with roles, single-use enrollment tokens,
-- agent secrets, and the audit log. Secrets are stored as SHA-256 hex only.

CREATE TABLE operator_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer','operator','admin')),
    token_hash    TEXT    NOT NULL UNIQUE,
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
);
CREATE UNIQUE INDEX operator_tokens_active_name ON operator_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE enrollment_tokens (
    id            TEXT PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    groups        TEXT    NOT NULL,                -- JSON array
    note          TEXT    NOT NULL DEFAULT '',
    created_by    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER,
    used_by       TEXT,
    revoked_at    INTEGER
);

ALTER TABLE agents ADD COLUMN secret_hash TEXT;
ALTER TABLE agents ADD COLUMN allowed_groups TEXT NOT NULL DEFAULT '[]';
ALTER TABLE agents ADD COLUMN enrolled_at INTEGER;
ALTER TABLE agents ADD COLUMN revoked_at INTEGER;
CREATE UNIQUE INDEX agents_secret ON agents (secret_hash);

CREATE TABLE audit (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    role     TEXT    NOT NULL,
    action   TEXT    NOT NULL,
    target   TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    error    TEXT
);
CREATE INDEX audit_actor ON audit (actor, id);
