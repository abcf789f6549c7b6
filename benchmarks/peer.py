"""featurelite versus Feast 0.67 (issue 5), in the same run as everything else.

Feast runs in its own virtual environment (:mod:`benchmarks.feast_setup`) through
:mod:`benchmarks.feast_driver`, a separate process per step, on the same generated data
written to Parquet. Both systems are measured here, at two scales (10k entities / 100k
history rows, and the run's 1M / 10M), step by step and alternating: a round of
featurelite, then the same round of Feast, repeated (``ROUNDS`` for online reads,
``TRAINING_ROUNDS`` for training sets, ``HTTP_ROUNDS`` for HTTP), each side warmed up
before it is timed. A latency is the median over rounds of each round's percentile.

Measured per scale: online reads of 1 entity (10 and 3 features), 1 entity with one
on-demand feature, 100 entities; training sets of 1 and 3 views at several entity-row
counts; ingest against materialize, with each process's peak RSS and the bytes on disk;
cold start with the serving process's peak RSS; HTTP serving. At the large scale also
the cross-check of the full training set and of online values; and the tiny inputs of
:mod:`benchmarks.differences`.

Only ``--full`` runs this (``--quick`` leaves Feast out, so CI never installs it).
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import featurelite as fl

from . import data, differences
from .config import FEATURE_REFS, FEATURES, KEY, QUICK, REPO, VIEW, WORK_DIR, Scale
from .feast_check import compare, compare_online
from .feast_setup import ensure_feast_venv
from .featurizers import ODFV_REF, on_demand_view
from .footprint import store_bytes
from .measure import alternate_latency, latency_summary, stopwatch
from .model import Target, metric_row, workload
from .ondemand import _fresh_process
from .serving import CLIENTS, _clients, _post, _Process, _read_bodies
from .workloads import Context, _check, _definitions

__all__ = ["ROUNDS", "versus_feast", "write_inputs"]

#: Alternating rounds (featurelite, then Feast) of the online reads, training sets, HTTP.
ROUNDS = 3
TRAINING_ROUNDS = 2
HTTP_ROUNDS = 2
#: Timed calls per side and round: single-entity reads, 100-entity reads, HTTP requests.
LATENCY_PER_ROUND = 7_000
BATCH_PER_ROUND = 350
HTTP_PER_ROUND = 6_000
WARMUP = 1_000
#: Entities per call of the batched read.
BATCH = 100
#: The two views beside ``user_stats`` in the three-view training sets (3 features each,
#: a fifth as many history rows).
EXTRA_VIEWS: dict[str, list[str]] = {"user_b": ["b0", "b1", "b2"], "user_c": ["c0", "c1", "c2"]}
THREE_VIEW_REFS = [*FEATURE_REFS, *(f"{v}:{f}" for v, fs in EXTRA_VIEWS.items() for f in fs)]
#: Feast's gunicorn worker is recycled every ~1,000 requests by default, which stalls
#: requests for most of a second; the comparison turns that off (kinder to Feast) and
#: turns its access log off (featurelite's server writes none).
FEAST_SERVE_ARGS = ["--no-access-log", "--max-requests", "0"]
#: The small scale: 10k entities, 100k history rows (the quick run's data).
SMALL = QUICK


@dataclass
class Side:
    """One scale of the comparison: the data files, the featurelite store, the Feast repo."""

    label: str  #: "10k entities" / "1M entities"
    scale: Scale
    work: Path
    history: Path  #: Parquet of the main view's history
    extra: dict[str, Path]  #: Parquet per extra view
    spines: dict[int, Path]  #: entity dataframes by row count
    store: Path = field(init=False)  #: featurelite: the history, the on-demand view and the extra views
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = self.work / "featurelite-vs-feast.duckdb"

    @property
    def feast_work(self) -> Path:
        return self.work / "feast"


def _write_side_data(work: Path, scale: Scale, seed: int, history: pa.Table, spine: pa.Table) -> dict[str, Any]:
    """History, extra views and entity dataframes of one scale as Parquet."""
    work.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Any] = {"history": work / "history.parquet", "extra": {}, "spines": {}}
    pq.write_table(history, paths["history"])
    for number, (view, features) in enumerate(EXTRA_VIEWS.items(), start=1):
        path = work / f"{view}.parquet"
        pq.write_table(data.extra_history(scale, seed, number, features), path)
        paths["extra"][view] = path
    for rows in sorted({10_000, 100_000, spine.num_rows}):
        if rows <= spine.num_rows:
            path = work / f"spine_{rows}.parquet"
            pq.write_table(spine.slice(0, rows), path)
            paths["spines"][rows] = path
    return paths


def write_inputs(ctx: Context) -> dict[str, Any]:
    """The run's data (large scale) as Parquet, written before the workloads free it."""
    assert ctx.history is not None
    return _write_side_data(ctx.work / "vs-feast-large", ctx.scale, ctx.seed, ctx.history, ctx.spine)


