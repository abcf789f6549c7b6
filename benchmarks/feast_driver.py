"""The Feast side of the side-by-side benchmark, run INSIDE the Feast venv.

    <feast-venv>/bin/python benchmarks/feast_driver.py CONFIG.json

Standalone: imports only Feast, pyarrow, numpy, pandas and the standard library, never
featurelite (the venv does not have it). Prints one JSON object on stdout; everything
Feast prints goes to stderr. See :func:`main` for the config keys and the JSON layout.

The Feast repo is ``config["work"]`` with Feast's local defaults: provider ``local``,
offline store ``duckdb`` over a ``FileSource`` on the history Parquet, online store
``sqlite`` at ``work/online.db``, a file registry at ``work/registry.db``; entity ``user``
(join key ``user_id``), feature view ``user_stats`` (``f0``..``f9``, float64, ttl 0 =
no expiry) and an on-demand feature view ``ratios`` in python mode computing
``ratio = f0 / (f1 + 1.0)`` per row.

Tasks (``config["tasks"]``, run in this order whatever the order given): setup,
materialize, online_single, online_batch, online_odfv, training, training_sets,
cold_start, serve_http, footprint, cases (tiny inputs where Feast and featurelite may
differ, each in its own repo under ``work/cases``; see :meth:`Driver.cases`).
Each catches its own exceptions and reports ``{"error": ...}``. When an online task runs,
the online values of ``request_keys[:1000]`` are also written to ``work/feast_online.json``
(key ``online_dump`` of the output).
"""

from __future__ import annotations

import os
import sys

# The script's folder (benchmarks/, with modules named config, data, model, ...) must not
# shadow anything Feast or its dependencies import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

# Before Feast is imported: naive timestamps in the data are UTC (DuckDB casts naive to
# TIMESTAMPTZ in the session's time zone), and no progress bars on stderr.
os.environ["TZ"] = "UTC"
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("FEAST_USAGE", "False")

import contextlib
import gc
import http.client
import json
import math
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

if hasattr(time, "tzset"):
    time.tzset()

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TASKS = (
    "setup", "materialize", "online_single", "online_batch", "online_odfv", "training", "training_sets", "cold_start",
    "serve_http", "footprint", "cases",
)
ONLINE_TASKS = ("online_single", "online_batch", "online_odfv")
PROJECT = "featurelite_bench"
ENTITY = "user"
KEY = "user_id"
VIEW = "user_stats"
TS = "ts"
ODFV = "ratios"
ODFV_FEATURE = "ratio"
ODFV_REF = f"{ODFV}:{ODFV_FEATURE}"
HTTP_CLIENTS = 4
#: Percentiles kept of every latency distribution (as benchmarks/measure.py).
QUANTILES = [*range(0, 100, 2), 99, 99.5, 99.9, 100]
ONLINE_DUMP_KEYS = 1_000

# -- the repo ---------------------------------------------------------------------------

_FEATURE_STORE_YAML = """\
project: {project}
registry: {registry}
provider: local
offline_store:
    type: duckdb
online_store:
    type: sqlite
    path: {online}
entity_key_serialization_version: 3
auth:
    type: no_auth
"""

_DEFINITIONS = '''\
"""Feast definitions of the featurelite benchmark (written by benchmarks/feast_driver.py)."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feast.value_type import ValueType

user = Entity(name={entity!r}, join_keys=[{key!r}], value_type=ValueType.INT64)

user_stats_source = FileSource(name="user_stats_source", path={history!r}, timestamp_field={ts!r})

user_stats = FeatureView(
    name={view!r},
    entities=[user],
    ttl=timedelta(0),  # 0: the values never expire
    schema=[{fields}],
    online=True,
    source=user_stats_source,
)


@on_demand_feature_view(
    sources=[user_stats[["f0", "f1"]]],
    schema=[Field(name={odfv_feature!r}, dtype=Float64)],
    mode="python",
)
def {odfv}(inputs: dict) -> dict:
    return {{
        {odfv_feature!r}: [
            None if a is None or b is None else a / (b + 1.0) for a, b in zip(inputs["f0"], inputs["f1"])
        ]
    }}


OBJECTS = [user, user_stats_source, user_stats, {odfv}]
'''

