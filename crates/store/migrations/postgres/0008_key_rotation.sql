-- When each signing key starts signing (seconds since the epoch). A new key
-- is published before it signs, so verifiers that cache the JWKS have it
-- before they meet a token it signed. Keys from before rotation existed
-- sign from their creation.
ALTER TABLE signing_keys ADD COLUMN signs_from BIGINT NOT NULL DEFAULT 0;
UPDATE signing_keys SET signs_from = created_at;
