"""The tiny inputs of the Feast comparison (benchmarks/differences.py): featurelite's side
gives the answers its rules promise, and the comparison names every kind of difference.
(Feast's side runs only in `python -m benchmarks run --full`.)"""

from __future__ import annotations

import copy

from benchmarks import differences
from benchmarks.differences import CASES, compare, featurelite_side

BY_NAME = {case.name: case for case in CASES}


def test_featurelite_answers_the_edge_cases_by_its_rules() -> None:
    answers = {case.name: featurelite_side(case) for case in CASES}
    # A late, older event never replaces the newer value, offline or online.
    assert answers["late_older_event"]["online"] == [3.0]
    assert [r["x"] for r in answers["late_older_event"]["training"]] == [3.0]
    # A tie on key and event time goes to the row ingested last, in both paths.
    assert answers["tie_same_event_time"]["online"] == [2.0]
    assert [r["x"] for r in answers["tie_same_event_time"]["training"]] == [2.0, 2.0]
    # One training row per entity-dataframe row, repeated rows included.
    assert len(answers["repeated_entity_rows"]["training"]) == 2
    # NaN stays NaN (not null) in both paths.
    assert answers["nan_value"]["online"] == ["NaN"]
    assert [r["x"] for r in answers["nan_value"]["training"]] == ["NaN"]
    # An event is visible at exactly its time, not a microsecond before.
    assert [r["x"] for r in answers["entity_row_at_event_time"]["training"]] == [1.0, None]


def test_compare_names_each_kind_of_difference() -> None:
    case = BY_NAME["repeated_entity_rows"]
    mine = featurelite_side(case)
    assert compare(case, mine, copy.deepcopy(mine))["agree"] is True

    dropped = copy.deepcopy(mine)
    dropped["training"] = dropped["training"][:1]
    verdict = compare(case, mine, dropped)
    assert verdict["agree"] is False
    assert any("2 rows from featurelite, 1 from Feast" in d for d in verdict["differences"])

    other_value = copy.deepcopy(mine)
    other_value["training"][0]["x"] = None
    other_value["online"] = [None]
    verdict = compare(case, mine, other_value)
    assert any(d.startswith("training values:") and "x = None" in d for d in verdict["differences"])
    assert any(d.startswith("online value:") for d in verdict["differences"])

    failed = compare(case, mine, {"error": "boom"})
    assert failed["agree"] is None and "boom" in failed["differences"][0]


def test_every_case_is_described_and_sent_to_feast_whole() -> None:
    config = differences.to_config()
    assert [c["name"] for c in config] == [case.name for case in CASES]
    for case, sent in zip(CASES, config, strict=True):
        assert sent["steps"] == case.steps and sent["spine"] == case.spine
        text = differences.describe_input(case)
        assert text.startswith("ingest (key 1, day") and "training rows" in text
