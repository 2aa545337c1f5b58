ALTER TABLE agents ADD COLUMN bearer_allowed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN expires_at BIGINT;
ALTER TABLE agents ADD COLUMN parent TEXT;
CREATE INDEX agents_parent ON agents (parent);
