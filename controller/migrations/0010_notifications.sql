-- Notifications (issue 18 point 4; ARCHITECTURE.md "Notifications").
-- `notifications` is the outbox of events. The events that follow a state
-- change are written by the triggers below, in the transaction that makes
-- the change (every write path, both backends, nothing to forget). Events
-- that come from time passing (agent offline, schedule stale) are written
-- by the notification service, keyed by `dedup` so every replica and every
-- restart writes one. A delivery is one event for one webhook.

CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    event       TEXT    NOT NULL,
    dedup       TEXT    NOT NULL UNIQUE,   -- one event per cause
    subject     TEXT    NOT NULL,          -- job, run, drill, schedule or agent id
    groups      TEXT    NOT NULL DEFAULT '[]',  -- JSON array (filters)
    labels      TEXT    NOT NULL DEFAULT '{}',  -- JSON object (filters)
    detail      TEXT    NOT NULL DEFAULT '{}',  -- JSON object (the body's `detail`)
    at          INTEGER NOT NULL,
    fanned      INTEGER NOT NULL DEFAULT 0     -- deliveries made for it
);

CREATE INDEX notifications_unfanned ON notifications (id) WHERE fanned = 0;
CREATE INDEX notifications_at ON notifications (at);

CREATE TABLE notification_deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id  INTEGER NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    webhook          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('pending','delivered','failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_at          INTEGER NOT NULL,
    claimed_until    INTEGER,              -- a replica is sending it
    last_status      INTEGER,              -- HTTP status of the last attempt
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (notification_id, webhook)
);

CREATE INDEX deliveries_due ON notification_deliveries (next_at) WHERE state = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id  INTEGER NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    number       INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status       INTEGER,                  -- HTTP status, if an answer came
    error        TEXT,
    ok           INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, number)
);

-- A job ended failed: no attempt left (exhausted, or not retryable).
CREATE TRIGGER notify_job_failed AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'failed' AND OLD.state <> 'failed'
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, labels, detail, at)
    VALUES ('job_failed', 'job_failed:' || NEW.id || ':' || NEW.grants, NEW.id,
            json_array(NEW.grp), NEW.labels,
            json_object('job_id', NEW.id, 'kind', NEW.kind, 'group', NEW.grp,
                        'attempts', NEW.attempts_spent, 'error', NEW.error),
            NEW.updated_at);
END;

-- A job succeeded after at least one failed attempt.
CREATE TRIGGER notify_job_retried AFTER UPDATE OF state ON jobs
WHEN NEW.state = 'succeeded' AND OLD.state <> 'succeeded' AND NEW.attempts_spent > 1
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, labels, detail, at)
    VALUES ('job_succeeded_after_retry', 'job_succeeded_after_retry:' || NEW.id || ':' || NEW.grants,
            NEW.id, json_array(NEW.grp), NEW.labels,
            json_object('job_id', NEW.id, 'kind', NEW.kind, 'group', NEW.grp,
                        'attempts', NEW.attempts_spent),
            NEW.updated_at);
END;

-- A pipeline run ended failed.
CREATE TRIGGER notify_pipeline_failed AFTER UPDATE OF state ON pipeline_runs
WHEN NEW.state = 'failed' AND OLD.state <> 'failed'
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, detail, at)
    VALUES ('pipeline_failed', 'pipeline_failed:' || NEW.id || ':' || NEW.attempt, NEW.id,
            CASE WHEN NEW.grp IS NULL THEN '[]' ELSE json_array(NEW.grp) END,
            json_object('run_id', NEW.id, 'pipeline', NEW.pipeline, 'attempt', NEW.attempt,
                        'error', NEW.error),
            NEW.updated_at);
END;

-- A drill's verdict is failed (or error).
CREATE TRIGGER notify_drill_failed AFTER UPDATE OF state ON drills
WHEN NEW.state IN ('failed','error') AND OLD.state = 'running'
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, detail, at)
    VALUES ('drill_failed', 'drill_failed:' || NEW.id, NEW.id, json_array(NEW.grp),
            json_object('drill_id', NEW.id, 'method', NEW.method, 'group', NEW.grp,
                        'verdict', NEW.state),
            NEW.updated_at);
END;

-- Occurrences recorded missed (one event per row: a range is one event).
CREATE TRIGGER notify_missed_insert AFTER INSERT ON occurrences
WHEN NEW.state = 'missed'
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, labels, detail, at)
    SELECT 'occurrence_missed', 'occurrence_missed:' || NEW.schedule_id || ':' || NEW.nominal,
           s.name,
           CASE WHEN json_extract(s.spec, '$.group') IS NULL THEN '[]'
                ELSE json_array(json_extract(s.spec, '$.group')) END,
           COALESCE(json_extract(s.spec, '$.job.labels'), '{}'),
           json_object('schedule', s.name, 'nominal_at', NEW.nominal,
                       'last_nominal_at', NEW.last_nominal, 'count', NEW.count,
                       'reason', NEW.reason),
           NEW.recorded_at
    FROM schedules s WHERE s.id = NEW.schedule_id;
END;

CREATE TRIGGER notify_missed_update AFTER UPDATE OF state ON occurrences
WHEN NEW.state = 'missed' AND OLD.state <> 'missed'
BEGIN
    INSERT OR IGNORE INTO notifications (event, dedup, subject, groups, labels, detail, at)
    SELECT 'occurrence_missed', 'occurrence_missed:' || NEW.schedule_id || ':' || NEW.nominal,
           s.name,
           CASE WHEN json_extract(s.spec, '$.group') IS NULL THEN '[]'
                ELSE json_array(json_extract(s.spec, '$.group')) END,
           COALESCE(json_extract(s.spec, '$.job.labels'), '{}'),
           json_object('schedule', s.name, 'nominal_at', NEW.nominal,
                       'last_nominal_at', NEW.last_nominal, 'count', NEW.count,
                       'reason', NEW.reason),
           NEW.recorded_at
    FROM schedules s WHERE s.id = NEW.schedule_id;
END;
