# The benchmark's 10 user features as a Feast feature view (same names and types as
# bench/lib/dataset.ts), served by `feast serve` from Feast's Redis online store.
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
source = FileSource(name="user_source", path="data/users.parquet", timestamp_field="event_timestamp")
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="user_id", dtype=String),
        Field(name="age", dtype=Int32),
        Field(name="lifetime_value", dtype=Float64),
        Field(name="country", dtype=String),
        Field(name="is_premium", dtype=Bool),
        Field(name="orders_30d", dtype=Int32),
        Field(name="avg_order_value", dtype=Float32),
        Field(name="last_login", dtype=UnixTimestamp),
        Field(name="embedding", dtype=Array(Float32)),
        Field(name="clicks_total", dtype=Int64),
        Field(name="segments", dtype=Array(String)),
    ],
    source=source,
)
