-- The object store (`[stores.NAME]` on an agent host) a job needs, from its
-- spec (`JobSpec::store`: an upload's `store`), like `connection`: a grant
-- goes only to an agent advertising it. NULL for jobs that need none.
ALTER TABLE jobs ADD COLUMN store TEXT;
UPDATE jobs SET store = json_extract(spec, '$.store') WHERE kind = 'upload';
