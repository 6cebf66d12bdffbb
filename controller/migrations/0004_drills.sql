-- Failover drills (issue 6). Times are Unix milliseconds (UTC).
CREATE TABLE drills (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    grp            TEXT    NOT NULL,
    method         TEXT    NOT NULL CHECK (method IN ('crash','freeze','partition')),
    duration_ms    INTEGER NOT NULL,
    lease_ttl_ms   INTEGER NOT NULL,
    rto_ms         INTEGER NOT NULL,
    job_id         INTEGER REFERENCES jobs (id),
    state          TEXT    NOT NULL CHECK (state IN ('running','passed','failed','error')),
    created_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    fault_token    INTEGER,                        -- the lease the fault was sent to
    fault_agent    TEXT,
    report         TEXT                            -- JSON DrillReport, once finished
);

CREATE INDEX drills_running_job ON drills (job_id) WHERE state = 'running';

-- The timeline. One row per (drill, kind, attempt): derived events are
-- inserted idempotently as the drill's job moves.
CREATE TABLE drill_events (
    drill_id  INTEGER NOT NULL REFERENCES drills (id),
    at        INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    attempt   INTEGER NOT NULL DEFAULT 0,
    agent     TEXT,
    detail    TEXT,
    PRIMARY KEY (drill_id, kind, attempt)
);

-- Takeover measurements (metrics) look up lease expiries.
CREATE INDEX attempts_outcome ON attempts (outcome);
