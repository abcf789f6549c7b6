"""Run the whole suite at one scale and write the results."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import charts, data, ondemand, peer, serving, workloads
from .config import N_FEATURES, WORK_DIR, Scale
from .machine import describe, load, source
from .measure import stopwatch
from .render import render

__all__ = ["log", "run"]


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
    ]
    return {name: results[name] for name in order}


def run(
    scale: Scale, *, seed: int, output: Path, docs: Path | None, command: str, keep_work: bool = False,
    feast: bool = False,
) -> dict[str, Any]:
    """Generate the data, run every workload, write ``output`` (JSON) and, if given,
    ``docs`` (Markdown). Working files live in a fresh folder under benchmarks/work/,
    removed afterwards unless ``keep_work``."""
    started, watch, load_before, source_before = datetime.now(timezone.utc), stopwatch(), load(), source()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{scale.name}-", dir=WORK_DIR))
    try:
        history = _step(f"generate {scale.history_rows:,} history rows", lambda: data.history(scale, seed))
        spine = data.spine(scale, seed)
        ctx = workloads.Context(scale=scale, seed=seed, work=work, history=history, spine=spine, log=log)
        del history
        inputs = _step("write the data as Parquet for Feast", lambda: peer.write_inputs(ctx)) if feast else None
        measured = _workloads(ctx)
        versus = _step("Feast 0.67 on the same data", lambda: peer.versus_feast(ctx, inputs)) if inputs else None
    finally:
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)
    results: dict[str, Any] = {
        "schema_version": 1,
        "mode": scale.name,
        "command": command,
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
