-- The CA's authorities: X.509 CAs (with their certificates) and JWT keys,
-- their states and taint flags. Private keys are the key manager's, never
-- here. `position` keeps the order the CA holds them in.
CREATE TABLE authorities (
    kind        TEXT NOT NULL,
    id          TEXT NOT NULL,
    state       TEXT NOT NULL,
    tainted     BOOLEAN NOT NULL DEFAULT FALSE,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    certificate BLOB,
    position    INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
