"""Compare full runs: did a change move featurelite against its limits by more than the noise?

``python -m benchmarks compare --before REV [REV ...] --after PATH`` reads the results JSON
of each ``--before`` git revision (``benchmarks/results/latest.json`` as committed there)
and of ``--after`` (a file), and prints a Markdown table per workload row that has a limit:
featurelite's number and its ratio to the limit in each run. Ratios are compared, not raw
numbers, because each run measures featurelite and its limit side by side, so a slower or
busier machine moves both. The noise is the spread of the ratio over the ``--before`` runs
(taken on code that did not change the measured path); a change is flagged when the
``--after`` ratio falls outside that spread widened by half of it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from statistics import median
from typing import Any

__all__ = ["compare", "load_revision"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = "benchmarks/results/latest.json"


def load_revision(revision: str) -> dict[str, Any]:
    """The full-run results committed at ``revision``."""
    text = subprocess.run(
        ["git", "show", f"{revision}:{RESULTS}"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _ratios(results: dict[str, Any]) -> dict[tuple[str, str], tuple[float, float]]:
    """(workload, metric) -> (featurelite, ratio to the limit), for rows that have a limit."""
    found = {}
    for name, workload in results["workloads"].items():
        for row in workload.get("rows", []):
            if row.get("ratio") is not None and isinstance(row.get("featurelite"), (int, float)):
                found[(name, row["metric"])] = (float(row["featurelite"]), float(row["ratio"]))
    return found


def compare(before: list[tuple[str, dict[str, Any]]], after: tuple[str, dict[str, Any]]) -> str:
    """The Markdown comparison of ``after`` against the ``before`` runs (label, results)."""
    runs = [_ratios(results) for _, results in before]
    now = _ratios(after[1])
    labels = [label for label, _ in before]
    lines = [
        f"| workload | metric | {' | '.join(f'ratio {label}' for label in labels)} | noise (spread) | "
        f"ratio {after[0]} | featurelite {after[0]} | verdict |",
        "|---" * (len(labels) + 6) + "|",
    ]
    for key in sorted(now):
        past = [run[key][1] for run in runs if key in run]
        if not past:
            continue
        low, high, mid = min(past), max(past), median(past)
        spread = high - low
        value, ratio = now[key]
        if spread == 0:
            verdict = "n/a (one earlier run)" if len(past) == 1 else "same"
        elif ratio > high + spread / 2:
            verdict = "above the spread"
        elif ratio < low - spread / 2:
            verdict = "below the spread"
        else:
            verdict = "within noise"
        cells = " | ".join(f"{r:.3g}" for r in (run[key][1] if key in run else float("nan") for run in runs))
        lines.append(
            f"| {key[0]} | {key[1]} | {cells} | {spread / mid:.0%} | {ratio:.3g} | {value:.4g} | {verdict} |"
        )
    return "\n".join(lines)


def main(before: list[str], after: Path) -> str:
    return compare([(rev, load_revision(rev)) for rev in before], (after.name, json.loads(after.read_text())))
