-- The embedded store's latest values are read from the value history itself (issue 14,
-- materialize speed): the history is clustered on (feature version, entity, event time, value
-- hash) (migration 0006), so the newest row of a (feature version, entity) is found by the same
-- seek a separate latest-value table took, and a write no longer keeps a second B-tree in step
-- (an upsert per value: a third of `materialize`'s store time). Every row online_values held was
-- the greatest (event_time, seq) among the history rows of its key (the compare-and-set offered
-- it only stored history rows, and history rows are never deleted), so dropping the table loses
-- nothing. The view of the same name answers what the table did, for anyone who queries the
-- file by hand; the server does not read it. (Its `event_time >= v.event_time` bounds each row's
-- probe to the newer rows of its key; without it each row scanned all of its key's rows.)
DROP TABLE online_values;

CREATE VIEW online_values AS
  SELECT v.feature_id, v.entity_id, v.event_time, v.seq, v.value FROM feature_values v
  WHERE NOT EXISTS (
    SELECT 1 FROM feature_values w
    WHERE w.feature_id = v.feature_id AND w.entity_id = v.entity_id
      AND w.event_time >= v.event_time
      AND (w.event_time > v.event_time OR (w.event_time = v.event_time AND w.seq > v.seq)));
