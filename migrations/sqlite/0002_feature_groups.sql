-- Feature views (a named group of one entity type's features) and feature services (a named
-- set of feature references, possibly spanning entity types), versioned like features.
-- `spec` is JSON: {"entity_type"?, "join_keys"?, "features": [REF...], "push_source"?}.
CREATE TABLE feature_groups (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant      TEXT    NOT NULL,
  kind        TEXT    NOT NULL CHECK (kind IN ('view', 'service')),
  name        TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  spec        TEXT    NOT NULL,
  description TEXT,
  owner       TEXT,
  tags        TEXT    NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  UNIQUE (tenant, kind, name, version)
);
