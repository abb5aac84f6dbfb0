-- Signet server schema, version 2: the trust bundle's sequence number,
-- which increases on every change of the bundle and survives restarts.

-- One row: the current sequence and a fingerprint of the authorities it
-- numbers (a digest of the CA certificates and JWT keys).
CREATE TABLE bundle_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    sequence    BIGINT NOT NULL,
    fingerprint TEXT NOT NULL
);
