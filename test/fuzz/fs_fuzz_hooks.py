"""schemathesis hooks: serializers for the batch route's dataframe bodies (NDJSON rows; Parquet
as raw bytes, which the server must refuse with a 400 unless they are a Parquet file)."""

import json
from typing import Any

import schemathesis

schemathesis.serializer.alias("application/vnd.apache.parquet", "application/octet-stream")


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: Any, value: Any) -> dict:
    if isinstance(value, bytes):
        return {"data": value}
    rows = value if isinstance(value, list) else [value]
    return {"data": "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8")}
