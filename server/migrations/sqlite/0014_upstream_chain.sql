-- [upstream_authority.signet]: a downstream CA is sent with the upstream's
-- own intermediates (a nested upstream), kept beside its roots.
ALTER TABLE authorities ADD COLUMN upstream_chain BLOB;
