-- PostgreSQL schema: registry, API keys, change counters, value history and latest values.
-- Times are epoch milliseconds in bigint columns, exactly as in the embedded schema; seq is the
-- server-assigned write sequence.

CREATE TABLE feature_definitions (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant      text             NOT NULL,
  name        text             NOT NULL,
  version     integer          NOT NULL,
  dtype       text             NOT NULL,
  entity_type text             NOT NULL,
  ttl_hours   double precision,
  description text,
  owner       text,
  tags        jsonb            NOT NULL DEFAULT '{}',
  created_at  bigint           NOT NULL,
  updated_at  bigint           NOT NULL,
  UNIQUE (tenant, name, version)
);

-- Only the SHA-256 of a key is stored.
CREATE TABLE api_keys (
  id         text   PRIMARY KEY,
  tenant     text   NOT NULL,
  scopes     text[] NOT NULL,
  hash       text   NOT NULL UNIQUE,
  prefix     text   NOT NULL,
  created_at bigint NOT NULL,
  expires_at bigint,
  revoked_at bigint
);
CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);

-- Bumped by registry and key writers in their own transaction, so other processes notice
-- changes even when they missed the NOTIFY. Value writes only NOTIFY (a counter row would
-- serialise every write transaction).
CREATE TABLE change_counters (
  kind    text   PRIMARY KEY,
  version bigint NOT NULL
);
INSERT INTO change_counters (kind, version) VALUES ('definitions', 0), ('keys', 0);

CREATE SEQUENCE feature_values_seq AS bigint;

-- Every accepted value, range-partitioned by event time (the application creates monthly
-- partitions ahead of time and on demand; the DEFAULT partition catches anything else, so no
-- write ever fails for lack of a partition). An identical re-send (same feature version,
-- entity, event time and value hash) is not stored again. Nothing but the partition
-- maintenance names a partition, so a TimescaleDB hypertable on event_time (integer time,
-- chunk_time_interval => 2592000000) can replace this table and its maintenance.
CREATE TABLE feature_values (
  feature_id bigint NOT NULL,
  entity_id  text   NOT NULL,
  event_time bigint NOT NULL,
  seq        bigint NOT NULL DEFAULT nextval('feature_values_seq'),
  value_hash bytea  NOT NULL CHECK (octet_length(value_hash) = 16),
  value      bytea  NOT NULL
) PARTITION BY RANGE (event_time);
ALTER SEQUENCE feature_values_seq OWNED BY feature_values.seq;

CREATE UNIQUE INDEX feature_values_identity ON feature_values (feature_id, entity_id, event_time, value_hash);
-- "as of T": the first entry at or below (T, +inf) is the answer.
CREATE INDEX feature_values_as_of ON feature_values (feature_id, entity_id, event_time DESC, seq DESC);

CREATE TABLE feature_values_default PARTITION OF feature_values DEFAULT;

-- The current value per feature version and entity: greatest (event_time, seq). Only the
-- primary key is indexed, so replacing a value is a HOT update; the fill factor leaves room.
CREATE TABLE online_values (
  feature_id bigint NOT NULL,
  entity_id  text   NOT NULL,
  event_time bigint NOT NULL,
  seq        bigint NOT NULL,
  value      bytea  NOT NULL,
  PRIMARY KEY (feature_id, entity_id)
) WITH (fillfactor = 90);
