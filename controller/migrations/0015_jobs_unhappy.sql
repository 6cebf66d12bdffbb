-- The listing by state reads an index again for the states an operator
-- looks for among many finished jobs. `jobs_active` already serves queued
-- and running; failed and cancelled jobs, a few among the succeeded ones,
-- get their own partial index (an entry only when a job fails or is
-- cancelled). Without it a `state=failed` page walked every job by id.
-- Succeeded jobs are most of the table: walking by id finds them at once.
CREATE INDEX jobs_unhappy ON jobs (state, id) WHERE state IN ('failed', 'cancelled');
