"""The shape of the results: per workload, rows of (featurelite, limit, ratio) with an
optional target, as plain JSON-ready dicts that :mod:`benchmarks.render` turns into Markdown."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

__all__ = ["Target", "metric_row", "skipped_workload", "workload"]

_OPS = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    """A performance target on one row: ``on`` the featurelite value or the ratio."""

    on: str  #: "featurelite" or "ratio"
    op: str  #: "<=", "<" or ">="
    threshold: float

    def evaluate(self, row: dict[str, Any]) -> dict[str, Any]:
        value = row[self.on]
        met = value is not None and _OPS[self.op](value, self.threshold)
        return {"on": self.on, "op": self.op, "threshold": self.threshold, "met": bool(met)}


def metric_row(
    metric: str, unit: str, featurelite: float, limit: float | None, target: Target | None = None
) -> dict[str, Any]:
    """One compared measurement; ``ratio`` is featurelite / limit."""
    row: dict[str, Any] = {
        "metric": metric,
        "unit": unit,
        "featurelite": featurelite,
        "limit": limit,
        "ratio": featurelite / limit if limit else None,
    }
    row["target"] = None if target is None else target.evaluate(row)
    return row


def workload(
    title: str, measures: str, limit: str, rows: list[dict[str, Any]], details: dict[str, Any]
) -> dict[str, Any]:
    """A workload's results: what it measures, what the limit is, its rows and raw details."""
    return {"title": title, "measures": measures, "limit": limit, "rows": rows, "details": details}


def skipped_workload(title: str, measures: str, limit: str, reason: str, targets: list[str]) -> dict[str, Any]:
    """A workload that could not run here (an optional dependency is missing): no rows, the
    reason, and its targets as text, so the page and the summary say what was not measured."""
    return {
        "title": title,
        "measures": measures,
        "limit": limit,
        "rows": [],
        "skipped": {"reason": reason, "targets": targets},
        "note": f"not measured in this run: {reason}.",
        "details": {},
    }
