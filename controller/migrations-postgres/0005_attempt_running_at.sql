-- When the agent's executor started an attempt's work (Unix ms): the grant
-- time plus the delay the agent reports with its heartbeats and completion.
-- NULL until reported, and for attempts of older agents. The dashboard's
-- waterfall splits the attempt into granted and running at it.
ALTER TABLE attempts ADD COLUMN running_at BIGINT;
