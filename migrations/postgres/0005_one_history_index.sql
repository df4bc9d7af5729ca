-- feature_values keeps one index (issue 14, materialize speed): feature_values_as_of
-- (feature_id, entity_id, event_time DESC, seq DESC) is dropped. The identity index (feature_id,
-- entity_id, event_time, value_hash) has the same leading columns, so "as of T" reads it
-- backwards from (feature, entity, T) and orders the rare values sharing an event time by seq
-- (an incremental sort of that one group); history reads scan the same key range. Every stored
-- value then writes one index entry instead of two.
DROP INDEX feature_values_as_of;
