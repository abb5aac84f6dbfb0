-- Signet server schema, version 3: every issued credential (so a revocation
-- knows its expiry and issuer) and the revocations themselves. Rows are
-- dropped once the credential they name has expired.

CREATE TABLE issued_x509 (
    serial       TEXT PRIMARY KEY,
    spiffe_id    TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX issued_x509_expires_at ON issued_x509 (expires_at);

CREATE TABLE issued_jwt (
    jti        TEXT PRIMARY KEY,
    spiffe_id  TEXT NOT NULL,
    kid        TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX issued_jwt_expires_at ON issued_jwt (expires_at);

-- kind: 'x509' (id = lowercase hex serial) or 'jwt' (id = jti).
CREATE TABLE revocations (
    kind         TEXT NOT NULL,
    id           TEXT NOT NULL,
    authority_id TEXT NOT NULL,
    reason       TEXT NOT NULL,
    revoked_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
