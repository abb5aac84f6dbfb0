-- Signet server schema, version 10: federation. Entries name the trust
-- domains whose bundles their workloads get; the bundles of those trust
-- domains, set by hand or fetched from their bundle endpoints; and the
-- relationships that say where to fetch them.
ALTER TABLE entries ADD COLUMN federates_with TEXT NOT NULL DEFAULT '[]';

-- One per federated trust domain: its SPIFFE bundle document as stored.
CREATE TABLE federated_bundles (
    trust_domain TEXT PRIMARY KEY,
    document     TEXT NOT NULL,
    sequence     BIGINT NOT NULL,
    -- 'static' (set by hand) or 'endpoint' (fetched).
    source       TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE TABLE federation_relationships (
    trust_domain        TEXT PRIMARY KEY,
    bundle_endpoint_url TEXT NOT NULL,
    -- 'https_spiffe' or 'https_web'.
    profile             TEXT NOT NULL,
    endpoint_spiffe_id  TEXT NOT NULL DEFAULT '',
    -- https_web: PEM CA certificates instead of the system's roots.
    ca_bundle           TEXT NOT NULL DEFAULT '',
    created_at          BIGINT NOT NULL,
    last_fetch_at       BIGINT NOT NULL DEFAULT 0,
    last_error          TEXT NOT NULL DEFAULT ''
);
