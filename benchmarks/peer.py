"""featurelite versus Feast 0.67 (issue 5), in the same run as everything else.

Feast runs in its own virtual environment (:mod:`benchmarks.feast_setup`) through
:mod:`benchmarks.feast_driver`, on the same generated data written to Parquet: the
history and the entity dataframe of this run, the same request keys. The featurelite
numbers come from the workloads of the same run (measured minutes before, on the same
data), plus two extra measurements made here: the training set on a 10k-row slice of the
entity dataframe, and the cross-check data (training set and online values).

Only ``--full`` runs this (``--quick`` leaves Feast out, so CI never installs it).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import featurelite as fl

from . import data
from .config import FEATURE_REFS, FEATURES, KEY, REPO, WORK_DIR
from .feast_check import compare, compare_online
from .feast_setup import ensure_feast_venv
from .measure import stopwatch
from .model import Target, metric_row, workload
from .workloads import Context

__all__ = ["SMALL_SPINE_ROWS", "versus_feast", "write_inputs"]

#: Rows of the small entity dataframe (the training-set chart's first point).
SMALL_SPINE_ROWS = 10_000
#: Feast's gunicorn worker is recycled every ~1,000 requests by default, which stalls
#: requests for most of a second; the comparison turns that off (kinder to Feast) and
#: turns its access log off (featurelite's server writes none).
FEAST_SERVE_ARGS = ["--no-access-log", "--max-requests", "0"]


def write_inputs(ctx: Context) -> dict[str, str]:
    """The run's history and entity dataframe as Parquet, for Feast's file source."""
    assert ctx.history is not None
    paths = {"history": ctx.work / "history.parquet", "spine": ctx.work / "spine.parquet",
             "small_spine": ctx.work / "spine_small.parquet"}
    pq.write_table(ctx.history, paths["history"])
    pq.write_table(ctx.spine, paths["spine"])
    pq.write_table(ctx.spine.slice(0, SMALL_SPINE_ROWS), paths["small_spine"])
    return {k: str(v) for k, v in paths.items()}


def _driver(python: Path, config: dict[str, Any], work: Path) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    path = work / "config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "feast_driver.py"), str(path)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the Feast driver failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _featurelite_training(ctx: Context, spine_path: str) -> tuple[float, pa.Table]:
    spine = pq.read_table(spine_path)
    with fl.open(_unpushed(ctx), read_only=True) as store:
        store.get_historical_features(spine.slice(0, max(1, spine.num_rows // 100)), list(FEATURE_REFS))  # warm
        watch = stopwatch()
        table = store.get_historical_features(spine, list(FEATURE_REFS))
        return watch(), table


def _unpushed(ctx: Context) -> Path:
    """A featurelite store holding exactly the generated history: the copy the featurizer
    workloads made before the push workload added events to the original."""
    return ctx.ondemand_store_path


def versus_feast(ctx: Context, inputs: dict[str, str], mine: dict[str, Any]) -> dict[str, Any]:
    """Run Feast on the same data and compare with this run's featurelite results."""
    python = ensure_feast_venv(WORK_DIR)
    keys = [int(k) for k in data.request_keys(ctx.scale, ctx.seed + 1, 10_000)]
    base = {
        "features": list(FEATURES), "n_features_small": 3, "request_keys": keys, "seed": ctx.seed,
        "latency_iterations": min(ctx.scale.latency_iterations, 20_000),
        "batch_iterations": min(ctx.scale.batch_iterations, 1_000),
        "warmup_iterations": min(ctx.scale.warmup_iterations, 1_000),
        "http_requests": min(ctx.scale.http_requests, 20_000),
        "serve_args": FEAST_SERVE_ARGS, "cold_start_runs": 3,
    }
    watch = stopwatch()
    feast = _driver(python, {**base, "work": str(ctx.work / "feast"), "history_parquet": inputs["history"],
                             "spine_parquet": inputs["spine"]}, ctx.work / "feast")
    small = _driver(python, {**base, "work": str(ctx.work / "feast-small"), "history_parquet": inputs["history"],
                             "spine_parquet": inputs["small_spine"], "tasks": ["setup", "training"]},
                    ctx.work / "feast-small")
    feast_s = watch()
    results = feast["results"]
    ctx.log(f"Feast runs took {feast_s:.0f} s")

    small_s, _ = _featurelite_training(ctx, inputs["small_spine"])
    big_s, training = _featurelite_training(ctx, inputs["spine"])
    cross: dict[str, Any] = {}
    if "path" in results.get("training", {}):
        cross["training"] = compare(results["training"]["path"], training)
    dump = results.get("online_dump", {})
    if "path" in dump:
        dumped = json.loads(Path(dump["path"]).read_text())
        check_keys = [int(k) for k in dumped["keys"]]
        with fl.open(_unpushed(ctx), read_only=True) as store:
            values = store.get_online_features({KEY: check_keys}, list(FEATURE_REFS)).to_dict()
        cross["online"] = compare_online(dump["path"], values)
    sections = _sections(ctx, results, small.get("results", {}), mine, small_s, big_s)
    return {"versions": feast.get("versions"), "feast_raw": feast, "feast_small_raw": small, "cross_check": cross,
            "workloads": sections, "feast_seconds": feast_s,
            "training_curve": {"rows": [SMALL_SPINE_ROWS, ctx.scale.spine_rows],
                               "featurelite_s": [small_s, big_s],
                               "feast_s": [small.get("results", {}).get("training", {}).get("seconds"),
                                           results.get("training", {}).get("seconds")]}}


