-- A task belongs to the agent whose client_credentials token started it;
-- other agents join it only by token exchange.
CREATE TABLE tasks (
    txn        TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX tasks_owner ON tasks (owner);

-- Tasks started before owners were recorded belong to the client of their
-- first client_credentials token.
INSERT INTO tasks (txn, owner, created_at)
SELECT t.txn, t.client_id, t.issued_at FROM issued_tokens t
WHERE t.txn IS NOT NULL AND t.parent_jti IS NULL AND NOT EXISTS (
    SELECT 1 FROM issued_tokens u
    WHERE u.txn = t.txn AND u.parent_jti IS NULL
      AND (u.issued_at < t.issued_at OR (u.issued_at = t.issued_at AND u.jti < t.jti)));
