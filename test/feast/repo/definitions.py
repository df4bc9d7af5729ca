# A Feast feature repo as a Feast user writes it: entities with join keys, feature views over a
# push source and a file source, a feature service spanning both entities. `feast apply` puts
# it in the local registry; values live in feature-store (the `remote` online store).
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)

driver_source = FileSource(name="driver_source", path="data/driver.parquet", timestamp_field="event_timestamp")
customer_source = FileSource(name="customer_source", path="data/customer.parquet", timestamp_field="event_timestamp")
driver_push = PushSource(name="driver_push", batch_source=driver_source)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="driver_id", dtype=Int64),
        Field(name="conv_rate", dtype=Float64),
        Field(name="trips", dtype=Int64),
        Field(name="old_score", dtype=Int64),
    ],
    source=driver_push,
)
customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=3650),
    schema=[Field(name="customer_id", dtype=String), Field(name="rating", dtype=Float64)],
    source=customer_source,
)
ranking = FeatureService(name="ranking", features=[driver_stats, customer_stats[["rating"]]])

# A view keyed by two entities (a composite key: user_id + merchant_id).
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
pair_source = FileSource(name="pair_source", path="data/pair.parquet", timestamp_field="event_timestamp")
pair_stats = FeatureView(
    name="pair_stats",
    entities=[user, merchant],
    ttl=timedelta(days=3650),
    schema=[Field(name="user_id", dtype=String), Field(name="merchant_id", dtype=String), Field(name="spend", dtype=Int64)],
    source=pair_source,
)
