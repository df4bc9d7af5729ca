"""The feature-store HTTP client."""

from __future__ import annotations

import base64
import io
import math
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Literal, Mapping, Optional, Sequence, Union, overload

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import error_from_problem

_MEDIA = {"arrow": "application/vnd.apache.arrow.stream", "parquet": "application/vnd.apache.parquet"}
_WRITE_BATCH = 10_000
_MAX_SAFE = 2**53 - 1


class FeatureStore:
    """A client for one feature-store server and API key.

    >>> fs = FeatureStore("http://127.0.0.1:8000", api_key="fs_...")
    >>> training = fs.get_historical_features(entity_df, ["user_age", "merchant_risk"])
    """

    def __init__(self, url: str, api_key: str, *, timeout: float = 300.0, client: Optional[httpx.Client] = None) -> None:
        self.url = url.rstrip("/")
        self._http = client or httpx.Client(timeout=timeout)
        self._headers = {"x-api-key": api_key}

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport

    def _request(self, method: str, path: str, *, json: Any = None, content: Optional[bytes] = None, headers: Optional[Dict[str, str]] = None, params: Optional[Dict[str, str]] = None) -> httpx.Response:
        res = self._http.request(method, f"{self.url}{path}", json=json, content=content, headers={**self._headers, **(headers or {})}, params=params)
        if res.status_code >= 400:
            try:
                body: Any = res.json()
            except ValueError:
                body = res.text
            raise error_from_problem(res.status_code, body, res.headers.get("retry-after"))
        return res

    # ------------------------------------------------------------------ reads

    @overload
    def get_online_features(self, entity_ids: str, features: Sequence[str], *, as_dataframe: Literal[False] = ...) -> Dict[str, Any]: ...
    @overload
    def get_online_features(self, entity_ids: Sequence[str], features: Sequence[str], *, as_dataframe: Literal[False] = ...) -> Dict[str, Any]: ...
    @overload
    def get_online_features(self, entity_ids: Union[str, Sequence[str]], features: Sequence[str], *, as_dataframe: Literal[True]) -> pd.DataFrame: ...

    def get_online_features(self, entity_ids: Union[str, Sequence[str]], features: Sequence[str], *, as_dataframe: bool = False) -> Union[Dict[str, Any], pd.DataFrame]:
        """Latest values. One id: the API's object (``features``, ``metadata``); several ids:
        ``{"results": [...]}`` in request order. ``as_dataframe=True``: one row per id with
        ``entity_id``, each feature and ``<feature>__status``."""
        single = isinstance(entity_ids, str)
        body: Dict[str, Any] = {"feature_names": list(features)}
        if single:
            body["entity_id"] = entity_ids
        else:
            body["entity_ids"] = list(entity_ids)
        data = self._request("POST", "/api/v1/features/online", json=body).json()
        if not as_dataframe:
            return data
        results = [data] if single else data["results"]
        rows = []
        for r in results:
            row: Dict[str, Any] = {"entity_id": r["entity_id"]}
            for ref in features:
                row[ref] = r["features"].get(ref)
                row[f"{ref}__status"] = r["metadata"][ref]["status"]
            rows.append(row)
        return pd.DataFrame(rows)

    def get_historical_features(
        self,
        entity_df: pd.DataFrame,
        features: Sequence[str],
        *,
        timestamp_column: Optional[str] = None,
        entity_columns: Optional[Mapping[str, str]] = None,
        wire_format: Literal["arrow", "parquet"] = "arrow",
    ) -> pd.DataFrame:
        """Point-in-time correct training data: ``entity_df`` (a timestamp column, an id column
        per entity type, any other columns) comes back in the same order with, per feature, its
        value as of the row's timestamp and ``<feature>__status`` (present, not_found, expired).
        The entity dataframe travels as Parquet and the answer as Arrow (or Parquet); input
        columns keep their dtypes, integer features with missing values become nullable
        ``Int64``/``Int32``, ``float32[]`` features are arrays of float32."""
        if len(entity_df) == 0:
            raise ValueError("entity_df has no rows")
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(entity_df, preserve_index=False), buf, compression="snappy")
        params: Dict[str, str] = {"feature_names": ",".join(features)}
        if timestamp_column:
            params["timestamp_column"] = timestamp_column
        if entity_columns:
            params["entity_columns"] = ",".join(f"{t}:{c}" for t, c in entity_columns.items())
        res = self._request(
            "POST",
            "/api/v1/features/batch",
            content=buf.getvalue(),
            params=params,
            headers={"content-type": _MEDIA["parquet"], "accept": _MEDIA[wire_format]},
        )
        table = ipc.open_stream(res.content).read_all() if wire_format == "arrow" else pq.read_table(io.BytesIO(res.content))
        return _to_pandas(table, entity_df)

    # ------------------------------------------------------------------ writes

    def write(self, df: pd.DataFrame, entity_type: str, *, event_time_column: Optional[str] = None, entity_column: Optional[str] = None) -> int:
        """Writes every other column of ``df`` as feature values of ``entity_type`` (ids in
        ``entity_column``, default ``<entity_type>_id``, else ``entity_id``; event times in
        ``event_time_column``, default the time of receipt). Missing values (None, NaN, NaT) are
        skipped. Sent in batches of 10,000 rows (each all or nothing). Returns the values accepted."""
        id_col = entity_column or (f"{entity_type}_id" if f"{entity_type}_id" in df.columns else "entity_id")
        if id_col not in df.columns:
            raise ValueError(f"df has no entity id column {id_col!r} (pass entity_column=...)")
        if event_time_column is not None and event_time_column not in df.columns:
            raise ValueError(f"df has no column {event_time_column!r}")
        feature_cols = [c for c in df.columns if c not in (id_col, event_time_column)]
        written = 0
        for start in range(0, len(df), _WRITE_BATCH):
            part = df.iloc[start : start + _WRITE_BATCH]
            records: List[Dict[str, Any]] = []
            ids = part[id_col].tolist()
            times = part[event_time_column].tolist() if event_time_column else None
            cols = {c: part[c].tolist() for c in feature_cols}
            for i, eid in enumerate(ids):
                feats = {c: _json_value(cols[c][i]) for c in feature_cols if not _missing(cols[c][i])}
                if not feats:
                    continue
                rec: Dict[str, Any] = {"entity_id": str(eid), "features": feats}
                if times is not None and not _missing(times[i]):
                    rec["event_time"] = _iso(times[i])
                records.append(rec)
            if records:
                written += int(self._request("POST", "/api/v1/features/write", json={"entity_type": entity_type, "records": records}).json()["written"])
        return written

    def register(self, path_to_yaml: str) -> List[Dict[str, Any]]:
        """Registers the definitions of a YAML file (``features: [...]``, as ``feature-store
        register`` reads). Each definition is its own request (the CLI applies a file all or
        nothing). Returns ``[{"name", "version", "status": "new" | "existing"}]``. Needs PyYAML
        (``pip install 'feature-store-client[yaml]'``)."""
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("register() reads YAML with PyYAML: pip install 'feature-store-client[yaml]'") from e
        with open(path_to_yaml, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
        if not isinstance(doc, dict) or not isinstance(doc.get("features"), list):
            raise ValueError(f"{path_to_yaml}: expected a mapping with a `features` list")
        unsupported = [k for k in ("feature_views", "feature_services") if doc.get(k)]
        if unsupported:
            raise ValueError(f"{path_to_yaml}: {' and '.join(unsupported)} are not supported by register() yet; use `feature-store register`")
        out = []
        for d in doc["features"]:
            res = self._request("POST", "/api/v1/features/register", json=d)
            feat = res.json()["feature"]
            out.append({"name": feat["name"], "version": feat["version"], "status": "new" if res.status_code == 201 else "existing"})
        return out


# ---------------------------------------------------------------------- conversions


def _missing(v: Any) -> bool:
    if v is None or v is pd.NaT:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return False


def _iso(v: Any) -> str:
    if isinstance(v, str):
        return v
    ts = pd.Timestamp(v)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.tz_convert("UTC").isoformat().replace("+00:00", "Z")


def _json_value(v: Any) -> Any:
    """A pandas/numpy cell in the JSON form the API takes."""
    if isinstance(v, (pd.Timestamp, datetime, np.datetime64)):
        return _iso(v)
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) > _MAX_SAFE:
        return str(v)
    return v


_NULLABLE = {pa.int64(): pd.Int64Dtype(), pa.int32(): pd.Int32Dtype(), pa.bool_(): pd.BooleanDtype()}


def _to_pandas(table: pa.Table, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Arrow -> pandas keeping types: input columns get their input dtypes back, integer and
    bool features with missing values become nullable, without them plain numpy."""
    df = table.to_pandas(types_mapper=_NULLABLE.get)
    for name in df.columns:
        if name in entity_df.columns:
            want = entity_df[name].dtype
            if df[name].dtype != want:
                try:
                    df[name] = df[name].astype(want)
                except (TypeError, ValueError):
                    pass
        elif isinstance(df[name].dtype, (pd.Int64Dtype, pd.Int32Dtype, pd.BooleanDtype)) and not df[name].isna().any():
            df[name] = df[name].astype(df[name].dtype.numpy_dtype)
    df.index = entity_df.index
    return df