# -- running the Feast driver -------------------------------------------------------------


def _driver(python: Path, config: dict[str, Any], tasks: list[str]) -> dict[str, Any]:
    """One Feast driver process running ``tasks``; its JSON output."""
    work = Path(config["work"])
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"config-{'-'.join(tasks)}.json"
    path.write_text(json.dumps({**config, "tasks": tasks}))
    done = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "feast_driver.py"), str(path)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the Feast driver failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    errors = {t: r["error"] for t, r in result.get("results", {}).items() if isinstance(r, dict) and "error" in r}
    if errors:
        raise RuntimeError(f"Feast driver tasks failed: {errors}")
    return result


def _feast_config(side: Side, ctx: Context, keys: list[int]) -> dict[str, Any]:
    return {
        "work": str(side.feast_work),
        "history_parquet": str(side.history),
        "spine_parquet": str(side.spines[max(side.spines)]),
        "features": list(FEATURES),
        "n_features_small": 3,
        "request_keys": keys,
        "seed": ctx.seed,
        "latency_iterations": LATENCY_PER_ROUND,
        "batch_iterations": BATCH_PER_ROUND,
        "warmup_iterations": WARMUP,
        "batch_entities": BATCH,
        "http_requests": HTTP_PER_ROUND,
        "serve_args": FEAST_SERVE_ARGS,
        "cold_start_runs": 3,
        "extra_views": [{"name": v, "parquet": str(p), "features": EXTRA_VIEWS[v]} for v, p in side.extra.items()],
        "training_sets": [
            {"label": label, "spine_parquet": str(path), "refs": refs} for label, path, refs in _training_specs(side)
        ],
    }


def _training_specs(side: Side) -> list[tuple[str, Path, list[str]]]:
    """(label, entity dataframe, feature refs): one view at every entity-row count, three
    views at the smallest and the largest."""
    counts = sorted(side.spines)
    specs = [(f"1 view, {n:,} entity rows", side.spines[n], list(FEATURE_REFS)) for n in counts]
    specs += [(f"3 views, {n:,} entity rows", side.spines[n], THREE_VIEW_REFS) for n in sorted({counts[0], counts[-1]})]
    return specs


# -- featurelite's side of each step ------------------------------------------------------


