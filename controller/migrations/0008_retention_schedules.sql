-- Retention of schedule occurrences and pipeline runs (job_keep): old rows
-- are pruned in bounded batches, oldest first (ARCHITECTURE.md "Retention").

-- The totals of pruned occurrences, per schedule and state: a schedule's
-- counts and baton_schedule_occurrences_total never go down when old
-- records go.
CREATE TABLE occurrences_pruned (
    schedule_id  INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    state        TEXT    NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, state)
);

CREATE INDEX occurrences_recorded ON occurrences (recorded_at);
CREATE INDEX runs_finished ON pipeline_runs (finished_at) WHERE finished_at IS NOT NULL;
