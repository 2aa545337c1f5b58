-- The key an agent had before its last key rotation, still accepted for
-- client authentication until valid_until (the grace period). One per agent;
-- removed with the agent, so a name registered again inherits nothing.
CREATE TABLE agent_previous_keys (
    agent       TEXT PRIMARY KEY,
    public_jwk  TEXT NOT NULL,
    valid_until INTEGER NOT NULL
);
