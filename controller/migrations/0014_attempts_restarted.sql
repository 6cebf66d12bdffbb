-- The restart count of `/metrics` (`agent_restart_ends`) is the only reader
-- of attempts by outcome. A full index on `outcome` was written at every
-- grant (a NULL entry) and rewritten at every completion, one more page in
-- each transaction; a partial index holds only the rare restart ends.
DROP INDEX attempts_outcome;
CREATE INDEX attempts_restarted ON attempts (outcome) WHERE outcome = 'agent_restarted';
