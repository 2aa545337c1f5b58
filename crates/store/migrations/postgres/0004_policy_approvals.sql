ALTER TABLE agents ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';

CREATE TABLE policy_sets (
    version      BIGSERIAL PRIMARY KEY,
    files        TEXT NOT NULL,
    digest       TEXT NOT NULL,
    policy_count BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE policy_active (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    version      BIGINT NOT NULL REFERENCES policy_sets (version),
    activated_at BIGINT NOT NULL
);

CREATE TABLE approvals (
    id           TEXT PRIMARY KEY,
    agent        TEXT NOT NULL,
    subject      TEXT NOT NULL,
    audience     TEXT NOT NULL,
    scope        TEXT NOT NULL,
    txn          TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    grant_type   TEXT NOT NULL,
    policies     TEXT NOT NULL,
    approvers    TEXT,
    status       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_poll_at BIGINT NOT NULL,
    decided_by   TEXT,
    decided_at   BIGINT,
    reason       TEXT
);
CREATE INDEX approvals_agent ON approvals (agent, status);
CREATE INDEX approvals_status ON approvals (status, created_at);
