"""Run the whole suite at one scale and write the results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import (
    aggregations,
    charts,
    data,
    discovery,
    ondemand,
    peer,
    production,
    services,
    serving,
    spark_scale,
    workloads,
)
from .config import N_FEATURES, REPO, WORK_DIR, Scale
from .feast_setup import ensure_feast_venv
from .machine import describe, load, source
from .measure import stopwatch
from .render import render

__all__ = [
    "AGGREGATION_WORKLOADS", "DISCOVERY_WORKLOADS", "ONLY", "PRODUCTION_WORKLOADS", "SERVICE_WORKLOADS",
    "SPARK_WORKLOADS", "log", "run",
]


def log(message: str) -> None:
    """Progress to stderr."""
    print(f"[benchmarks {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _step(name: str, fn: Callable[[], Any]) -> Any:
    log(f"{name} ...")
    watch = stopwatch()
    result = fn()
    log(f"{name} done in {watch():.1f} s")
    return result


def _workloads(ctx: workloads.Context) -> dict[str, Any]:
    results: dict[str, Any] = {"ingest": _step("ingest", lambda: workloads.ingest(ctx))}
    ctx.history = None  # free the input before measuring memory
    results["index_memory"] = _step("online index memory", lambda: workloads.index_memory(ctx))
    results.update(_step("online reads", lambda: workloads.online(ctx)))
    results["training"] = _step("training set", lambda: workloads.training(ctx))
    results["training_ties"] = _step("training set, tied history", lambda: workloads.training_ties(ctx))
    prepared = _step("copy the store, apply the on-demand view", lambda: ondemand.prepare(ctx))
    log("on-demand store: copied in {copy_s:.1f} s, view applied in {apply_s:.2f} s".format(**prepared))
    results["online_featurizer"] = _step(
        "online read with an on-demand feature", lambda: ondemand.online_featurizer(ctx)
    )
    results["batch_featurizer"] = _step("featurizer batch path", lambda: ondemand.batch_featurizer(ctx))
    results["cold_start"] = _step("cold start", lambda: ondemand.cold_start(ctx))
    results["http_online"] = _step("HTTP serving", lambda: serving.http_online(ctx))
    results["push"] = _step("push while serving", lambda: serving.push(ctx))
    results.update(_step("windowed aggregations", lambda: aggregations.run(ctx)))
    results.update(_step("feature services", lambda: services.run(ctx)))
    results.update(_step("production", lambda: production.run(ctx)))
    results.update(_step("discovery", lambda: discovery.run(ctx)))
    results.update(_step("scaling out", lambda: spark_scale.run(ctx)))
    order = [
        "online_single",
        "online_batch",
        "online_featurizer",
        "ingest",
        "training",
        "training_ties",
        "index_memory",
        "batch_featurizer",
        "cold_start",
        "http_online",
        "push",
        *AGGREGATION_WORKLOADS,
        *SERVICE_WORKLOADS,
        *PRODUCTION_WORKLOADS,
        *DISCOVERY_WORKLOADS,
        *SPARK_WORKLOADS,
    ]
    return {name: results[name] for name in order}


#: The workloads of :mod:`benchmarks.aggregations`, in the order the page shows them.
AGGREGATION_WORKLOADS = [
    "aggregations_online",
    "aggregations_online_batch",
    "aggregations_training",
    "aggregations_ingest",
    "aggregations_push",
    "aggregations_http",
]
#: The workloads of :mod:`benchmarks.services`, in the order the page shows them.
SERVICE_WORKLOADS = list(services.NAMES)
#: The workloads of :mod:`benchmarks.production`, in the order the page shows them.
PRODUCTION_WORKLOADS = list(production.NAMES)
#: The workloads of :mod:`benchmarks.discovery`, in the order the page shows them.
DISCOVERY_WORKLOADS = list(discovery.NAMES)
#: The workloads of :mod:`benchmarks.spark_scale`, in the order the page shows them.
SPARK_WORKLOADS = list(spark_scale.NAMES)
#: Groups of workloads ``--only`` can run by themselves.
ONLY = {
    "aggregations": AGGREGATION_WORKLOADS, "services": SERVICE_WORKLOADS, "production": PRODUCTION_WORKLOADS,
    "discovery": DISCOVERY_WORKLOADS, "spark": SPARK_WORKLOADS,
}
#: What runs each group, and its name in the progress log.
_GROUPS: dict[str, tuple[str, Callable[[workloads.Context], dict[str, Any]]]] = {
    "aggregations": ("windowed aggregations", aggregations.run),
    "services": ("feature services", services.run),
    "production": ("production", production.run),
    "discovery": ("discovery", discovery.run),
    "spark": ("scaling out", spark_scale.run),
}


def _only(ctx: workloads.Context, name: str) -> dict[str, Any]:
    label, group = _GROUPS[name]
    results = _step(label, lambda: group(ctx))
    return {key: results[key] for key in ONLY[name]}


def _feast_aggregations(ctx: workloads.Context) -> dict[str, Any]:
    """Feast's side of the windowed aggregations: the smallest example, in its venv."""
    python = ensure_feast_venv(WORK_DIR)
    done = subprocess.run(
        [str(python), str(REPO / "benchmarks" / "feast_aggregations.py"), str(ctx.work / "feast-aggregations")],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=600,
    )
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"the Feast aggregation probe failed: {done.stderr[-3000:]}")
    return aggregations.feast_section(json.loads(done.stdout.strip().splitlines()[-1]))


