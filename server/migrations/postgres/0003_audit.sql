-- The audit log: one record per security decision, hash-chained
-- (hash = SHA-256(previous hash || record), lowercase hex), in the order
-- the writers committed them (appends lock the table, so the servers of a
-- group write one chain). `record` is the canonical encoding that was
-- hashed. Checkpoints sign (seq, hash) with a server's audit key.
CREATE TABLE audit_log (
    seq    BIGINT PRIMARY KEY,
    record TEXT NOT NULL,
    hash   TEXT NOT NULL
);

CREATE TABLE audit_checkpoints (
    seq        BIGINT PRIMARY KEY,
    hash       TEXT NOT NULL,
    time_ms    BIGINT NOT NULL,
    server_id  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    public_key TEXT NOT NULL,
    signature  TEXT NOT NULL
);