def _get(d: dict[str, Any], *path: str) -> float | None:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return float(d) if isinstance(d, (int, float)) else None


def _row(metric: str, unit: str, mine: float | None, theirs: float | None, target: Target | None = None) -> dict[str, Any]:
    if mine is None:
        return metric_row(metric, unit, float("nan"), theirs, None)
    return metric_row(metric, unit, mine, theirs, target if theirs is not None else None)


def _sections(
    ctx: Context, feast: dict[str, Any], small: dict[str, Any], mine: dict[str, Any], small_s: float, big_s: float
) -> dict[str, Any]:
    """One comparison per workload; the limit column is Feast, ratios are featurelite / Feast."""
    def stat(name: str, side: str, key: str) -> float | None:
        return _get(mine, name, "details", side, key)

    single = mine["online_single"]["details"]
    sections: dict[str, Any] = {}
    sections["feast_online"] = workload(
        "vs Feast: online read, 1 entity x 10 features, in-process SDK",
        f"`get_online_features` for one random entity of {ctx.scale.entities:,}, 10 features; featurelite's numbers "
        "are its `online_single` workload of this run; Feast 0.67 (`FeatureStore.get_online_features`, SQLite "
        f"online store) timed the same way in its own process, {feast.get('online_single', {}).get('iterations', 0):,} "
        "calls after a warm-up",
        "Feast 0.67 (the column `limit` is Feast; ratio = featurelite / Feast, so 0.1 means 10x faster)",
        [
            _row("p50", "us", _get(single, "featurelite", "p50_us"), _get(feast, "online_single", "p50_us"),
                 Target("ratio", "<=", 0.1)),
            _row("p99", "us", _get(single, "featurelite", "p99_us"), _get(feast, "online_single", "p99_us"),
                 Target("ratio", "<=", 0.1)),
            _row("p50, 3 features (Feast; featurelite reads 10)", "us", _get(single, "featurelite", "p50_us"),
                 _get(feast, "online_single", "small", "p50_us")),
        ],
        {"feast": feast.get("online_single")},
    )
    odfv_mine = mine["online_featurizer"]["rows"][0]
    odfv_diff = next((r["featurelite"] for r in mine["online_featurizer"]["rows"] if "difference" in r["metric"]), None)
    sections["feast_odfv"] = workload(
        "vs Feast: online read with one on-demand transform",
        "the single-entity read plus one on-demand feature `f0 / (f1 + 1.0)`: featurelite's compiled featurizer "
        "(its `online_featurizer` workload) against Feast's python-mode on-demand feature view computing the same "
        "value; the target is on what the transform adds to the read",
        "Feast 0.67 (the column `limit` is Feast)",
        [
            _row("p50 added by the transform", "us", odfv_diff, _get(feast, "online_odfv", "diff_p50_us"),
                 Target("ratio", "<=", 0.02)),
            _row("p50 of the read with the transform", "us", odfv_mine.get("featurelite"), _get(feast, "online_odfv", "p50_us")),
        ],
        {"feast": feast.get("online_odfv")},
    )
    batch = mine["online_batch"]["details"]
    sections["feast_batch"] = workload(
        "vs Feast: online read, 100 entities per call",
        "`get_online_features` with 100 random entities x 10 features per call (featurelite: its `online_batch` workload)",
        "Feast 0.67 (the column `limit` is Feast)",
        [
            _row("p50", "us", _get(batch, "featurelite", "p50_us"), _get(feast, "online_batch", "p50_us")),
            _row("p99", "us", _get(batch, "featurelite", "p99_us"), _get(feast, "online_batch", "p99_us")),
        ],
        {"feast": feast.get("online_batch")},
    )
    http = mine["http_online"]["details"]
    sections["feast_http"] = workload(
        "vs Feast: HTTP serving, 1 entity x 10 features, 4 concurrent clients",
        "`featurelite serve` (its `http_online` workload) against `feast serve` "
        f"({' '.join(FEAST_SERVE_ARGS)}: no access log, and no recycling of its worker every 1,000 requests, which "
        "otherwise stalls requests for most of a second), both on loopback, the same client (4 threads, "
        "`http.client`, keep-alive)",
        "Feast 0.67 `feast serve` (the column `limit` is Feast)",
        [
            _row("p50", "us", _get(http, "featurelite", "p50_us"), _get(feast, "serve_http", "p50_us"),
                 Target("ratio", "<=", 1 / 3)),
            _row("p99", "us", _get(http, "featurelite", "p99_us"), _get(feast, "serve_http", "p99_us"),
                 Target("ratio", "<=", 1 / 3)),
        ],
        {"feast": feast.get("serve_http")},
    )
    sections["feast_training"] = workload(
        "vs Feast: training set (point-in-time join), 10 features",
        f"`get_historical_features` of {ctx.scale.spine_rows:,} and {SMALL_SPINE_ROWS:,} entity rows against "
        f"{ctx.scale.history_rows:,} history rows, Arrow result; featurelite timed here once after a warm-up on 1% "
        "(the `training` workload above has the 5-run median), Feast (DuckDB offline store over the same Parquet) "
        "likewise in its process",
        "Feast 0.67 (the column `limit` is Feast)",
        [
            _row(f"{ctx.scale.spine_rows:,} entity rows", "s", big_s, _get(feast, "training", "seconds"),
                 Target("ratio", "<=", 0.2)),
            _row(f"{SMALL_SPINE_ROWS:,} entity rows", "s", small_s, _get(small, "training", "seconds")),
        ],
        {"feast": feast.get("training"), "feast_small": small.get("training")},
    )
    ingest = mine["ingest"]["rows"]
    ingest_rate = next((r["featurelite"] for r in ingest if r["unit"] == "rows/s"), None)
    sections["feast_ingest"] = workload(
        "vs Feast: ingest / materialize throughput",
        f"featurelite's `ingest` ({ctx.scale.history_rows:,} rows from Arrow into history and online values, one "
        "transaction) against Feast's `materialize` of the same history from its offline store into its SQLite "
        "online store (it writes only the latest row per entity); rows per second of history",
        "Feast 0.67 `materialize` (the column `limit` is Feast; here a ratio above 1 means featurelite is faster)",
        [_row("throughput", "rows/s", ingest_rate, _get(feast, "materialize", "rows_per_s"), Target("ratio", ">=", 20.0))],
        {"feast": feast.get("materialize")},
    )
    cold = mine["cold_start"]["details"]["medians"]["featurelite"]
    sections["feast_cold"] = workload(
        "vs Feast: cold start (new process to first on-demand value)",
        "a new process that imports the library, opens the store and reads one on-demand value (featurelite: its "
        "`cold_start` workload; Feast: `FeatureStore(repo)` and `get_online_features` of `ratios:ratio`)",
        "Feast 0.67 (the column `limit` is Feast)",
        [_row("wall time to process exit (median)", "s", cold.get("wall_s"), _get(feast, "cold_start", "odfv", "wall_s"))],
        {"feast": feast.get("cold_start")},
    )
    return sections
