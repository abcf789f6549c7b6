"""Timing primitives: alternating latency sampling and repeated bulk runs.

Both sides of a comparison are measured in the same loop, one call after the other, so
that noise from a shared machine hits them alike.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

__all__ = ["alternate_bulk", "alternate_latency", "bulk_summary", "latency_summary", "stopwatch"]

#: A call under test for latency: receives the iteration number (to pick its request).
Call = Callable[[int], object]
#: One bulk run: does its own untimed setup and returns the seconds of the timed part.
Run = Callable[[], float]


#: Percentiles kept of every latency distribution (for the charts).
QUANTILES = [*range(0, 100, 2), 99, 99.5, 99.9, 100]


def latency_summary(samples_ns: np.ndarray) -> dict[str, Any]:
    """p50 / p99 / mean / min / max of latencies, in microseconds."""
    us = samples_ns.astype(np.float64) / 1_000.0
    return {
        "iterations": int(us.size),
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "min_us": float(us.min()),
        "max_us": float(us.max()),
        # The distribution, for charts: the latency at each of QUANTILES.
        "quantiles_us": [float(q) for q in np.percentile(us, QUANTILES)],
    }


def alternate_latency(
    calls: Mapping[str, Call], iterations: int, warmup: int, *, rotate: bool = False
) -> dict[str, dict[str, float]]:
    """Time ``iterations`` calls of every side, alternating sides within each iteration.

    ``rotate``: iteration ``i`` starts with side ``i % len(calls)`` (then the next ones in
    order), so that no side always runs first or always follows the same side; for
    comparisons of sides a fraction of a microsecond apart.

    ``warmup`` untimed rounds run first. A garbage collection runs before timing starts;
    the collector stays enabled during timing (as in a real server), so its pauses show
    in the tails. Each sample includes the timer and one Python call (see the ``timer``
    side in the results for that floor).
    """
    names = list(calls)
    fns = [calls[n] for n in names]
    for i in range(warmup):
        for fn in fns:
            fn(i)
    gc.collect()
    samples = np.empty((len(fns), iterations), dtype=np.int64)
    clock = time.perf_counter_ns
    count = len(fns)
    orders = [[(start + k) % count for k in range(count)] for start in range(count)] if rotate else [range(count)]
    for i in range(iterations):
        for s in orders[i % len(orders)]:
            fn = fns[s]
            t0 = clock()
            fn(i)
            samples[s, i] = clock() - t0
    return {name: latency_summary(samples[s]) for s, name in enumerate(names)}


def alternate_bulk(runs: Mapping[str, Run], repeats: int) -> dict[str, list[float]]:
    """Call every side's run ``repeats`` times, alternating; seconds per run per side.

    Before each run, garbage is collected and dirty pages are flushed to disk
    (``os.sync``), so one side's write-back does not land in the other side's timing.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            os.sync()
            seconds[name].append(run())
    return seconds


def bulk_summary(seconds: list[float], rows: int) -> dict[str, Any]:
    """Median and best of repeated bulk runs over ``rows`` rows, with throughput."""
    median = statistics.median(seconds)
    return {
        "runs_s": seconds,
        "median_s": median,
        "min_s": min(seconds),
        "rows": rows,
        "rows_per_s": rows / median,
    }


def stopwatch() -> Callable[[], float]:
    """Start a timer; calling the result gives the seconds since the start."""
    start = time.perf_counter_ns()
    return lambda: (time.perf_counter_ns() - start) / 1e9
