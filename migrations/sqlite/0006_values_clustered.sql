-- Value history clustered on its identity (issue 14, materialize speed): a WITHOUT ROWID table
-- whose primary key is the identity of a value (feature version, entity, event time, value
-- hash) replaces the rowid table and its two indexes (feature_values_identity and
-- feature_values_as_of). One B-tree instead of three per stored value; point-in-time and
-- history reads search the same key prefix (feature, entity, event time) and order the rare
-- values sharing an event time by seq.
-- seq is no longer the rowid (AUTOINCREMENT): the next one to assign is kept in
-- value_sequence, starting after the greatest ever assigned, so none is reused.

CREATE TABLE feature_values_clustered (
  feature_id INTEGER NOT NULL,
  entity_id  TEXT    NOT NULL,
  event_time INTEGER NOT NULL,
  value_hash BLOB    NOT NULL,
  seq        INTEGER NOT NULL,
  value      BLOB    NOT NULL,
  PRIMARY KEY (feature_id, entity_id, event_time, value_hash)
) WITHOUT ROWID;

INSERT INTO feature_values_clustered (feature_id, entity_id, event_time, value_hash, seq, value)
  SELECT feature_id, entity_id, event_time, value_hash, seq, value FROM feature_values
  ORDER BY feature_id, entity_id, event_time, value_hash;

CREATE TABLE value_sequence (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  next INTEGER NOT NULL
);
INSERT INTO value_sequence (id, next)
  SELECT 1, max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'feature_values'), 0),
                coalesce((SELECT max(seq) FROM feature_values), 0)) + 1;

DROP TABLE feature_values;
ALTER TABLE feature_values_clustered RENAME TO feature_values;
