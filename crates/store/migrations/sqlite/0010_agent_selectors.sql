-- Workload API registration entries: the selectors (JSON list of text) a
-- local process must have to get the agent's SVIDs; empty for none.
ALTER TABLE agents ADD COLUMN selectors TEXT NOT NULL DEFAULT '[]';
CREATE INDEX agents_with_selectors ON agents (name) WHERE selectors <> '[]';
