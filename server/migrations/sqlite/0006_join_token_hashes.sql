-- Signet server schema, version 6: a join token is stored only as the
-- SHA-256 (lowercase hex) of the token, so a copy of the database file
-- attests nothing. Unused tokens issued before this version are dropped:
-- they live minutes, and a plaintext token must not stay in the file.
DROP TABLE join_tokens;
CREATE TABLE join_tokens (
    token_sha256 TEXT PRIMARY KEY,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);
