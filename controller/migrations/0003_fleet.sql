-- The fleet id: one random id per controller installation, handed to agents
-- at enrollment. Database-side locks and run ledgers are namespaced by it.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta (key, value) VALUES ('fleet_id', lower(hex(randomblob(8))));
