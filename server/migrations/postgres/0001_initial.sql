-- Signet server schema on PostgreSQL, version 1: what SQLite's migrations
-- 0001-0009 make, in one step. Times are unix seconds, ids text, lists JSON
-- text, as in SQLite, so both backends read and write the same values.

-- Join tokens, stored only as the SHA-256 (lowercase hex) of the token.
CREATE TABLE join_tokens (
    token_sha256 TEXT PRIMARY KEY,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);

CREATE TABLE agents (
    spiffe_id        TEXT PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    serial           TEXT NOT NULL,
    expires_at       BIGINT NOT NULL,
    banned           BOOLEAN NOT NULL DEFAULT FALSE,
    attested_at      BIGINT NOT NULL,
    selectors        TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE entries (
    id            TEXT PRIMARY KEY,
    spiffe_id     TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    selectors     TEXT NOT NULL,
    x509_svid_ttl BIGINT NOT NULL DEFAULT 0,
    jwt_svid_ttl  BIGINT NOT NULL DEFAULT 0,
    dns_names     TEXT NOT NULL DEFAULT '[]',
    hint          TEXT NOT NULL DEFAULT '',
    admin         BOOLEAN NOT NULL DEFAULT FALSE,
    downstream    BOOLEAN NOT NULL DEFAULT FALSE,
    revision      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- A node-alias entry (its SPIFFE ID names agents).
    node          BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);
-- One parent's entries in creation order, straight from the index.
CREATE INDEX entries_parent_created ON entries (parent_id, created_at, id);
CREATE INDEX entries_node ON entries (node);

-- One row: the revision of the last event. Every transaction that writes
-- events locks it first, so writers serialize on it and commit order is
-- revision order on every server.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

-- One row: the trust bundle's sequence and a fingerprint of the bundle.
CREATE TABLE bundle_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    sequence    BIGINT NOT NULL,
    fingerprint TEXT NOT NULL
);

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

-- The event log; the id is the revision.
CREATE TABLE events (
    id      BIGINT PRIMARY KEY,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT ''
);

-- Every server's authorities; private keys stay with their server.
CREATE TABLE authorities (
    kind          TEXT NOT NULL,
    id            TEXT NOT NULL,
    server_id     TEXT NOT NULL,
    state         TEXT NOT NULL,
    tainted       BOOLEAN NOT NULL DEFAULT FALSE,
    not_before    BIGINT NOT NULL,
    not_after     BIGINT NOT NULL,
    certificate   BYTEA,
    public_key    TEXT,
    upstream_root BYTEA,
    position      INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE revoked_authorities (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);

CREATE TABLE servers (
    id         TEXT PRIMARY KEY,
    hostname   TEXT NOT NULL,
    address    TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);

CREATE TABLE crls (
    authority_id TEXT PRIMARY KEY,
    server_id    TEXT NOT NULL,
    der          BYTEA NOT NULL
);
