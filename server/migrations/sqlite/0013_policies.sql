-- Cedar authorization policies (signet-server policy create): one row per
-- named source, validated against the Signet schema before it is stored.
-- Every change is an event, so agents get it through Sync at once.
CREATE TABLE policies (
    name       TEXT PRIMARY KEY,
    text       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
