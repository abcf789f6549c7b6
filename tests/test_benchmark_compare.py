"""``python -m benchmarks compare``: a ratio outside the spread of earlier runs is flagged,
one inside it is not (the comparison that decides "no regression beyond noise")."""

from __future__ import annotations

from typing import Any

from benchmarks.compare import compare


def run(ratio: float, value: float = 1.0) -> dict[str, Any]:
    row = {"metric": "p50", "featurelite": value, "limit": value / ratio, "ratio": ratio}
    return {"workloads": {"online_single": {"rows": [row, {"metric": "no limit", "featurelite": 1.0, "ratio": None}]}}}


def verdict(table: str) -> str:
    (line,) = [line for line in table.splitlines() if line.startswith("| online_single |")]
    return line.rstrip(" |").rsplit("|", 1)[1].strip()


def test_a_ratio_within_the_spread_of_earlier_runs_is_noise() -> None:
    before = [("a", run(9.0)), ("b", run(10.0)), ("c", run(11.0))]
    assert verdict(compare(before, ("new", run(10.5)))) == "within noise"
    assert verdict(compare(before, ("new", run(11.9)))) == "within noise"  # within half a spread beyond it


def test_a_ratio_beyond_the_spread_is_flagged_either_way() -> None:
    before = [("a", run(9.0)), ("b", run(10.0)), ("c", run(11.0))]
    assert verdict(compare(before, ("new", run(12.5)))) == "above the spread"
    assert verdict(compare(before, ("new", run(7.0)))) == "below the spread"


def test_rows_without_a_limit_are_left_out_and_the_noise_is_shown() -> None:
    table = compare([("a", run(9.0)), ("b", run(11.0))], ("new", run(10.0)))
    assert "no limit" not in table
    assert "| 20% |" in table  # spread 2 over median 10
