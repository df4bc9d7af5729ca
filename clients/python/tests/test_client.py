"""The client against the real binary: register, write, online, historical (Arrow and Parquet on
the wire), typed errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd
import pytest

from feature_store_client import FeatureStore, InvalidRequestError, NotFoundError, UnauthenticatedError

DEFS = """
features:
  - {name: user_age, version: 1, dtype: int64, entity_type: user}
  - {name: user_emb, version: 1, dtype: "float32[]", entity_type: user}
  - {name: user_ltv, version: 1, dtype: float64, entity_type: user, ttl_hours: 24}
  - {name: merchant_risk, version: 1, dtype: float32, entity_type: merchant}
"""


@pytest.fixture(scope="module")
def fs(server: Tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    url, key = server
    client = FeatureStore(url, api_key=key)
    path = tmp_path_factory.mktemp("defs") / "features.yaml"
    path.write_text(textwrap.dedent(DEFS))
    outcome = client.register(str(path))
    assert [o["name"] for o in outcome] == ["user_age", "user_emb", "user_ltv", "merchant_risk"]
    users = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2"],
            "ts": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z", "2024-01-01T00:00:00Z"]),
            "user_age": [30, 31, 40],
            "user_emb": [np.array([0.1, 0.2], dtype=np.float32), np.array([0.3, 0.4], dtype=np.float32), None],
            "user_ltv": [10.5, np.nan, 99.0],
        }
    )
    assert client.write(users, "user", event_time_column="ts") == 7
    merchants = pd.DataFrame({"merchant_id": ["m1"], "ts": ["2024-01-15T00:00:00Z"], "merchant_risk": [0.25]})
    assert client.write(merchants, "merchant", event_time_column="ts") == 1
    return client


def test_register_again_is_existing(fs: FeatureStore, tmp_path: Path) -> None:
    p = tmp_path / "f.yaml"
    p.write_text(textwrap.dedent(DEFS))
    assert {o["status"] for o in fs.register(str(p))} == {"existing"}


def test_online_dict_and_dataframe(fs: FeatureStore) -> None:
    one = fs.get_online_features("u1", ["user_age"])
    assert one["features"]["user_age"] == 31
    df = fs.get_online_features(["u1", "nobody"], ["user_age", "user_emb"], as_dataframe=True)
    assert list(df.columns) == ["entity_id", "user_age", "user_age__status", "user_emb", "user_emb__status"]
    assert df["user_age__status"].tolist() == ["present", "not_found"]


@pytest.mark.parametrize("wire", ["arrow", "parquet"])
def test_historical_point_in_time_dtypes_and_labels(fs: FeatureStore, wire: str) -> None:
    entity_df = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u2", "u9"],
            "merchant_id": ["m1", "m1", "m2", "m1"],
            "event_timestamp": pd.to_datetime(["2024-01-20T00:00:00", "2024-03-01T00:00:00", "2024-01-01T12:00:00", "2024-03-01T00:00:00"], utc=True),
            "label": np.array([1, 0, 1, 0], dtype=np.int64),
            "split": ["train", "train", "test", "test"],
        },
        index=[10, 11, 12, 13],
    )
    out = fs.get_historical_features(entity_df, ["user_age", "user_emb", "user_ltv", "merchant_risk"], wire_format=wire)  # type: ignore[arg-type]
    assert list(out.columns[:5]) == list(entity_df.columns)
    pd.testing.assert_frame_equal(out[entity_df.columns], entity_df)
    assert out["user_age"].tolist()[:3] == [30, 31, 40]
    assert pd.isna(out["user_age"].iloc[3])
    assert str(out["user_age"].dtype) == "Int64"
    assert out["user_age__status"].tolist() == ["present", "present", "present", "not_found"]
    emb = out["user_emb"].iloc[1]
    assert emb.dtype == np.float32 and emb.tolist() == pytest.approx([0.3, 0.4])
    # user_ltv: written at 2024-01-01 with a 24 h TTL; 2024-01-20 is past it
    assert out["user_ltv__status"].tolist() == ["expired", "expired", "present", "not_found"]
    assert out["merchant_risk"].dtype == np.float32
    assert out["merchant_risk__status"].tolist() == ["present", "present", "not_found", "present"]


def test_errors_are_typed_with_the_errors_list(fs: FeatureStore, server: Tuple[str, str]) -> None:
    entity_df = pd.DataFrame({"user_id": ["u1"], "event_timestamp": pd.to_datetime(["2024-01-01"], utc=True)})
    with pytest.raises(NotFoundError) as nf:
        fs.get_historical_features(entity_df, ["no_such_feature"])
    assert nf.value.status == 404 and nf.value.errors and "no_such_feature" in nf.value.errors[0].message
    bad = pd.DataFrame({"user_id": ["u1", "u2"], "event_timestamp": ["2024-01-01T00:00:00Z", "not a time"]})
    with pytest.raises(InvalidRequestError) as ir:
        fs.get_historical_features(bad, ["user_age"])
    assert ir.value.errors[0].path == "rows[1].event_timestamp"
    with pytest.raises(InvalidRequestError) as missing:
        fs.get_historical_features(entity_df, ["merchant_risk"])
    assert "merchant_id" in missing.value.detail
    with pytest.raises(UnauthenticatedError):
        FeatureStore(server[0], api_key="fs_wrong").get_online_features("u1", ["user_age"])
