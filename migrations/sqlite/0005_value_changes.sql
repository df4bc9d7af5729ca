-- Which entities each version of the `values` change counter changed, so that other processes
-- forget only those entities from their in-process cache instead of all of it. Written in the
-- committing transaction, beside the values: one row per (tenant, entity type, entity id) of the
-- write, or one row with NULLs (the write changed too many to list: forget everything). The
-- writer keeps the last 1024 versions; a version without rows (pruned, or a binary from before
-- this table) also means everything.
CREATE TABLE value_changes (
  version     INTEGER NOT NULL,
  tenant      TEXT,
  entity_type TEXT,
  entity_id   TEXT
);
CREATE INDEX value_changes_version ON value_changes (version);
