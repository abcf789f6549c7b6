"""Freshness: how old the values a store serves are, and how long a push takes to be
readable; and the report ``Store.freshness()`` builds from them.

:class:`ServingStats` keeps, per feature view and since the store was opened, the ages of
the values sampled online reads served and the push-to-visible latencies of its ingests:
a cumulative histogram over fixed buckets (what Prometheus scrapes) and the latest few
thousand observations (for exact percentiles). Observations arrive off the hot path (the
serving log's writer thread, and ingests).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np

from .db import quote, run
from .definitions import FeatureView
from .layout import ViewLayout
from .reports import AgeSummary, FreshnessReport, ViewFreshness
from .types import as_utc, utc_naive

__all__ = ["AGE_BUCKETS", "LATENCY_BUCKETS", "Distribution", "ServingStats", "freshness_report"]

#: Buckets (seconds) of served value ages: from a millisecond to a month.
AGE_BUCKETS: tuple[float, ...] = (
    0.001, 0.01, 0.1, 1, 10, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400,
    30 * 86400,
)
#: Buckets (seconds) of push-to-visible latencies: from 100 us to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
#: Observations kept per distribution for percentiles (the histogram counts all of them).
KEEP = 8192


class Distribution:
    """Durations in seconds: counts per bucket (cumulative on export), their sum, and the
    latest :data:`KEEP` observations for percentiles. Not thread-safe on its own
    (:class:`ServingStats` holds a lock around it)."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above every bound (+Inf)
        self.total = 0.0
        self.recent = np.zeros(KEEP, dtype=np.float64)
        self.seen = 0

    def observe(self, seconds: np.ndarray) -> None:
        if len(seconds) == 0:
            return
        self.counts += np.bincount(np.searchsorted(self.bounds, seconds, side="left"), minlength=len(self.counts))
        self.total += float(seconds.sum())
        tail = seconds[-KEEP:]
        slots = (self.seen + np.arange(len(tail))) % KEEP
        self.recent[slots] = tail
        self.seen += len(seconds)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def summary(self) -> AgeSummary:
        if self.seen == 0:
            return AgeSummary()
        kept = self.recent[: min(self.seen, KEEP)]
        p50, p95, p99 = (float(x) for x in np.percentile(kept, [50, 95, 99]))
        return AgeSummary(self.count, p50, p95, p99, float(kept.max()))

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: (upper bound as text, observations at or below it)."""
        running = np.cumsum(self.counts).tolist()
        return [(_bound(b), c) for b, c in zip([*self.bounds.tolist(), float("inf")], running, strict=True)]


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(float(value))


@dataclass(frozen=True)
class Exported:
    """One distribution as Prometheus exports it."""

    buckets: list[tuple[str, int]]
    total: float


class ServingStats:
    """Per view, since the store was opened: served value ages, stale values served, and
    push-to-visible latencies. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ages: dict[str, Distribution] = {}
        self._stale: dict[str, int] = {}
        self._push: dict[str, Distribution] = {}
        #: Rows written to each serving log, and rows lost (a full buffer or a failed write).
        self.logged: dict[str, int] = {}
        self.dropped = 0

    def observe_ages(self, view: str, seconds: np.ndarray, slo: timedelta | None) -> None:
        """Ages of values served for ``view``; those over ``slo`` count as stale."""
        with self._lock:
            found = self._ages.get(view)
            if found is None:
                found = self._ages[view] = Distribution(AGE_BUCKETS)
            found.observe(seconds)
            if slo is not None:
                stale = int(np.count_nonzero(seconds > slo.total_seconds()))
                self._stale[view] = self._stale.get(view, 0) + stale

    def observe_push(self, view: str, seconds: float) -> None:
        """One ingest's time from its start to its values being readable online."""
        with self._lock:
            found = self._push.get(view)
            if found is None:
                found = self._push[view] = Distribution(LATENCY_BUCKETS)
            found.observe(np.array([seconds]))

    def count_logged(self, target: str, rows: int) -> None:
        with self._lock:
            self.logged[target] = self.logged.get(target, 0) + rows

    def count_dropped(self, rows: int) -> None:
        with self._lock:
            self.dropped += rows

    def summaries(self, view: str) -> tuple[AgeSummary, int, AgeSummary]:
        """(served ages, stale values served, push-to-visible) of ``view``."""
        with self._lock:
            ages, push = self._ages.get(view), self._push.get(view)
            return (
                AgeSummary() if ages is None else ages.summary(), self._stale.get(view, 0),
                AgeSummary() if push is None else push.summary(),
            )

    def export(self) -> tuple[dict[str, Exported], dict[str, int], dict[str, Exported]]:
        """(served ages, stale counts, push latencies) per view, for Prometheus."""
        with self._lock:
            return (
                {v: Exported(d.cumulative(), d.total) for v, d in self._ages.items()}, dict(self._stale),
                {v: Exported(d.cumulative(), d.total) for v, d in self._push.items()},
            )


def freshness_report(
    con: duckdb.DuckDBPyConnection, layouts: Mapping[str, ViewLayout], views: Iterable[FeatureView],
    stats: ServingStats, now: datetime,
) -> FreshnessReport:
    """Every view's freshness at ``now`` (UTC): its newest event at or before ``now`` from
    history, its SLO, and what ``stats`` observed."""
    at = utc_naive(now)
    found: list[ViewFreshness] = []
    for view in views:
        layout = layouts[view.name]
        ts = quote(layout.ts)
        newest = run(con, f"SELECT max({ts}) FROM {layout.history_table} WHERE {ts} <= ?", [at])[0][0]
        last = as_utc(newest)
        ages, stale, push = stats.summaries(view.name)
        found.append(ViewFreshness(
            view.name, view.freshness, last, None if last is None else now.astimezone(timezone.utc) - last,
            ages, stale, push,
        ))
    return FreshnessReport(now.astimezone(timezone.utc), tuple(found))
