-- Drain: an operator stops an agent taking new work; its running jobs go on.
-- NULL = not drained.
ALTER TABLE agents ADD COLUMN drained_at INTEGER;
