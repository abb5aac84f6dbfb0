-- Node-alias entries: `node` marks an entry whose SPIFFE ID names every
-- agent whose node selectors include all of the entry's selectors.
ALTER TABLE entries ADD COLUMN node BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX entries_node ON entries (node);
