-- Feature views (a named group of one entity type's features) and feature services (a named
-- set of feature references, possibly spanning entity types), versioned like features.
-- `spec`: {"entity_type"?, "join_keys"?, "features": [REF...], "push_source"?}.
CREATE TABLE feature_groups (
  id          bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant      text    NOT NULL,
  kind        text    NOT NULL CHECK (kind IN ('view', 'service')),
  name        text    NOT NULL,
  version     integer NOT NULL,
  spec        jsonb   NOT NULL,
  description text,
  owner       text,
  tags        jsonb   NOT NULL DEFAULT '{}',
  created_at  bigint  NOT NULL,
  updated_at  bigint  NOT NULL,
  UNIQUE (tenant, kind, name, version)
);
