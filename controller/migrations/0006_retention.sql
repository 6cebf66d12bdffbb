-- Retention (job_keep, audit_keep): finished jobs and old audit rows are
-- pruned in bounded batches, oldest first.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX audit_at ON audit (at);
