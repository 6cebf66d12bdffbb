-- Schedules and pipelines (ARCHITECTURE.md "Schedules and pipelines").
-- Times are Unix milliseconds (UTC) on the controller's clock.

CREATE TABLE schedules (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    spec          TEXT    NOT NULL,            -- JSON ScheduleSpec
    paused        INTEGER NOT NULL DEFAULT 0,
    paused_at     INTEGER,                     -- the last pause span, for reasons
    resumed_at    INTEGER,
    cursor        INTEGER,                     -- next unprocessed nominal time; NULL: no more
    next_fire_at  INTEGER,                     -- cursor + its jitter
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE paused = 0 AND next_fire_at IS NOT NULL;

-- One row per occurrence, or per range of occurrences with one fate
-- (count > 1). (schedule_id, nominal) is the exactly-once key.
CREATE TABLE occurrences (
    schedule_id   INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    nominal       INTEGER NOT NULL,
    last_nominal  INTEGER,
    count         INTEGER NOT NULL DEFAULT 1,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule','catchup','manual','backfill')),
    state         TEXT    NOT NULL CHECK (state IN ('fired','pending','skipped','missed')),
    reason        TEXT,
    fire_at       INTEGER,
    job_id        INTEGER,
    run_id        INTEGER,
    recorded_at   INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, nominal)
);

CREATE INDEX occurrences_pending ON occurrences (schedule_id, nominal) WHERE state = 'pending';

CREATE TABLE pipelines (
    name        TEXT    PRIMARY KEY,
    spec        TEXT    NOT NULL,              -- JSON PipelineSpec
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE pipeline_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline     TEXT    NOT NULL,
    spec         TEXT    NOT NULL,             -- the pipeline as it was when the run started
    grp          TEXT,                         -- a schedule's group for steps naming none
    state        TEXT    NOT NULL CHECK (state IN ('running','succeeded','failed','cancelled')),
    attempt      INTEGER NOT NULL DEFAULT 1,
    schedule_id  INTEGER,
    nominal_at   INTEGER,
    error        TEXT,
    stopping     TEXT CHECK (stopping IN ('cancelled','failed')), -- ends so once its steps stop
    deadline_at  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);

CREATE UNIQUE INDEX runs_occurrence ON pipeline_runs (schedule_id, nominal_at) WHERE schedule_id IS NOT NULL;
CREATE INDEX runs_deadline ON pipeline_runs (deadline_at) WHERE state = 'running';
CREATE INDEX runs_pipeline ON pipeline_runs (pipeline, id);
CREATE INDEX runs_schedule ON pipeline_runs (schedule_id, state) WHERE schedule_id IS NOT NULL;

-- A step that has been decided: queued (job_id; its state is the job's),
-- or skipped / failed / cancelled without a job. No row: pending.
CREATE TABLE run_steps (
    run_id   INTEGER NOT NULL REFERENCES pipeline_runs (id) ON DELETE CASCADE,
    step     TEXT    NOT NULL,
    state    TEXT    NOT NULL,
    job_id   INTEGER,
    reason   TEXT,
    PRIMARY KEY (run_id, step)
);

-- What made a job, and where it must run.
ALTER TABLE jobs ADD COLUMN schedule_id INTEGER;
ALTER TABLE jobs ADD COLUMN nominal_at INTEGER;
ALTER TABLE jobs ADD COLUMN run_id INTEGER;
ALTER TABLE jobs ADD COLUMN step TEXT;
ALTER TABLE jobs ADD COLUMN pin_agent TEXT;
-- 1 until the timer has acted on the job's end (the next steps of its run,
-- the schedule's pending occurrence): an outbox, so no path that ends a job
-- can forget it, and a crash between the end and the follow-up loses nothing.
ALTER TABLE jobs ADD COLUMN followup INTEGER NOT NULL DEFAULT 0;

CREATE UNIQUE INDEX jobs_occurrence ON jobs (schedule_id, nominal_at) WHERE schedule_id IS NOT NULL AND run_id IS NULL;
CREATE INDEX jobs_schedule ON jobs (schedule_id, state, finished_at) WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_run ON jobs (run_id, step) WHERE run_id IS NOT NULL;
CREATE INDEX jobs_pinned ON jobs (pin_agent) WHERE state = 'queued' AND pin_agent IS NOT NULL;
CREATE INDEX jobs_followup ON jobs (id) WHERE followup = 1 AND state IN ('succeeded','failed','cancelled');
