"""Can Feast 0.67 give point-in-time windowed aggregates for a training set with its local
compute engine? Run INSIDE the Feast venv, on the smallest example:

    <feast-venv>/bin/python benchmarks/feast_aggregations.py WORK_DIR

Standalone (imports Feast, pandas, pyarrow and the standard library, never featurelite).
Three events of one user (amounts 1, 2, 4 at 00:10, 00:40, 01:20) and one entity row at
01:30; ``sum(amount)`` over the hour before it is 6.0 (2 + 4). A ``BatchFeatureView`` with
``aggregations=[Aggregation("amount", "sum", time_window=1h)]`` over a ``FileSource`` is
asked for its training set two ways: ``FeatureStore.get_historical_features`` (what a user
calls) and the local compute engine's own ``get_historical_features`` (the
``HistoricalRetrievalTask`` path, which builds an aggregation node). Prints one JSON object:
per attempt, the value it returned or the error it raised.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
os.environ["TZ"] = "UTC"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("FEAST_USAGE", "False")

import json  # noqa: E402
import shutil  # noqa: E402
import traceback  # noqa: E402
import warnings  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

EXAMPLE: dict[str, Any] = {
    "events": [[1, 1.0, "2024-01-01T00:10:00"], [1, 2.0, "2024-01-01T00:40:00"], [1, 4.0, "2024-01-01T01:20:00"]],
    "entity_row": [1, "2024-01-01T01:30:00"],
    "aggregation": 'Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))',
    "expected": 6.0,
}

_YAML = """\
project: agg_probe
registry: {work}/registry.db
provider: local
offline_store:
    type: duckdb
online_store:
    type: sqlite
    path: {work}/online.db
batch_engine:
    type: local
entity_key_serialization_version: 3
auth:
    type: no_auth
"""


def _error(exc: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}"[:600],
                           "where": traceback.format_exc().strip().splitlines()[-3:]}
    if exc.__context__ is not None and str(exc.__context__):  # raised while handling another: that is the cause
        out["during"] = f"{type(exc.__context__).__name__}: {exc.__context__}"[:600]
    return out


def main(work: Path) -> dict[str, Any]:
    import feast
    import pandas as pd
    from feast import BatchFeatureView, Entity, FeatureStore, Field, FileSource
    from feast.aggregation import Aggregation
    from feast.types import Float64
    from feast.value_type import ValueType

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    events = pd.DataFrame(
        {"user_id": [e[0] for e in EXAMPLE["events"]], "amount": [e[1] for e in EXAMPLE["events"]],
         "ts": pd.to_datetime([e[2] for e in EXAMPLE["events"]])}
    )
    events.to_parquet(work / "events.parquet")
    (work / "feature_store.yaml").write_text(_YAML.format(work=work))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(name="events_source", path=str(work / "events.parquet"), timestamp_field="ts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        view = BatchFeatureView(
            name="payments", entities=[user], source=source, ttl=timedelta(days=30),
            schema=[Field(name="amount", dtype=Float64)],
            aggregations=[Aggregation(column="amount", function="sum", time_window=timedelta(hours=1))],
            udf=lambda df: df, online=True, offline=True,
        )
    out: dict[str, Any] = {"feast": feast.__version__, "example": EXAMPLE, "attempts": {}}
    store = FeatureStore(repo_path=str(work))
    try:
        store.apply([user, source, view])
    except Exception as exc:  # noqa: BLE001 - reported
        out["attempts"]["apply"] = _error(exc)
        return out
    features = [f.name for f in store.get_feature_view("payments").features]
    out["view_features"] = features
    entity_df = pd.DataFrame({"user_id": [EXAMPLE["entity_row"][0]],
                              "event_timestamp": pd.to_datetime([EXAMPLE["entity_row"][1]], utc=True)})
    for ref in ("payments:sum_amount", "payments:amount"):
        try:
            df = store.get_historical_features(entity_df=entity_df, features=[ref]).to_df()
            column = ref.split(":")[1]
            out["attempts"][f"FeatureStore.get_historical_features({ref})"] = {
                "value": None if column not in df else float(df[column].iloc[0]), "columns": list(df.columns),
            }
        except Exception as exc:  # noqa: BLE001 - reported
            out["attempts"][f"FeatureStore.get_historical_features({ref})"] = _error(exc)
    from feast.infra.common.retrieval_task import HistoricalRetrievalTask

    for label, fv in (("the view as defined", view), ("the view read back from the registry",
                                                     store.get_feature_view("payments"))):
        key = f"LocalComputeEngine.get_historical_features ({label})"
        try:
            engine = store._get_provider().batch_engine  # the local compute engine of the repo
            task = HistoricalRetrievalTask(
                project=store.project, entity_df=entity_df, feature_view=fv, full_feature_name=False,
                registry=store.registry, start_time=datetime(2024, 1, 1), end_time=datetime(2024, 1, 2),
            )
            job = engine.get_historical_features(store.registry, task)
            error = job.error() if hasattr(job, "error") else None
            if error is not None:
                raise error
            df = job.to_df()
            out["attempts"][key] = {"columns": list(df.columns), "rows": df.astype(str).to_dict("records")[:5]}
        except Exception as exc:  # noqa: BLE001 - reported
            out["attempts"][key] = _error(exc)
    return out


if __name__ == "__main__":
    result = main(Path(sys.argv[1]).resolve())
    sys.stdout.flush()
    print(json.dumps(result, default=str))
