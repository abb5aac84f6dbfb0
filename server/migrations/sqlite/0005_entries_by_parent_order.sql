-- Signet server schema, version 5: entries of one parent in creation order
-- straight from an index, so a Sync snapshot streams its first rows at once
-- instead of sorting every row of the agent first. It covers every lookup
-- the (parent_id) index served.
CREATE INDEX entries_parent_created ON entries (parent_id, created_at, id);
DROP INDEX entries_parent_id;
