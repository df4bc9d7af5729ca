-- Embedded (SQLite) schema: registry, API keys, value history and latest values.
-- Times are epoch milliseconds; seq is the server-assigned write sequence.

CREATE TABLE feature_definitions (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant      TEXT    NOT NULL,
  name        TEXT    NOT NULL,
  version     INTEGER NOT NULL,
  dtype       TEXT    NOT NULL,
  entity_type TEXT    NOT NULL,
  ttl_hours   REAL,
  description TEXT,
  owner       TEXT,
  tags        TEXT    NOT NULL DEFAULT '{}',
  created_at  INTEGER NOT NULL,
  updated_at  INTEGER NOT NULL,
  UNIQUE (tenant, name, version)
);

CREATE TABLE api_keys (
  id         TEXT    PRIMARY KEY,
  tenant     TEXT    NOT NULL,
  scopes     TEXT    NOT NULL,
  hash       TEXT    NOT NULL UNIQUE,
  prefix     TEXT    NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Every accepted value. An identical re-send (same feature version, entity, event time and
-- value hash) is not stored again.
CREATE TABLE feature_values (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  feature_id INTEGER NOT NULL,
  entity_id  TEXT    NOT NULL,
  event_time INTEGER NOT NULL,
  value_hash BLOB    NOT NULL,
  value      BLOB    NOT NULL
);
CREATE UNIQUE INDEX feature_values_identity ON feature_values (feature_id, entity_id, event_time, value_hash);
CREATE INDEX feature_values_as_of ON feature_values (feature_id, entity_id, event_time, seq);

-- The current value per feature version and entity: greatest (event_time, seq).
CREATE TABLE online_values (
  feature_id INTEGER NOT NULL,
  entity_id  TEXT    NOT NULL,
  event_time INTEGER NOT NULL,
  seq        INTEGER NOT NULL,
  value      BLOB    NOT NULL,
  PRIMARY KEY (feature_id, entity_id)
) WITHOUT ROWID;

-- Bumped by every writer in its own transaction, so other processes notice changes.
CREATE TABLE change_counters (
  kind    TEXT    PRIMARY KEY,
  version INTEGER NOT NULL
);
INSERT INTO change_counters (kind, version) VALUES ('definitions', 0), ('keys', 0), ('values', 0);
