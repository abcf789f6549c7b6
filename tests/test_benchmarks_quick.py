"""The benchmark suite's quick mode runs end to end (CI keeps it working; the numbers are
not checked against targets here).

A benchmark, not a test of the product: marked ``slow``, so the default ``python -m pytest``
leaves it out and .ci/run runs it in a step of its own (``python -m pytest -m slow``)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = {
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
    "aggregations_online",
    "aggregations_online_batch",
    "aggregations_training",
    "aggregations_ingest",
    "aggregations_push",
    "aggregations_http",
    "services_online",
    "services_online_ondemand",
    "services_online_window",
    "services_mlflow_predict",
    "production_training",
    "production_client_online",
    "production_log",
    "production_log_http",
    "production_replay",
    "discovery_stats",
    "discovery_ui",
    "spark_training",
    "spark_scaling",
    "spark_aggregations",
    "spark_hot_key",
}
#: Workloads that need an optional extra, and the modules whose absence lets them skip.
OPTIONAL = {
    "services_mlflow_predict": ("mlflow", "featurelite.mlflow"),
    "spark_training": ("pyspark",),
    "spark_scaling": ("pyspark",),
    "spark_aggregations": ("pyspark",),
    "spark_hot_key": ("pyspark",),
}


def _can_run(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _positive_numbers(result: dict[str, Any]) -> list[float]:
    numbers = []
    for row in result["rows"]:
        if "difference" in row["metric"]:  # a difference of two latencies may have either sign
            assert isinstance(row["featurelite"], float) and row["limit"] is None, row
            continue
        numbers.append(row["featurelite"])
        if row["limit"] is not None:
            numbers.extend([row["limit"], row["ratio"]])
    return numbers


@pytest.mark.slow
def test_quick_benchmarks_run_and_write_results(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    docs = REPO / "docs" / "benchmarks.md"
    docs_before = docs.read_bytes() if docs.exists() else None
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-m", "benchmarks", "run", "--quick", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(output.read_text())
    assert results["mode"] == "quick"
    assert isinstance(results["seed"], int)
    assert results["command"] == f"python -m benchmarks run --quick --output {output}"
    assert set(results["workloads"]) == WORKLOADS
    for name, result in results["workloads"].items():
        if name in OPTIONAL and not _can_run(OPTIONAL[name]):  # skipped, saying why and what it would measure
            assert result["rows"] == [] and result["skipped"]["reason"] and result["skipped"]["targets"], result
            continue
        assert "skipped" not in result, (name, result.get("skipped"))
        numbers = _positive_numbers(result)
        assert numbers and all(isinstance(v, (int, float)) and v > 0 for v in numbers), (name, result["rows"])
        # Every workload states a target, or (where its issue asks for figures, not a
        # threshold) says so in "reported".
        assert any(row["target"] is not None for row in result["rows"]) or result.get("reported"), name
    assert (docs.read_bytes() if docs.exists() else None) == docs_before, "--quick must not touch docs/benchmarks.md"
