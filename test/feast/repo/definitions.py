# A Feast feature repo as a Feast user writes it: entities with join keys, feature views over a
# push source and file sources, a view keyed by two entities, a feature service spanning two
# entities, and an on-demand view (which has no equivalent, so import-feast must list it).
# `feast apply` puts it in the local registry; `feast registry-dump` | `feature-store
# import-feast` registers it with feature-store; values live in feature-store (the `remote`
# online store).
from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)

driver_source = FileSource(name="driver_source", path="data/driver.parquet", timestamp_field="event_timestamp")
customer_source = FileSource(name="customer_source", path="data/customer.parquet", timestamp_field="event_timestamp")
pair_source = FileSource(name="pair_source", path="data/pair.parquet", timestamp_field="event_timestamp")
driver_push = PushSource(name="driver_push", batch_source=driver_source)

driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days=3650),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
    source=driver_push,
    owner="ml@example.com",
    tags={"team": "ranking"},
)
# a one-hour ttl: a value written in 2024 is OUTSIDE_MAX_AGE here (Feast itself never says so online)
driver_recent = FeatureView(
    name="driver_recent",
    entities=[driver],
    ttl=timedelta(hours=1),
    schema=[Field(name="driver_id", dtype=Int64), Field(name="old_score", dtype=Int64)],
    source=driver_source,
)
customer_stats = FeatureView(
    name="customer_stats",
    entities=[customer],
    ttl=timedelta(days=3650),
    schema=[Field(name="customer_id", dtype=String), Field(name="rating", dtype=Float64)],
    source=customer_source,
)
# a composite key: user_id + merchant_id
pair_stats = FeatureView(
    name="pair_stats",
    entities=[user, merchant],
    ttl=timedelta(days=3650),
    schema=[Field(name="user_id", dtype=String), Field(name="merchant_id", dtype=String), Field(name="spend", dtype=Int64)],
    source=pair_source,
)
ranking = FeatureService(name="ranking", features=[driver_stats, customer_stats[["rating"]]])

bonus = RequestSource(name="bonus", schema=[Field(name="bonus", dtype=Float64)])


@on_demand_feature_view(sources=[driver_stats, bonus], schema=[Field(name="boosted", dtype=Float64)])
def boosted_rate(inputs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"boosted": inputs["conv_rate"] + inputs["bonus"]})