_EXTRA_VIEW = '''
{name}_source = FileSource(name="{name}_source", path={path!r}, timestamp_field={ts!r})
{name} = FeatureView(
    name={name!r}, entities=[user], ttl=timedelta(0), schema=[{fields}], online=True, source={name}_source,
)
OBJECTS += [{name}_source, {name}]
'''


def _refs(features: list[str]) -> list[str]:
    return [f"{VIEW}:{f}" for f in features]


def _write_repo(cfg: Mapping[str, Any]) -> Path:
    work = Path(cfg["work"]).resolve()
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("registry.db", "online.db", "definitions.py", "feature_store.yaml"):
        (work / stale).unlink(missing_ok=True)
    shutil.rmtree(work / "__pycache__", ignore_errors=True)
    (work / "feature_store.yaml").write_text(
        _FEATURE_STORE_YAML.format(project=PROJECT, registry=work / "registry.db", online=work / "online.db")
    )
    def fields(names: list[str]) -> str:
        return ", ".join(f"Field(name={f!r}, dtype=Float64)" for f in names)

    text = _DEFINITIONS.format(
        entity=ENTITY, key=KEY, history=str(Path(cfg["history_parquet"]).resolve()), ts=TS, view=VIEW,
        fields=fields(cfg["features"]), odfv=ODFV, odfv_feature=ODFV_FEATURE,
    )
    for extra in cfg.get("extra_views", []):  # more views over the same entity, for training sets
        text += _EXTRA_VIEW.format(
            name=extra["name"], path=str(Path(extra["parquet"]).resolve()), ts=TS, fields=fields(extra["features"])
        )
    (work / "definitions.py").write_text(text)
    return work


def _load_definitions(work: Path) -> list[Any]:
    import importlib.util

    spec = importlib.util.spec_from_file_location("featurelite_bench_feast_definitions", work / "definitions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.OBJECTS)


# -- measuring --------------------------------------------------------------------------


def _latency_summary(samples_ns: np.ndarray) -> dict[str, Any]:
    """p50 / p99 / mean / min / max in microseconds (as benchmarks/measure.py)."""
    us = samples_ns.astype(np.float64) / 1_000.0
    return {
        "iterations": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "min_us": float(us.min()),
        "max_us": float(us.max()),
        "quantiles_us": [float(q) for q in np.percentile(us, QUANTILES)],
    }


def _alternate(calls: Mapping[str, Callable[[int], object]], iterations: int, warmup: int) -> dict[str, dict]:
    """Warm up, collect garbage, then time every side call by call, alternating (the
    collector stays enabled, as in benchmarks/measure.alternate_latency)."""
    names = list(calls)
    fns = [calls[n] for n in names]
    for i in range(warmup):
        for fn in fns:
            fn(i)
    gc.collect()
    samples = np.empty((len(fns), iterations), dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(iterations):
        for s, fn in enumerate(fns):
            t0 = clock()
            fn(i)
            samples[s, i] = clock() - t0
    return {name: _latency_summary(samples[s]) for s, name in enumerate(names)}


def _stopwatch() -> Callable[[], float]:
    start = time.perf_counter_ns()
    return lambda: (time.perf_counter_ns() - start) / 1e9


def _both_nan(x: Any, y: Any) -> bool:
    return isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith("VmHWM")).split()[1]) * 1024


def _jsonable(x: Any) -> Any:
    """A float for JSON: NaN as the string "NaN" (strict JSON has no NaN)."""
    return "NaN" if isinstance(x, float) and math.isnan(x) else x


def _error(exc: BaseException) -> dict[str, Any]:
    return {"error": f"{type(exc).__name__}: {exc}"[:4000], "traceback": traceback.format_exc()[-6000:]}


# -- the driver -------------------------------------------------------------------------


