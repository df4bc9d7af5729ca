"""Drives Feast's own SDK (FeatureStore with the `remote` online store) against feature-store.

Usage: python client.py REPO_DIR NOAUTH_REPO_DIR READONLY_REPO_DIR. Prints one JSON object
with what the SDK answered, and the errors it raised where it must fail.
"""
import json
import sys
from datetime import datetime, timezone

import pandas as pd
from feast import FeatureStore
from feast.data_source import PushMode

STATUS = {0: "INVALID", 1: "PRESENT", 2: "NULL_VALUE", 3: "NOT_FOUND", 4: "OUTSIDE_MAX_AGE"}


def answer(resp):
    proto = resp.proto
    names = list(proto.metadata.feature_names.val)
    return {
        "values": resp.to_dict(),
        "statuses": {n: [STATUS[s] for s in proto.results[i].statuses] for i, n in enumerate(names)},
    }


def error_of(fn):
    try:
        fn()
    except Exception as e:  # the SDK raises RuntimeError / PermissionError with the HTTP answer
        return f"{type(e).__name__}: {e}"
    return None


repo, noauth_repo, readonly_repo = sys.argv[1:4]
store = FeatureStore(repo_path=repo)
ts = datetime(2024, 1, 15, 9, 58, tzinfo=timezone.utc)
out = {}

store.write_to_online_store(
    "driver_stats", pd.DataFrame({"driver_id": [1001, 1002], "conv_rate": [0.5, 0.75], "trips": [7, 8], "event_timestamp": [ts, ts]})
)
store.push("driver_push", pd.DataFrame({"driver_id": [1003], "conv_rate": [0.125], "trips": [9], "event_timestamp": [ts]}), to=PushMode.ONLINE)
store.write_to_online_store("driver_recent", pd.DataFrame({"driver_id": [1001, 1003], "old_score": [1, 3], "event_timestamp": [ts, ts]}))
store.write_to_online_store("customer_stats", pd.DataFrame({"customer_id": ["c1"], "rating": [4.5], "event_timestamp": [ts]}))

out["online"] = answer(
    store.get_online_features(
        features=["driver_stats:conv_rate", "driver_stats:trips", "driver_recent:old_score"],
        entity_rows=[{"driver_id": 1001}, {"driver_id": 1003}, {"driver_id": 4242}],
    )
)
out["service"] = answer(
    store.get_online_features(
        features=store.get_feature_service("ranking"),
        entity_rows=[{"driver_id": 1002, "customer_id": "c1"}, {"driver_id": 1001, "customer_id": "nobody"}],
        full_feature_names=True,
    )
)
store.write_to_online_store(
    "pair_stats", pd.DataFrame({"user_id": ["a|b", "a"], "merchant_id": ["c", "b|c"], "spend": [1, 2], "event_timestamp": [ts, ts]})
)
out["composite"] = answer(
    store.get_online_features(
        features=["pair_stats:spend"],
        entity_rows=[{"user_id": "a", "merchant_id": "b|c"}, {"user_id": "a|b", "merchant_id": "c"}, {"user_id": "a", "merchant_id": "b"}],
    )
)
out["noauth_error"] = error_of(
    lambda: FeatureStore(repo_path=noauth_repo).get_online_features(features=["driver_stats:trips"], entity_rows=[{"driver_id": 1001}])
)
out["readonly_read"] = answer(
    FeatureStore(repo_path=readonly_repo).get_online_features(features=["driver_stats:trips"], entity_rows=[{"driver_id": 1001}])
)
out["readonly_write_error"] = error_of(
    lambda: FeatureStore(repo_path=readonly_repo).write_to_online_store(
        "driver_stats", pd.DataFrame({"driver_id": [1001], "conv_rate": [0.0], "trips": [0], "event_timestamp": [ts]})
    )
)
print(json.dumps(out))
