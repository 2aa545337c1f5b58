ALTER TABLE audit_log ADD COLUMN txn TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN chain TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_log_txn ON audit_log (txn);

ALTER TABLE issued_tokens ADD COLUMN parent_jti TEXT;
ALTER TABLE issued_tokens ADD COLUMN txn TEXT;
CREATE INDEX issued_tokens_parent ON issued_tokens (parent_jti);
CREATE INDEX issued_tokens_txn ON issued_tokens (txn);

CREATE TABLE delegations (
    from_agent  TEXT NOT NULL,
    to_agent    TEXT NOT NULL,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (from_agent, to_agent)
);