class Driver:
    def __init__(self, cfg: Mapping[str, Any]) -> None:
        self.cfg = cfg
        self.work = Path(cfg["work"]).resolve()
        self.features: list[str] = list(cfg["features"])
        self.refs = _refs(self.features)
        self.small = _refs(self.features[: int(cfg.get("n_features_small", 3))])
        self.keys: list[int] = [int(k) for k in cfg["request_keys"]]
        if not self.keys:
            raise ValueError("request_keys is empty")
        self.latency_iterations = int(cfg["latency_iterations"])
        self.batch_iterations = int(cfg["batch_iterations"])
        self.warmup = int(cfg["warmup_iterations"])
        self.batch_size = int(cfg.get("batch_entities", 100))
        self.results: dict[str, Any] = {}
        self._store: Any = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from feast import FeatureStore

            self._store = FeatureStore(repo_path=str(self.work))
        return self._store

    # setup ------------------------------------------------------------------------------

    def setup(self) -> dict[str, Any]:
        from feast import FeatureStore

        total = _stopwatch()
        watch = _stopwatch()
        work = _write_repo(self.cfg)
        write_s = watch()
        watch = _stopwatch()
        store = FeatureStore(repo_path=str(work))
        open_s = watch()
        watch = _stopwatch()
        objects = _load_definitions(work)
        definitions_s = watch()
        watch = _stopwatch()
        store.apply(objects)
        apply_s = watch()
        seconds = total()
        self._store = store
        return {
            "seconds": seconds, "write_s": write_s, "open_s": open_s, "load_definitions_s": definitions_s,
            "apply_s": apply_s, "objects": len(objects),
        }

    # materialize ------------------------------------------------------------------------

    def materialize(self) -> dict[str, Any]:
        history = pq.read_table(self.cfg["history_parquet"], columns=[KEY, TS])
        rows = history.num_rows
        entities = int(pc.count_distinct(history.column(KEY)).as_py())
        bounds = pc.min_max(history.column(TS)).as_py()
        first = bounds["min"].replace(tzinfo=timezone.utc)
        last = bounds["max"].replace(tzinfo=timezone.utc)
        del history
        store = self.store
        # Warm-up (imports, first DuckDB query): the first 1% of the time span; the full run
        # below writes those entities again.
        warm_end = first + (last - first) / 100
        watch = _stopwatch()
        store.materialize(first - timedelta(seconds=1), warm_end, feature_views=[VIEW])
        warmup_s = watch()
        gc.collect()
        start, end = first - timedelta(seconds=1), last + timedelta(seconds=1)
        watch = _stopwatch()
        store.materialize(start, end, feature_views=[VIEW])
        seconds = watch()
        return {
            "seconds": seconds, "rows": rows, "rows_per_s": rows / seconds, "entities": entities,
            "entities_per_s": entities / seconds, "warmup_s": warmup_s,
            "window": [start.isoformat(), end.isoformat()],
            "note": "Feast materialize writes only the latest row per entity in the window",
        }

    # online -----------------------------------------------------------------------------

    def _requests_single(self, n: int) -> list[list[dict[str, int]]]:
        keys, count = self.keys, len(self.keys)
        return [[{KEY: keys[i % count]}] for i in range(min(n, count))]

    def online_single(self) -> dict[str, Any]:
        get = self.store.get_online_features
        requests = self._requests_single(self.latency_iterations)
        m, refs, small = len(requests), self.refs, self.small
        stats = _alternate(
            {
                # Each kind reads its own key (as benchmarks/peer.py does for featurelite).
                "features": lambda i: get(features=refs, entity_rows=requests[i % m]),
                "features_small": lambda i: get(features=small, entity_rows=requests[(i + m // 2) % m]),
                "timer": lambda i: None,
            },
            self.latency_iterations,
            self.warmup,
        )
        main = stats["features"]
        return {
            "p50_us": main["p50_us"], "p99_us": main["p99_us"], "mean_us": main["mean_us"],
            "iterations": main["iterations"], "n_features": len(refs),
            "small": {**stats["features_small"], "n_features": len(small)},
            "stats": stats,
        }

    def online_batch(self) -> dict[str, Any]:
        get = self.store.get_online_features
        keys, count, size = self.keys, len(self.keys), self.batch_size
        n = self.batch_iterations
        groups = [[{KEY: keys[(i * size + j) % count]} for j in range(size)] for i in range(min(n, max(1, count)))]
        m, refs, small = len(groups), self.refs, self.small
        stats = _alternate(
            {
                "features": lambda i: get(features=refs, entity_rows=groups[i % m]),
                "features_small": lambda i: get(features=small, entity_rows=groups[(i + m // 2) % m]),
            },
            n,
            self.warmup,
        )
        main = stats["features"]
        return {
            "p50_us": main["p50_us"], "p99_us": main["p99_us"], "mean_us": main["mean_us"],
            "iterations": main["iterations"], "n_features": len(refs), "entities_per_call": size,
            "small": {**stats["features_small"], "n_features": len(small)},
            "stats": stats,
        }

    def online_odfv(self) -> dict[str, Any]:
        store = self.store
        get = store.get_online_features
        # The on-demand values are the expression over the stored values.
        check_keys = [{KEY: k} for k in self.keys[:100]]
        got = store.get_online_features(features=[*self.refs, ODFV_REF], entity_rows=check_keys).to_dict()
        expected = [
            None if a is None or b is None else a / (b + 1.0) for a, b in zip(got["f0"], got["f1"], strict=True)
        ]
        mismatches = sum(1 for x, y in zip(got[ODFV_FEATURE], expected, strict=True) if not (x == y or _both_nan(x, y)))
        requests = self._requests_single(self.latency_iterations)
        m, refs, with_odfv = len(requests), self.refs, [*self.refs, ODFV_REF]
        stats = _alternate(
            {
                "with_odfv": lambda i: get(features=with_odfv, entity_rows=requests[i % m]),
                "without": lambda i: get(features=refs, entity_rows=requests[(i + m // 2) % m]),
            },
            self.latency_iterations,
            self.warmup,
        )
        a, b = stats["with_odfv"], stats["without"]
        single = self.results.get("online_single") or {}
        return {
            "p50_us": a["p50_us"], "p99_us": a["p99_us"], "mean_us": a["mean_us"], "iterations": a["iterations"],
            "without_p50_us": b["p50_us"], "without_p99_us": b["p99_us"],
            "diff_p50_us": a["p50_us"] - b["p50_us"],
            "diff_p50_vs_online_single_us": (a["p50_us"] - single["p50_us"]) if "p50_us" in single else None,
            "checked_rows": len(expected), "value_mismatches": mismatches,
            "stats": stats,
        }

    def online_dump(self) -> dict[str, Any]:
        keys = self.keys[:ONLINE_DUMP_KEYS]
        values = self.store.get_online_features(features=self.refs, entity_rows=[{KEY: k} for k in keys]).to_dict()
        path = self.work / "feast_online.json"
        payload = {
            "keys": keys, "features": self.features,
            "values": {f: [None if v is None else float(v) for v in values[f]] for f in self.features},
        }
        path.write_text(json.dumps(payload))
        missing = sum(1 for v in values[self.features[0]] if v is None)
        return {"path": str(path), "keys": len(keys), "missing": missing}

    # training ---------------------------------------------------------------------------

    def training(self) -> dict[str, Any]:
        store = self.store
        spine = pq.read_table(self.cfg["spine_parquet"]).to_pandas()
        repeats = max(1, int(self.cfg.get("training_repeats", 1)))
        warm = spine.iloc[: max(1, len(spine) // 100)]
        watch = _stopwatch()
        store.get_historical_features(entity_df=warm, features=self.refs).to_arrow()
        warmup_s = watch()
        runs: list[float] = []
        result = None
        for _ in range(repeats):
            result = None
            gc.collect()
            watch = _stopwatch()
            result = store.get_historical_features(entity_df=spine, features=self.refs).to_arrow()
            runs.append(watch())
        assert result is not None
        seconds = statistics.median(runs)
        path = self.work / "feast_training.parquet"
        keep = [c for c in (KEY, "event_timestamp", "label", *self.features) if c in result.column_names]
        pq.write_table(result.select(keep), path)
        nulls = result.column(self.features[0]).null_count
        return {
            "seconds": seconds, "runs_s": runs, "warmup_s": warmup_s, "spine_rows": len(spine),
            "rows": result.num_rows, "rows_dropped": len(spine) - result.num_rows,
            "rows_without_match": nulls, "rows_per_s": len(spine) / seconds,
            "columns": result.column_names,
            "schema": {f.name: str(f.type) for f in result.schema},
            "path": str(path),
        }

    def training_sets(self) -> dict[str, Any]:
        """Each of ``config["training_sets"]`` ({label, spine_parquet, refs}) timed once,
        after one untimed run of the same: seconds and row counts per label."""
        store = self.store
        out: dict[str, Any] = {}
        for spec in self.cfg.get("training_sets", []):
            spine = pq.read_table(spec["spine_parquet"]).to_pandas()
            refs = list(spec["refs"])
            store.get_historical_features(entity_df=spine, features=refs).to_arrow()
            gc.collect()
            watch = _stopwatch()
            result = store.get_historical_features(entity_df=spine, features=refs).to_arrow()
            seconds = watch()
            out[spec["label"]] = {
                "seconds": seconds, "spine_rows": len(spine), "rows": result.num_rows, "features": len(refs),
                "rows_without_match": int(result.column(refs[0].split(":")[1]).null_count),
            }
            del result
        return out

    # footprint --------------------------------------------------------------------------

    def footprint(self) -> dict[str, Any]:
        """Bytes on disk: the SQLite online store, the registry, and the Parquet files the
        offline store reads (Feast keeps no copy of the history: it reads the user's files)."""
        parquet = [self.cfg["history_parquet"], *(e["parquet"] for e in self.cfg.get("extra_views", []))]
        online = self.work / "online.db"
        return {
            "online_db_bytes": online.stat().st_size if online.exists() else None,
            "registry_bytes": (self.work / "registry.db").stat().st_size,
            "offline_parquet_bytes": {Path(p).name: Path(p).stat().st_size for p in parquet},
        }

    # cases ------------------------------------------------------------------------------

    _CASE_DEFINITIONS = textwrap.dedent(
        """
        from datetime import timedelta
        from feast import Entity, FeatureView, Field, FileSource
        from feast.types import Float64
        from feast.value_type import ValueType
        user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
        source = FileSource(name="v_source", path={path!r}, timestamp_field="ts")
        v = FeatureView(name="v", entities=[user], ttl=timedelta(0), schema=[Field(name="x", dtype=Float64)],
                        online=True, source=source)
        OBJECTS = [user, source, v]
        """
    )

    def cases(self) -> dict[str, Any]:
        """Run each of ``config["cases"]``: ``steps`` in order (``{"append": rows}`` adds
        rows to the view's Parquet source, ``{"materialize": [start_us, end_us]}``
        materializes that window), then a training set over ``spine`` and an online read
        of ``online_keys``. Rows are ``{"user_id", "ts" (int microseconds, UTC), "x"}``
        (``x``: a float, null, or the string "NaN"). Returns per case the training rows (in
        the order Feast returns them) and the online values."""
        from feast import FeatureStore

        out: dict[str, Any] = {}
        for case in self.cfg.get("cases", []):
            try:
                out[case["name"]] = self._case(case, FeatureStore)
            except Exception as exc:  # noqa: BLE001 - one case failing does not stop the others
                out[case["name"]] = _error(exc)
        return out

    def _case(self, case: Mapping[str, Any], feature_store: Any) -> dict[str, Any]:
        import datetime as dt

        import pandas as pd

        work = self.work / "cases" / case["name"]
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        history = work / "history.parquet"
        (work / "feature_store.yaml").write_text(
            _FEATURE_STORE_YAML.format(project="cases", registry=work / "registry.db", online=work / "online.db")
        )
        (work / "definitions.py").write_text(self._CASE_DEFINITIONS.format(path=str(history)))

        def table(rows: list[dict[str, Any]]) -> pa.Table:
            return pa.table({
                KEY: pa.array([r[KEY] for r in rows], pa.int64()),
                "x": pa.array([float("nan") if r["x"] == "NaN" else r["x"] for r in rows], pa.float64()),
                TS: pa.array([r[TS] for r in rows], pa.timestamp("us", tz="UTC")),
            })

        def moment(us: int) -> dt.datetime:
            return dt.datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)

        rows: list[dict[str, Any]] = []
        store = None
        for step in case["steps"]:
            if "append" in step:
                rows += step["append"]
                pq.write_table(table(rows), history)
                if store is None:
                    store = feature_store(repo_path=str(work))
                    store.apply(_load_definitions(work))
            else:
                assert store is not None, "a case starts with an append"
                start, end = step["materialize"]
                store.materialize(moment(start), moment(end))
        assert store is not None
        spine = pd.DataFrame({
            KEY: [r[KEY] for r in case["spine"]],
            "event_timestamp": [pd.Timestamp(moment(r[TS])) for r in case["spine"]],
        })
        trained = store.get_historical_features(entity_df=spine, features=["v:x"]).to_arrow()
        training = [
            {KEY: k, TS: int(t.timestamp() * 1_000_000) if t is not None else None, "x": _jsonable(x)}
            for k, t, x in zip(
                trained.column(KEY).to_pylist(), trained.column("event_timestamp").to_pylist(),
                trained.column("x").to_pylist(), strict=True,
            )
        ]
        online = store.get_online_features(
            features=["v:x"], entity_rows=[{KEY: k} for k in case["online_keys"]]
        ).to_dict()
        return {"training": training, "online": [_jsonable(x) for x in online["x"]]}

    # cold start -------------------------------------------------------------------------

    _COLD = textwrap.dedent(
        """
        import json, os, sys, time
        start = time.perf_counter()
        import feast
        imported = time.perf_counter()
        store = feast.FeatureStore(repo_path=sys.argv[1])
        opened = time.perf_counter()
        refs, rows = sys.argv[2].split(","), [{"user_id": int(sys.argv[3])}]
        response = store.get_online_features(features=refs, entity_rows=rows)
        values = response.to_dict()
        read = time.perf_counter()
        sys.stdout.write("@@RESULT@@" + json.dumps({
            "import_s": imported - start, "open_s": opened - imported, "first_read_s": read - opened,
            "values": values,
            "maxrss_bytes": int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024,
        }) + "\\n")
        """
    )

    def _cold_process(self, refs: list[str], key: int) -> dict[str, Any]:
        watch = _stopwatch()
        proc = subprocess.run(
            [sys.executable, "-c", self._COLD, str(self.work), ",".join(refs), str(key)],
            cwd=self.work, capture_output=True, text=True, check=False, timeout=600,
        )
        wall = watch()
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start process failed (exit {proc.returncode}): {proc.stderr[-3000:]}")
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@"))
        result: dict[str, Any] = json.loads(line[len("@@RESULT@@"):])
        result["wall_s"] = wall
        return result

    def cold_start(self) -> dict[str, Any]:
        runs = max(1, int(self.cfg.get("cold_start_runs", 3)))
        key = self.keys[0]
        sides = {"odfv": [ODFV_REF], "stored": _refs(self.features[:2])}
        for refs in sides.values():  # untimed: files into the page cache, .pyc written
            self._cold_process(refs, key)
        samples: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for _ in range(runs):
            for side, refs in sides.items():
                samples[side].append(self._cold_process(refs, key))
        phases = ("wall_s", "import_s", "open_s", "first_read_s", "maxrss_bytes")
        out: dict[str, Any] = {"runs": runs, "key": key}
        for side, rs in samples.items():
            medians = {p: statistics.median(r[p] for r in rs) for p in phases}
            medians["rest_s"] = statistics.median(
                r["wall_s"] - r["import_s"] - r["open_s"] - r["first_read_s"] for r in rs
            )
            out[side] = {
                "refs": sides[side], **medians, "runs_s": [r["wall_s"] for r in rs], "values": rs[-1]["values"],
            }
        out["wall_s"] = out["odfv"]["wall_s"]
        return out

    # HTTP -------------------------------------------------------------------------------

    def serve_http(self) -> dict[str, Any]:
        n = int(self.cfg.get("http_requests", self.latency_iterations))
        extra = [str(a) for a in self.cfg.get("serve_args", ["--no-access-log"])]
        feast_cli = Path(sys.executable).with_name("feast")
        bodies = [
            json.dumps({"features": self.refs, "entities": {KEY: [k]}}).encode()
            for k in self.keys[: max(1, min(len(self.keys), n))]
        ]
        server = _Server([str(feast_cli), "serve", "--host", "127.0.0.1", *extra], self.work)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
            sample = json.loads(_post(conn, "/get-online-features", bodies[0]))
            conn.close()
            warm = max(50, n // 20)
            _clients(server.port, bodies, warm // HTTP_CLIENTS + 1)
            per_client = max(1, n // HTTP_CLIENTS)
            watch = _stopwatch()
            samples, reconnects = _clients(server.port, bodies, per_client)
            elapsed = watch()
        finally:
            stop = server.stop()
        # The server answered what the store holds.
        expected = self.store.get_online_features(features=self.refs, entity_rows=[{KEY: self.keys[0]}]).to_dict()
        names = sample["metadata"]["feature_names"]
        got = {name: result["values"][0] for name, result in zip(names, sample["results"], strict=True)}
        same = all(got.get(f) == expected[f][0] for f in self.features)
        stats = _latency_summary(samples)
        stats["over_100ms"] = int((samples > 100_000_000).sum())
        stats["p999_us"] = float(np.percentile(samples, 99.9) / 1_000.0)
        return {
            "p50_us": stats["p50_us"], "p99_us": stats["p99_us"], "mean_us": stats["mean_us"],
            "requests": stats["iterations"], "clients": HTTP_CLIENTS,
            "requests_per_s": stats["iterations"] / elapsed,
            "requests_per_s_from_mean": HTTP_CLIENTS * 1e6 / stats["mean_us"],
            "p999_us": stats["p999_us"], "over_100ms": stats["over_100ms"],
            "worker_recycles": stop["worker_recycles"],
            "reconnects": reconnects, "values_match_store": same, "server_args": server.args,
            "response_bytes": len(json.dumps(sample)), "stop": stop, "stats": stats,
        }

    # run --------------------------------------------------------------------------------

    def run(self, tasks: list[str]) -> dict[str, Any]:
        unknown = [t for t in tasks if t not in TASKS]
        for t in unknown:
            self.results[t] = {"error": f"unknown task {t!r}; known: {list(TASKS)}"}
        for name in TASKS:
            if name not in tasks:
                continue
            watch = _stopwatch()
            try:
                self.results[name] = getattr(self, name)()
            except Exception as exc:  # noqa: BLE001 - reported, the other tasks go on
                self.results[name] = _error(exc)
            self.results[name]["task_s"] = watch()
            if name in ONLINE_TASKS and "online_dump" not in self.results:
                try:
                    self.results["online_dump"] = self.online_dump()
                except Exception as exc:  # noqa: BLE001
                    self.results["online_dump"] = _error(exc)
        return self.results


# -- HTTP helpers -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Server:
    """``feast serve`` on a free loopback port in the repo folder, stopped with SIGTERM."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.port = _free_port()
        self.args = [*args, "--port", str(self.port)]
        self.log_path = cwd / "feast_serve.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.args, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        watch = _stopwatch()
        deadline = time.monotonic() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.log.close()
                raise RuntimeError(f"feast serve did not start: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        self.startup_s = watch()

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.log.close()
        log = self.log_path.read_text(errors="replace")
        return {
            "exit_code": code, "startup_s": self.startup_s, "traceback_in_log": "Traceback" in log,
            # gunicorn's --max-requests (Feast's default 1000 +- 50 jitter): the worker
            # restarts, and requests wait for the new one.
            "worker_recycles": log.count("Maximum request limit"),
            "workers_booted": log.count("Booting worker"),
        }


def _post(conn: http.client.HTTPConnection, path: str, body: bytes) -> bytes:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {payload[:500]!r}")
    return payload


def _clients(port: int, bodies: list[bytes], per_client: int) -> tuple[np.ndarray, int]:
    """``HTTP_CLIENTS`` threads, each with one keep-alive connection, sending ``per_client``
    requests back to back; latencies (ns) and the number of reconnects (gunicorn recycles
    its worker every ~1,000 requests by default, closing the kept-alive connections; the
    request is then sent again on a new connection and timed from there)."""
    samples: list[list[int]] = [[] for _ in range(HTTP_CLIENTS)]
    errors: list[str] = []
    reconnects = [0] * HTTP_CLIENTS

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        clock = time.perf_counter_ns
        mine = samples[c]
        try:
            for i in range(per_client):
                body = bodies[(c * 7919 + i) % len(bodies)]
                t0 = clock()
                try:
                    _post(conn, "/get-online-features", body)
                except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest,
                        http.client.BadStatusLine):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    reconnects[c] += 1
                    t0 = clock()
                    _post(conn, "/get-online-features", body)
                mine.append(clock() - t0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(HTTP_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"HTTP clients failed: {errors[:3]}")
    return np.array([v for per in samples for v in per], dtype=np.int64), sum(reconnects)


# -- main -------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Config keys: ``work``, ``history_parquet``, ``spine_parquet``, ``request_keys``,
    ``features``, ``n_features_small``, ``latency_iterations``, ``batch_iterations``,
    ``warmup_iterations``, ``seed``, ``tasks``; optional: ``batch_entities`` (100),
    ``http_requests`` (= latency_iterations), ``serve_args`` (["--no-access-log"]),
    ``cold_start_runs`` (3), ``training_repeats`` (1), ``extra_views`` ([{name, parquet,
    features}]: more views of the entity, for training sets; never materialized),
    ``training_sets`` ([{label, spine_parquet, refs}], for the task of that name),
    ``cases`` (for the task of that name).

    Output: ``{"versions": {...}, "config": {...}, "results": {task: {...}}, "total_s": s}``.
    """
    if len(argv) != 2:
        print(f"usage: {argv[0]} CONFIG.json", file=sys.stderr)
        return 2
    cfg = json.loads(Path(argv[1]).read_text())
    watch = _stopwatch()
    output: dict[str, Any] = {}
    with _stdout_to_stderr() as real_stdout:  # Feast prints progress on stdout
        try:
            import feast

            output["versions"] = {
                "feast": feast.__version__, "pyarrow": pa.__version__, "numpy": np.__version__,
                "pandas": __import__("pandas").__version__, "duckdb": __import__("duckdb").__version__,
                "python": platform.python_version(),
            }
        except Exception as exc:  # noqa: BLE001
            output["versions"] = _error(exc)
        output["config"] = {k: v for k, v in cfg.items() if k != "request_keys"} | {
            "request_keys_count": len(cfg.get("request_keys", []))
        }
        try:
            driver = Driver(cfg)
            output["results"] = driver.run(list(cfg.get("tasks", TASKS)))
        except Exception as exc:  # noqa: BLE001
            output["results"] = {"error": _error(exc)}
        output["total_s"] = watch()
        # This process's peak resident set: with one task per invocation, that task's peak.
        # VmHWM, not ru_maxrss, which Linux carries over exec from the forking process.
        output["maxrss_bytes"] = _peak_rss_bytes()
        real_stdout.write(json.dumps(output) + "\n")
        real_stdout.flush()
    return 0


@contextlib.contextmanager
def _stdout_to_stderr() -> Any:
    """Point file descriptor 1 (and so ``print`` and any C library) at stderr for the
    duration; yield a file on the real stdout, for the one JSON object."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    real = os.fdopen(saved, "w", closefd=True)
    try:
        yield real
    finally:
        sys.stdout.flush()
        real.flush()
        os.dup2(saved, 1)
        real.close()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
