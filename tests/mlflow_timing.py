"""How much a featurelite MLflow model's predict costs over its parts, on one row.

    python tests/mlflow_timing.py [--calls 3000] [--rounds 5]

Not a test (timings on a shared machine are not pass/fail): it measures the issue's target,
``predict`` on one row within 2x of the user's model's own predict plus the online read.
The store and model are tests/mlflow_helpers.py's (a four-feature service with a windowed
aggregate and an on-demand featurizer; a NumPy linear model). The parts are measured side
by side, interleaved in rounds after a warm-up, on the same Store:

- ``pyfunc predict``: ``mlflow.pyfunc.load_model(...).predict(keys and request data)``;
- ``online read``: ``store.get_online_features(row, service="fraud", request_data=...)``;
- ``model predict``: the user's model's predict on the features DataFrame, a new one each
  call as in serving (pandas answers repeated calls on one DataFrame from caches, so the
  same frame again is also shown, as "model predict, same frame");
- ``features()``: the model's own lookup (read through the manifest, build the DataFrame).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow_helpers import LinearModel, build_store

import featurelite as fl
import featurelite.mlflow as flm


def p50_us(fn: Callable[[], Any], calls: int) -> float:
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="featurelite-mlflow-timing-"))
    store, train = build_store(folder / "shop.duckdb")
    model = LinearModel.fit(train)
    flm.save_model(model, folder / "model", training_set=train, store=store)
    store.close()

    loaded = mlflow.pyfunc.load_model(str(folder / "model"))
    inner = loaded.unwrap_python_model()
    reader = inner.store
    row = pd.DataFrame({"user_id": [1], "basket": [12.5]})
    frame = inner.features(row)
    fresh = iter([inner.features(row) for _ in range(args.calls * (args.rounds + 1))])

    parts: dict[str, Callable[[], Any]] = {
        "pyfunc predict": lambda: loaded.predict(row),
        "online read": lambda: reader.get_online_features(
            {"user_id": [1]}, service="fraud", request_data={"basket": [12.5]}
        ),
        "model predict": lambda: model.predict(next(fresh)),
        "model predict, same frame": lambda: model.predict(frame),
        "features()": lambda: inner.features(row),
        "FeatureliteModel.predict": lambda: inner.predict(None, row),
    }
    for fn in parts.values():  # warm-up
        p50_us(fn, args.calls // 3)
    results: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, fn in parts.items():
            results[name].append(p50_us(fn, args.calls))
    p50 = {name: statistics.median(values) for name, values in results.items()}

    print(f"featurelite {fl.__version__}, mlflow {mlflow.__version__}, pandas {pd.__version__}, "
          f"Python {platform.python_version()} on {platform.machine()}; {args.rounds} rounds of {args.calls} calls")
    for name, value in p50.items():
        print(f"  {name:28s} p50 {value:8.1f} us")
    parts_sum = p50["model predict"] + p50["online read"]
    optimistic = p50["model predict, same frame"] + p50["online read"]
    print(f"  pyfunc predict / (model predict + online read)              = {p50['pyfunc predict'] / parts_sum:.2f}x")
    print(f"  pyfunc predict / (model predict on the same frame + online) = {p50['pyfunc predict'] / optimistic:.2f}x")
    print(f"  MLflow's own share (pyfunc predict - FeatureliteModel.predict) = "
          f"{p50['pyfunc predict'] - p50['FeatureliteModel.predict']:.1f} us")


if __name__ == "__main__":
    sys.exit(main())
