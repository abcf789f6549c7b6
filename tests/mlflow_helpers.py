"""A store with a feature service and a plain-Python model, shared by tests/test_mlflow.py,
the fresh process it loads a model in, and tests/mlflow_timing.py.

The model is a small linear model written with NumPy (no scikit-learn): what matters is that
it is an ordinary user class whose ``predict`` takes the features as a pandas DataFrame.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

import featurelite as fl

#: The features the model uses; "country" enters as an indicator of "DE".
NUMERIC = ["spend_sum_1h", "orders", "basket_share"]

user = fl.Entity("user", join_keys=["user_id"])
request = fl.RequestSource("checkout", {"basket": "float64"})


@fl.featurizer
def basket_share(spend: float, basket: float) -> float:
    return basket / (spend + basket)


def definitions() -> list[Any]:
    stats = fl.FeatureView(
        "user_stats", entities=[user], timestamp_field="ts", ttl="30d",
        schema={"spend": "float64", "orders": "int64", "country": "string"},
        aggregations=[fl.Aggregation("spend", "sum", "1h")],
    )
    shares = fl.OnDemandFeatureView("shares", sources=[stats, request], featurizers={"basket_share": basket_share})
    fraud = fl.FeatureService("fraud", ["user_stats:spend_sum_1h", "user_stats:orders", "user_stats:country",
                                        "shares:basket_share"])
    return [user, stats, shares, fraud]


def build_store(path: str | Path) -> tuple[fl.Store, pa.Table]:
    """A store at ``path`` with events of the last hour, and a training set built through
    the "fraud" service (with a label). Times are relative to now, so the online values a
    model reads are the ones the events give (windows of one hour, ttl of 30 days)."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    store = fl.open(path)
    store.apply(definitions())
    store.ingest("user_stats", pa.table({
        "user_id": [1, 1, 2, 3],
        "spend": [10.0, 20.0, 4.0, 7.5],
        "orders": [1, 2, 1, 5],
        "country": ["NL", "DE", "FR", "DE"],
        "ts": [now - timedelta(minutes=40), now - timedelta(minutes=20), now - timedelta(minutes=30),
               now - timedelta(minutes=10)],
    }))
    spine = pa.table({
        "user_id": [1, 1, 2, 3, 4],
        "event_timestamp": [now - timedelta(minutes=30), now - timedelta(minutes=5), now - timedelta(minutes=25),
                            now - timedelta(minutes=5), now - timedelta(minutes=5)],
        "basket": [5.0, 12.5, 1.0, 3.0, 2.0],
        "label": [0.0, 1.0, 0.0, 1.0, 0.0],
    })
    return store, store.get_historical_features(spine, service="fraud")


def matrix(features: pd.DataFrame) -> np.ndarray:
    numeric = features[NUMERIC].to_numpy(dtype=np.float64, na_value=0.0)
    is_de = (features["country"] == "DE").to_numpy(dtype=np.float64, na_value=0.0)
    return np.column_stack([numeric, is_de, np.ones(len(features))])


class LinearModel:
    """Least squares on the service's features, in the training set's column order."""

    def __init__(self, columns: list[str], weights: np.ndarray) -> None:
        self.columns = columns
        self.weights = weights

    @classmethod
    def fit(cls, training_set: pa.Table) -> LinearModel:
        manifest = fl.Manifest.from_table(training_set)
        features = training_set.select(list(manifest.outputs)).to_pandas()
        labels = training_set.column("label").to_numpy()
        weights, *_ = np.linalg.lstsq(matrix(features), labels, rcond=None)
        return cls(list(features.columns), weights)

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        # A model trained on one column order must be handed the same one.
        assert list(features.columns) == self.columns, (list(features.columns), self.columns)
        return matrix(features) @ self.weights
