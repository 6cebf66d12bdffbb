-- Baton controller schema, version 1. Times are Unix milliseconds (UTC).

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    grp               TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    spec              TEXT    NOT NULL,            -- JSON JobSpec
    connection        TEXT,
    priority          INTEGER NOT NULL DEFAULT 0,
    retry             TEXT    NOT NULL,            -- JSON RetryPolicy
    timeout_ms        INTEGER,
    lease_ttl_ms      INTEGER NOT NULL,
    labels            TEXT    NOT NULL DEFAULT '{}',
    idempotency_key   TEXT UNIQUE,
    request_hash      TEXT,
    state             TEXT    NOT NULL CHECK (state IN ('queued','running','succeeded','failed','cancelled')),
    attempts_spent    INTEGER NOT NULL DEFAULT 0,
    grants            INTEGER NOT NULL DEFAULT 0,  -- attempts rows
    last_token        INTEGER NOT NULL DEFAULT 0,  -- highest fencing token ever issued
    not_before        INTEGER NOT NULL,
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    lease_agent       TEXT,
    lease_token       INTEGER,
    lease_expires_at  INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    finished_at       INTEGER,
    result            TEXT,                        -- JSON JobResult
    error             TEXT
);

CREATE INDEX jobs_ready ON jobs (grp, priority DESC, id) WHERE state = 'queued';
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs (state, id);

CREATE TABLE attempts (
    job_id      INTEGER NOT NULL REFERENCES jobs (id),
    number      INTEGER NOT NULL,
    agent_id    TEXT    NOT NULL,
    token       INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    outcome     TEXT,
    error       TEXT,
    progress    TEXT,                              -- JSON Progress
    log_tail    TEXT    NOT NULL DEFAULT '',
    result      TEXT,                              -- JSON JobResult
    PRIMARY KEY (job_id, number)
);

CREATE UNIQUE INDEX attempts_token ON attempts (job_id, token);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    groups        TEXT    NOT NULL,                -- JSON array
    capabilities  TEXT    NOT NULL,                -- JSON Capabilities
    version       TEXT    NOT NULL,
    os            TEXT    NOT NULL,
    free_slots    INTEGER NOT NULL DEFAULT 0,
    metrics       TEXT,
    first_seen    INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);
