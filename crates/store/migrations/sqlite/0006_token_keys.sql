-- Which agent key authenticated each issuance (the client's registered key,
-- by RFC 7638 thumbprint) and which key the token is bound to (`cnf.jkt`),
-- so that revoking a key revokes every token it authenticated or binds, and
-- everything exchanged from them. Tokens issued before this are unknown.
ALTER TABLE issued_tokens ADD COLUMN auth_jkt TEXT;
ALTER TABLE issued_tokens ADD COLUMN cnf_jkt TEXT;
CREATE INDEX issued_tokens_auth_jkt ON issued_tokens (auth_jkt);
CREATE INDEX issued_tokens_cnf_jkt ON issued_tokens (cnf_jkt);
