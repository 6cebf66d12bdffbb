-- no-transaction
-- Drills gain the method `controller_crash` (issue 17). SQLite cannot change
-- a CHECK constraint in place: the table is rebuilt (the documented
-- "generalized ALTER TABLE" steps), with foreign keys off so dropping the old
-- table neither fails on nor touches drill_events, which names `drills` and
-- finds the new one after the rename. One transaction: all or nothing.
PRAGMA foreign_keys = OFF;
BEGIN;
CREATE TABLE drills_new (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    grp            TEXT    NOT NULL,
    method         TEXT    NOT NULL CHECK (method IN ('crash','freeze','partition','controller_crash')),
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
    fault_agent    TEXT,                           -- its holder; controller_crash: set at creation
    report         TEXT                            -- JSON DrillReport, once finished
);
INSERT INTO drills_new (id, grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state,
                        created_by, created_at, updated_at, finished_at, fault_token,
                        fault_agent, report)
    SELECT id, grp, method, duration_ms, lease_ttl_ms, rto_ms, job_id, state,
           created_by, created_at, updated_at, finished_at, fault_token, fault_agent, report
    FROM drills;
DROP TABLE drills;
ALTER TABLE drills_new RENAME TO drills;
CREATE INDEX drills_running_job ON drills (job_id) WHERE state = 'running';
COMMIT;
PRAGMA foreign_keys = ON;
