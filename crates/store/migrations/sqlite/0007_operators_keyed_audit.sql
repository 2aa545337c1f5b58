-- Every audit record carries an HMAC of its chain hash under a key derived
-- from the master key, which the database never holds. Records written
-- before this are sealed once by the authority at start.
ALTER TABLE audit_log ADD COLUMN mac TEXT NOT NULL DEFAULT '';
-- 1 for a decision an agent's verifying layer reported: the authority vouches
-- only for who reported it, not for what it says.
ALTER TABLE audit_log ADD COLUMN reported INTEGER NOT NULL DEFAULT 0;

-- People who decide approvals, each with their own credential (kept only as
-- its SHA-256) and the approver groups they belong to (a JSON array).
CREATE TABLE operators (
    name         TEXT PRIMARY KEY,
    groups       TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL
);

-- An approval binds the request context and the token lifetime a person
-- saw, and counts against the whole lineage of spawned agents (the
-- top-level ancestor's SPIFFE ID) so spawning children cannot multiply
-- the pending-approval limit.
ALTER TABLE approvals ADD COLUMN request_context TEXT NOT NULL DEFAULT '{}';
ALTER TABLE approvals ADD COLUMN lifetime INTEGER NOT NULL DEFAULT 0;
ALTER TABLE approvals ADD COLUMN lineage TEXT NOT NULL DEFAULT '';
UPDATE approvals SET lineage = agent;
CREATE INDEX approvals_lineage ON approvals (lineage, status);
