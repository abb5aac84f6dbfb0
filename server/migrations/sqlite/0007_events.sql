-- The event log. Each change an agent may care about is written here in the
-- same transaction as the change; the id is its revision, taken from the
-- one `revision` row (so commit order is revision order). The payload holds
-- what a stream resuming from the log needs (JSON; empty for signals).
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT ''
);
