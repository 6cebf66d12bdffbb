-- Fewer index entries written per job. Each entry a job adds or moves is a
-- B-tree page in the WAL of that commit; a lone job's submit-and-grant and
-- its end are two commits, each with its own pages.
--
-- `jobs_state` held every job by (state, id), finished ones included, and
-- moved each job's entry at its grant and at its end. Nothing reads finished
-- jobs through it (the listing's optional state filter walks the table by id,
-- retention walks `jobs_finished`, which the planner had passed over for a
-- sort of every finished job); the active ones serve the queue figures.
DROP INDEX jobs_state;
CREATE INDEX jobs_active ON jobs (state, id) WHERE state IN ('queued', 'running');

-- Only the outcomes something looks up are indexed: the restart reports'
-- count (`/metrics`) and the drills' takeover samples. An index of every
-- attempt's outcome took an entry at each grant (NULL) and moved it at each
-- end, for those two reads.
DROP INDEX attempts_outcome;
CREATE INDEX attempts_restarted ON attempts (job_id) WHERE outcome = 'agent_restarted';
CREATE INDEX attempts_lease_expired ON attempts (job_id, number) WHERE outcome = 'lease_expired';
