ALTER TABLE agents ADD COLUMN bearer_allowed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN expires_at INTEGER;
ALTER TABLE agents ADD COLUMN parent TEXT;
CREATE INDEX agents_parent ON agents (parent);
