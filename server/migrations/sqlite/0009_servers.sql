-- Signet server schema, version 9: several servers on one datastore. Each
-- server has an id (kept in its data dir) and its own authorities; the trust
-- bundle is the union of every server's. Authorities stored before this
-- version have no owner ('') until the server starts and takes them over.
ALTER TABLE authorities ADD COLUMN server_id TEXT NOT NULL DEFAULT '';
-- A JWT authority's public key (its JWK), so any server can publish it.
ALTER TABLE authorities ADD COLUMN public_key TEXT;
-- The upstream root an intermediate CA chains to: the bundle holds the root.
ALTER TABLE authorities ADD COLUMN upstream_root BLOB;

-- Authorities revoked for good: a server that still holds one in memory
-- does not store it again.
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

-- The CRL each server signed for one of its X.509 authorities.
CREATE TABLE crls (
    authority_id TEXT PRIMARY KEY,
    server_id    TEXT NOT NULL,
    der          BLOB NOT NULL
);