def run(
    scale: Scale, *, seed: int, output: Path, docs: Path | None, command: str, keep_work: bool = False,
    feast: bool = False, only: str | None = None,
) -> dict[str, Any]:
    """Generate the data, run every workload, write ``output`` (JSON) and, if given,
    ``docs`` (Markdown). Working files live in a fresh folder under benchmarks/work/,
    removed afterwards unless ``keep_work``. ``only``: run just that group of workloads
    (a key of ``ONLY``), with Feast's side of it if ``feast``."""
    started, watch, load_before, source_before = datetime.now(timezone.utc), stopwatch(), load(), source()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{scale.name}-", dir=WORK_DIR))
    try:
        history = None if only else _step(
            f"generate {scale.history_rows:,} history rows", lambda: data.history(scale, seed)
        )
        spine = data.spine(scale, seed)
        ctx = workloads.Context(scale=scale, seed=seed, work=work, history=history, spine=spine, log=log)
        del history
        inputs = _step("write the data as Parquet for Feast", lambda: peer.write_inputs(ctx)) if feast and not only \
            else None
        measured = _only(ctx, only) if only else _workloads(ctx)
        versus = _step("Feast 0.67 on the same data", lambda: peer.versus_feast(ctx, inputs)) if inputs else None
        if feast and (only is None or only == "aggregations"):
            measured["feast_aggregations"] = _step(
                "Feast 0.67: windowed aggregations in a training set", lambda: _feast_aggregations(ctx)
            )
        if feast and (only is None or only == "spark"):
            measured["spark_feast"] = _step(
                "Feast 0.67: a training set on its Spark offline store",
                lambda: spark_scale.feast_spark(ctx, measured.get("spark_training")),
            )
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {
        "schema_version": 1,
        "mode": scale.name,
        "command": command,
        **({"only": only} if only else {}),
        "seed": seed,
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": watch(),
        "machine": describe(),
        "load": {"start": load_before, "end": load()},
        "featurelite_source": {**source_before, "changed_during_run": source() != source_before},
        "scale": scale.to_dict(),
        "features": N_FEATURES,
        "workloads": measured,
    }
    if versus is not None:
        results["workloads"].update(versus.pop("workloads"))
        results["feast"] = versus
    if results["featurelite_source"]["changed_during_run"]:
        log("WARNING: featurelite's sources changed during the run; the numbers mix two versions")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {output}")
    if docs is not None:
        docs.parent.mkdir(parents=True, exist_ok=True)
        if "feast" in results:
            results["charts"] = charts.draw(results, docs.parent / "benchmarks")
        docs.write_text(render(results))
        log(f"wrote {docs}")
        if "feast" in results:
            charts.write_readme_summary(results, docs.parent.parent / "README.md")
    return results