def _remove_store(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        file.unlink(missing_ok=True)


def _footprint_process(store: Path, history: Path, *flags: str) -> dict[str, Any]:
    _remove_store(store)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.footprint", str(store), str(history), *flags],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    _check(done.returncode == 0, f"the footprint process failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _build_store(side: Side) -> dict[str, Any]:
    """Ingest the history in fresh processes: from an Arrow table (the throughput), then
    streaming from the Parquet file into the store kept (its peak RSS and file size are
    the footprint); then add the on-demand view and the extra views."""
    scratch = side.work / "ingest-from-arrow.duckdb"
    from_arrow = _footprint_process(scratch, side.history, "--arrow")
    _remove_store(scratch)
    footprint = _footprint_process(side.store, side.history)
    footprint["from_arrow"] = from_arrow
    footprint["rows_per_s"] = from_arrow["rows_per_s"]
    user = next(d for d in _definitions() if isinstance(d, fl.Entity))
    views = [
        fl.FeatureView(v, entities=[user], timestamp_field="ts", schema={f: "float64" for f in fs})
        for v, fs in EXTRA_VIEWS.items()
    ]
    with fl.open(side.store) as store:
        store.apply([on_demand_view(), *views])
        for view, path in side.extra.items():
            store.ingest(view, str(path))
    return footprint


def _featurelite_online(side: Side, keys: list[int]) -> dict[str, Any]:
    """One round of featurelite's online reads (the calls alternate among themselves)."""
    with fl.open(side.store, read_only=True) as store:
        get = store.get_online_features
        rows = [[{KEY: k}] for k in keys]
        m = len(rows)
        ten, three, with_odfv = list(FEATURE_REFS), list(FEATURE_REFS[:3]), [*FEATURE_REFS, ODFV_REF]
        # Each kind reads its own key in a round of calls: a second read of one key would
        # find it in the CPU cache the first one warmed (the Feast driver does the same).
        single = alternate_latency(
            {
                "features": lambda i: get(rows[i % m], ten),
                "features_small": lambda i: get(rows[(i + m // 3) % m], three),
                "with_odfv": lambda i: get(rows[(i + 2 * m // 3) % m], with_odfv),
            },
            LATENCY_PER_ROUND, WARMUP,
        )
        groups = [[{KEY: keys[(i * BATCH + j) % m]} for j in range(BATCH)] for i in range(2 * BATCH_PER_ROUND)]
        batch = alternate_latency(
            {"features": lambda i: get(groups[i], ten),
             "features_small": lambda i: get(groups[i + BATCH_PER_ROUND], three)},
            BATCH_PER_ROUND, WARMUP // 10,
        )
    return {"single": single, "batch": batch}


def _featurelite_training(side: Side) -> dict[str, float]:
    """Each training set timed once, after one untimed run of the same (the Feast driver
    does the same): the first run in a process pays for reading the history's pages."""
    seconds: dict[str, float] = {}
    with fl.open(side.store, read_only=True) as store:
        for label, path, refs in _training_specs(side):
            spine = pq.read_table(path)
            store.get_historical_features(spine, refs)
            gc.collect()
            watch = stopwatch()
            store.get_historical_features(spine, refs)
            seconds[label] = watch()
    return seconds


# -- the steps ---------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _rounds_summary(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-round latency summaries -> the median over rounds of p50, p99 and each quantile."""
    return {
        "p50_us": _median([s["p50_us"] for s in summaries]),
        "p99_us": _median([s["p99_us"] for s in summaries]),
        "quantiles_us": [float(q) for q in np.median([s["quantiles_us"] for s in summaries], axis=0)],
        "rounds_p50_us": [s["p50_us"] for s in summaries],
        "rounds_p99_us": [s["p99_us"] for s in summaries],
        "iterations": sum(int(s["iterations"]) for s in summaries),
    }


def _online_step(side: Side, python: Path, config: dict[str, Any], keys: list[int], log: Callable[[str], None]) -> None:
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for r in range(ROUNDS):
        log(f"{side.label}: online round {r + 1}/{ROUNDS}")
        mine.append(_featurelite_online(side, keys))
        theirs.append(_driver(python, config, ["online_single", "online_batch", "online_odfv"])["results"])
    out: dict[str, Any] = {}
    for name, mine_of, theirs_of in [
        ("single_10", lambda m: m["single"]["features"], lambda t: t["online_single"]["stats"]["features"]),
        ("single_3", lambda m: m["single"]["features_small"], lambda t: t["online_single"]["stats"]["features_small"]),
        ("odfv", lambda m: m["single"]["with_odfv"], lambda t: t["online_odfv"]["stats"]["with_odfv"]),
        ("odfv_without", lambda m: m["single"]["features"], lambda t: t["online_odfv"]["stats"]["without"]),
        ("batch_10", lambda m: m["batch"]["features"], lambda t: t["online_batch"]["stats"]["features"]),
        ("batch_3", lambda m: m["batch"]["features_small"], lambda t: t["online_batch"]["stats"]["features_small"]),
    ]:
        out[name] = {"featurelite": _rounds_summary([mine_of(m) for m in mine]),
                     "feast": _rounds_summary([theirs_of(t) for t in theirs])}
    # What the on-demand feature adds, per round (each side alternates with/without within
    # the round), then the median over rounds.
    out["odfv_added"] = {
        "featurelite": _median([m["single"]["with_odfv"]["p50_us"] - m["single"]["features"]["p50_us"] for m in mine]),
        "feast": _median([t["online_odfv"]["diff_p50_us"] for t in theirs]),
    }
    out["feast_value_mismatches"] = sum(t["online_odfv"]["value_mismatches"] for t in theirs)
    side.results["online"] = out


def _training_step(side: Side, python: Path, config: dict[str, Any], log: Callable[[str], None]) -> None:
    mine: list[dict[str, float]] = []
    theirs: list[dict[str, Any]] = []
    for r in range(TRAINING_ROUNDS):
        log(f"{side.label}: training sets, round {r + 1}/{TRAINING_ROUNDS}")
        mine.append(_featurelite_training(side))
        theirs.append(_driver(python, config, ["training_sets"])["results"]["training_sets"])
    out = {}
    for label, _, refs in _training_specs(side):
        rows = {t[label]["rows"] for t in theirs}
        out[label] = {
            "featurelite_s": _median([m[label] for m in mine]),
            "feast_s": _median([t[label]["seconds"] for t in theirs]),
            "featurelite_runs_s": [m[label] for m in mine],
            "feast_runs_s": [t[label]["seconds"] for t in theirs],
            "feast_rows": sorted(rows),
            "features": len(refs),
        }
    side.results["training"] = out


def _ingest_step(side: Side, python: Path, config: dict[str, Any], log: Callable[[str], None]) -> None:
    """featurelite's ingest in a fresh process, then Feast's setup and materialize, each
    in its own process; their times, peak RSS and bytes on disk."""
    log(f"{side.label}: featurelite ingest (fresh process)")
    mine = _build_store(side)
    log(f"{side.label}: Feast setup and materialize")
    setup = _driver(python, config, ["setup"])
    materialize = _driver(python, config, ["materialize"])
    files = _driver(python, config, ["footprint"])["results"]["footprint"]
    side.results["ingest"] = {
        "featurelite": mine, "feast_setup": setup["results"]["setup"],
        "feast": {**materialize["results"]["materialize"], "maxrss_bytes": materialize["maxrss_bytes"], **files},
        "featurelite_store_bytes": store_bytes(side.store),
    }
    side.results["versions"] = setup.get("versions")


def _cold_step(side: Side, python: Path, config: dict[str, Any], log: Callable[[str], None]) -> None:
    log(f"{side.label}: cold start")
    cache = side.work / "kernel-cache"
    key = int(config["request_keys"][0])
    _fresh_process(str(side.store), [ODFV_REF], key, cache)  # compiles into the cache; file into the page cache
    mine = [_fresh_process(str(side.store), [ODFV_REF], key, cache) for _ in range(3)]
    theirs = _driver(python, config, ["cold_start"])["results"]["cold_start"]
    side.results["cold"] = {
        "featurelite": {
            "to_value_s": _median([r["to_value_s"] for r in mine]), "wall_s": _median([r["wall_s"] for r in mine]),
            "maxrss_bytes": _median([r["maxrss_bytes"] for r in mine]),
        },
        "feast": {"wall_s": theirs["odfv"]["wall_s"], "maxrss_bytes": theirs["odfv"]["maxrss_bytes"]},
    }


def _http_step(side: Side, python: Path, config: dict[str, Any], keys: list[int], log: Callable[[str], None]) -> None:
    bodies = _read_bodies(np.asarray(keys))
    server = _Process(["-m", "featurelite", "serve", str(side.store)])
    mine: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    try:
        _clients(server.port, bodies, max(50, HTTP_PER_ROUND // 20) // CLIENTS + 1)  # warm-up
        for r in range(HTTP_ROUNDS):
            log(f"{side.label}: HTTP round {r + 1}/{HTTP_ROUNDS}")
            mine.append(latency_summary(_clients(server.port, bodies[r::HTTP_ROUNDS], HTTP_PER_ROUND // CLIENTS)))
            theirs.append(_driver(python, config, ["serve_http"])["results"]["serve_http"]["stats"])
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        answered = json.loads(_post(conn, "/get-online-features", bodies[0]))
        conn.close()
    finally:
        server.stop()
    with fl.open(side.store, read_only=True) as store:
        expected = store.get_online_features([{KEY: keys[0]}], list(FEATURE_REFS)).to_dict()
    _check(answered["values"] == expected, "the server answered other values than the store")
    side.results["http"] = {"featurelite": _rounds_summary(mine), "feast": _rounds_summary(theirs)}


def _cross_check(side: Side, python: Path, config: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The full training set (1 view) and 1,000 online values, featurelite against Feast."""
    log(f"{side.label}: cross-check of the training set and online values")
    feast = _driver(python, config, ["training", "online_single"])["results"]
    spine = pq.read_table(side.spines[max(side.spines)])
    with fl.open(side.store, read_only=True) as store:
        training = store.get_historical_features(spine, list(FEATURE_REFS))
        dumped = json.loads(Path(feast["online_dump"]["path"]).read_text())
        values = store.get_online_features({KEY: [int(k) for k in dumped["keys"]]}, list(FEATURE_REFS)).to_dict()
    return {
        "training": compare(feast["training"]["path"], training),
        "online": compare_online(feast["online_dump"]["path"], values),
    }


def _differences(python: Path, work: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    log("tiny inputs where the two may differ")
    config = {"work": str(work / "feast-cases"), "history_parquet": "", "spine_parquet": "", "features": ["x"],
              "request_keys": [1], "latency_iterations": 1, "batch_iterations": 1, "warmup_iterations": 0,
              "cases": differences.to_config()}
    feast = _driver(python, config, ["cases"])["results"]["cases"]
    return [
        differences.compare(case, differences.featurelite_side(case), feast[case.name]) for case in differences.CASES
    ]


def versus_feast(ctx: Context, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run Feast on the same data as featurelite, both measured here step by step."""
    python = ensure_feast_venv(WORK_DIR)
    watch = stopwatch()
    # The small scale's entity dataframe is as long as the large one's: training sets of
    # 10k to 1M entity rows at both scales.
    small_scale = replace(SMALL, spine_rows=ctx.scale.spine_rows)
    small_history, small_spine = data.history(small_scale, ctx.seed), data.spine(small_scale, ctx.seed)
    small_paths = _write_side_data(ctx.work / "vs-feast-small", small_scale, ctx.seed, small_history, small_spine)
    del small_history
    sides = [
        Side("10k entities", small_scale, ctx.work / "vs-feast-small", small_paths["history"], small_paths["extra"],
             small_paths["spines"]),
        Side(f"{ctx.scale.entities // 1_000_000}M entities" if ctx.scale.entities >= 1_000_000 else
             f"{ctx.scale.entities:,} entities", ctx.scale, ctx.work / "vs-feast-large", inputs["history"],
             inputs["extra"], inputs["spines"]),
    ]
    cross: dict[str, Any] = {}
    for side in sides:
        keys = [int(k) for k in data.request_keys(side.scale, ctx.seed + 1, 10_000)]
        config = _feast_config(side, ctx, keys)
        _ingest_step(side, python, config, ctx.log)
        _online_step(side, python, config, keys, ctx.log)
        _training_step(side, python, config, ctx.log)
        _cold_step(side, python, config, ctx.log)
        _http_step(side, python, config, keys, ctx.log)
        if side is sides[-1]:
            cross = _cross_check(side, python, config, ctx.log)
    cases = _differences(python, ctx.work, ctx.log)
    feast_s = watch()
    ctx.log(f"featurelite vs Feast took {feast_s:.0f} s")
    results = {side.label: side.results for side in sides}
    large = sides[-1]
    curve: dict[str, dict[str, list[Any]]] = {
        label: {"rows": [], "featurelite_s": [], "feast_s": []}
        for label in ("1 view", "3 views")
    }
    for spec, _, _ in _training_specs(large):
        views, rows = spec.split(", ")
        entry = large.results["training"][spec]
        curve[views]["rows"].append(int(rows.split()[0].replace(",", "")))
        curve[views]["featurelite_s"].append(entry["featurelite_s"])
        curve[views]["feast_s"].append(entry["feast_s"])
    return {
        "versions": large.results.get("versions"), "sides": results, "cross_check": cross, "differences": cases,
        "workloads": _sections(sides), "feast_seconds": feast_s, "training_curve": curve,
        "rounds": {"online": ROUNDS, "training": TRAINING_ROUNDS, "http": HTTP_ROUNDS},
    }


# -- the published tables ------------------------------------------------------------------


def _row(
    metric: str, unit: str, mine: float | None, theirs: float | None, target: Target | None = None
) -> dict[str, Any]:
    if mine is None:
        return metric_row(metric, unit, float("nan"), theirs, None)
    return metric_row(metric, unit, mine, theirs, target)


_LIMIT = "Feast 0.67 (the column `limit` is Feast; ratio = featurelite / Feast, so 0.1 means 10x faster)"


def _sections(sides: list[Side]) -> dict[str, Any]:
    """One comparison per workload; the limit column is Feast."""
    rounds = f"{ROUNDS} alternating rounds (a round of featurelite, then the same round of Feast)"
    sections: dict[str, Any] = {}

    online_rows = []
    for side in sides:
        o = side.results["online"]
        for n in (10, 3):
            s = o[f"single_{n}"]
            online_rows += [
                _row(f"{side.label}, {n} features: p50", "us", s["featurelite"]["p50_us"], s["feast"]["p50_us"],
                     Target("ratio", "<=", 0.1) if n == 10 else None),
                _row(f"{side.label}, {n} features: p99", "us", s["featurelite"]["p99_us"], s["feast"]["p99_us"],
                     Target("ratio", "<=", 0.1) if n == 10 else None),
            ]
    sections["feast_online"] = workload(
        "vs Feast: online read, 1 entity, in-process SDK",
        f"`get_online_features` for one random entity, 10 and 3 features of `{VIEW}`, in each system's own process "
        f"(Feast: `FeatureStore.get_online_features`, SQLite online store). {rounds}; per round "
        f"{LATENCY_PER_ROUND:,} timed calls of each kind after {WARMUP:,} warm-up calls, the kinds alternating call by "
        "call; the numbers are the medians over rounds of each round's p50 and p99.",
        _LIMIT, online_rows, {side.label: side.results["online"] for side in sides},
    )
    sections["feast_odfv"] = workload(
        "vs Feast: online read with one on-demand transform",
        "the single-entity read of 10 features plus one on-demand feature `f0 / (f1 + 1.0)`: featurelite's compiled "
        "featurizer against Feast's python-mode on-demand feature view computing the same value. Within each round "
        "both sides alternate the read with and without it; the target is on what it adds to the p50 (median over "
        f"{ROUNDS} rounds).",
        _LIMIT,
        [
            row
            for side in sides
            for row in (
                _row(
                    f"{side.label}: p50 added by the transform",
                    "us",
                    side.results["online"]["odfv_added"]["featurelite"],
                    side.results["online"]["odfv_added"]["feast"],
                    Target("ratio", "<=", 0.02),
                ),
                _row(
                    f"{side.label}: p50 of the read with the transform",
                    "us",
                    side.results["online"]["odfv"]["featurelite"]["p50_us"],
                    side.results["online"]["odfv"]["feast"]["p50_us"],
                ),
            )
        ],
        {},
    )
    sections["feast_batch"] = workload(
        f"vs Feast: online read, {BATCH} entities per call",
        f"`get_online_features` with {BATCH} random entities per call, 10 and 3 features; {rounds}, "
        f"{BATCH_PER_ROUND:,} timed calls of each kind per round",
        _LIMIT,
        [
            _row(
                f"{side.label}, {n} features: {stat}",
                "us",
                side.results["online"][f"batch_{n}"]["featurelite"][f"{stat}_us"],
                side.results["online"][f"batch_{n}"]["feast"][f"{stat}_us"],
                Target("featurelite", "<=", 500.0) if n == 10 else None,
            )
            for side in sides
            for n in (10, 3)
            for stat in ("p50", "p99")
        ],
        {},
    )
    sections["feast_http"] = workload(
        "vs Feast: HTTP serving, 1 entity x 10 features, 4 concurrent clients",
        f"`featurelite serve` against `feast serve` ({' '.join(FEAST_SERVE_ARGS)}: no access log, and no recycling "
        "of its worker every 1,000 requests, which otherwise stalls requests for most of a second), both on loopback, "
        f"the same client ({CLIENTS} threads, `http.client`, keep-alive). {HTTP_ROUNDS} alternating rounds of "
        f"{HTTP_PER_ROUND:,} requests per side (Feast's server is started for each of its rounds and warmed up); "
        "medians over rounds of each round's percentiles.",
        _LIMIT,
        [
            _row(f"{side.label}: {stat}", "us", side.results["http"]["featurelite"][f"{stat}_us"],
                 side.results["http"]["feast"][f"{stat}_us"], Target("ratio", "<=", 1 / 3))
            for side in sides for stat in ("p50", "p99")
        ],
        {side.label: side.results["http"] for side in sides},
    )
    training_rows = []
    for side in sides:
        for label, entry in side.results["training"].items():
            big = label.endswith(f"{side.scale.spine_rows:,} entity rows") and side.scale.spine_rows >= 1_000_000
            training_rows.append(_row(f"{side.label}: {label}", "s", entry["featurelite_s"], entry["feast_s"],
                                      Target("ratio", "<=", 0.2) if big else None))
    sections["feast_training"] = workload(
        "vs Feast: training sets (point-in-time join)",
        "`get_historical_features` of entity dataframes of several sizes, Arrow result: 1 view (10 features of "
        f"`{VIEW}`) and 3 views (plus {', '.join(f'`{v}`' for v in EXTRA_VIEWS)}, 3 features each, a fifth as many "
        f"history rows). {TRAINING_ROUNDS} alternating rounds; in each, every training set runs once untimed and once "
        "timed (featurelite on the store opened afresh for the round, Feast in a process of its own per round); "
        "medians over rounds. Feast: its DuckDB offline store over the same Parquet.",
        _LIMIT, training_rows, {side.label: side.results["training"] for side in sides},
    )
    ingest_rows = []
    for side in sides:
        i = side.results["ingest"]
        ingest_rows += [
            _row(
                f"{side.label}: throughput (history rows/s)",
                "rows/s",
                i["featurelite"]["rows_per_s"],
                i["feast"]["rows_per_s"],
                Target("ratio", ">=", 20.0),
            ),
        ]
    sections["feast_ingest"] = workload(
        "vs Feast: ingest / materialize throughput",
        "featurelite's `ingest` of the history, held as an Arrow table, into a new store (history and online "
        "values, one transaction; a fresh process, warmed up on 1% of the rows), against Feast's `materialize` of "
        "the same history from its offline store into its SQLite online store (it writes only the latest row per "
        "entity; a fresh process, warmed up on the first 1% of the time span) right after; rows per second of "
        "history",
        "Feast 0.67 `materialize` (the column `limit` is Feast; here a ratio above 1 means featurelite is faster)",
        ingest_rows, {side.label: side.results["ingest"] for side in sides},
    )
    footprint_rows = []
    for side in sides:
        i, c = side.results["ingest"], side.results["cold"]
        feast_disk = (i["feast"]["online_db_bytes"] or 0) + i["feast"]["registry_bytes"]
        parquet = sum(i["feast"]["offline_parquet_bytes"].values())
        main_parquet = i["feast"]["offline_parquet_bytes"].get("history.parquet", parquet)
        footprint_rows += [
            _row(f"{side.label}: bytes on disk, history and online (featurelite: its one file; Feast: the history "
                 "Parquet it reads plus its online store and registry)", "bytes",
                 i["featurelite"]["file_bytes"], main_parquet + feast_disk),
            _row(f"{side.label}: peak RSS of the process that ingests (streaming from the Parquet file) / "
                 "materializes", "bytes",
                 i["featurelite"]["maxrss_bytes"], i["feast"]["maxrss_bytes"]),
            _row(f"{side.label}: peak RSS of a process serving its first online value (cold start)", "bytes",
                 c["featurelite"]["maxrss_bytes"], c["feast"]["maxrss_bytes"]),
        ]
    sections["feast_footprint"] = workload(
        "vs Feast: file size on disk and peak memory",
        "bytes on disk after the ingest / materialize above (featurelite's file after `close()`, which checkpoints "
        "it; Feast keeps no copy of the history, its offline store reads the user's Parquet, so that file is counted "
        "on its side) and the peak resident set (`VmHWM`) of the processes of the ingest / materialize and "
        "cold-start steps: each process runs one step only, imports included (featurelite's ingest here streams "
        "from the Parquet file, as Feast's materialize reads it). featurelite's serving process holds "
        "the whole view's online index in memory; Feast's reads one row from SQLite.",
        "Feast 0.67 (the column `limit` is Feast)", footprint_rows, {},
    )
    cold_rows = []
    for side in sides:
        c = side.results["cold"]
        cold_rows += [
            _row(
                f"{side.label}: process start to first on-demand value (median of 3)",
                "s",
                c["featurelite"]["to_value_s"],
                None,
                Target("featurelite", "<=", 1.5),
            ),
            _row(
                f"{side.label}: wall time to process exit (median of 3)",
                "s",
                c["featurelite"]["wall_s"],
                c["feast"]["wall_s"],
            ),
        ]
    sections["feast_cold"] = workload(
        "vs Feast: cold start (new process to first on-demand value)",
        "a new process that imports the library, opens the store and reads one on-demand value (featurelite: its "
        "store with the on-demand view, featurizers already compiled; Feast: `FeatureStore(repo)` and "
        "`get_online_features` of `ratios:ratio`); each side warmed once untimed, then 3 runs",
        "Feast 0.67 (the column `limit` is Feast)", cold_rows, {},
    )
    return sections
