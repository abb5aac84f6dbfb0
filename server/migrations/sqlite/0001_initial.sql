-- Signet server schema, version 1. Portable SQL (SQLite and PostgreSQL):
-- integers for times (unix seconds), text for ids, JSON text for lists.

CREATE TABLE join_tokens (
    token      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

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
    created_at    BIGINT NOT NULL
);

CREATE INDEX entries_parent_id ON entries (parent_id);
CREATE INDEX entries_spiffe_id ON entries (spiffe_id);

-- One row: the revision of the last change to entries or agents.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);
