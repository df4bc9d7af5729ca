"""Copies the benchmark's online values from feature-store into Feast's Redis online store.

Usage: python load_feast.py REPO_DIR OUR_URL OUR_KEY ENTITIES. Reads every user's 10 features
from feature-store's online API (1,000 ids per request) and writes them with Feast's own
`write_to_online_store`, so both servers answer the same data from the same Redis.
"""
import json
import sys
import urllib.request

import pandas as pd
from feast import FeatureStore

repo, url, key, entities = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
NAMES = ["age", "lifetime_value", "country", "is_premium", "orders_30d", "avg_order_value", "last_login", "embedding", "clicks_total", "segments"]
store = FeatureStore(repo_path=repo)
written = 0
for start in range(0, entities, 1000):
    ids = [f"user_{i}" for i in range(start, min(entities, start + 1000))]
    req = urllib.request.Request(
        f"{url}/api/v1/features/online",
        data=json.dumps({"entity_ids": ids, "feature_names": NAMES}).encode(),
        headers={"content-type": "application/json", "x-api-key": key},
    )
    results = json.load(urllib.request.urlopen(req))["results"]
    rows = {"user_id": ids, "event_timestamp": []}
    for n in NAMES:
        rows[n] = []
    for r in results:
        rows["event_timestamp"].append(pd.Timestamp(r["metadata"]["age"]["event_time"]))
        for n in NAMES:
            rows[n].append(r["features"][n])
    df = pd.DataFrame(rows)
    df["last_login"] = pd.to_datetime(df["last_login"], utc=True)
    store.write_to_online_store("user_stats", df)
    written += len(ids)
print(written)
