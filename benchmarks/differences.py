"""The smallest inputs on which Feast and featurelite could disagree, run through both.

On the benchmark data the two agree value for value (random microsecond times: no ties,
no late events, one materialize). The rules differ at the edges, so each case here is a
handful of rows that exercises one edge: a late event older than the online value, two
rows with the same key and event time, repeated entity rows, NaN, a training row exactly
at an event time. Feast runs each case in its own repo (``feast_driver.py``, task
``cases``); featurelite runs it in memory here; :func:`compare` says where they differ.
The page shows the verdicts of the run; the causes below are what Feast 0.67's source
does, and are shown only for a case that differed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

import featurelite as fl

from .data import START_US

__all__ = ["CASES", "Case", "compare", "featurelite_side", "to_config"]

DAY_US = 86_400_000_000
KEY, TS = "user_id", "ts"


def _row(key: int, day: float, x: float | str | None) -> dict[str, Any]:
    return {KEY: key, TS: START_US + int(day * DAY_US), "x": x}


def _at(key: int, day: float, offset_us: int = 0) -> dict[str, Any]:
    return {KEY: key, TS: START_US + int(day * DAY_US) + offset_us}


@dataclass(frozen=True)
class Case:
    """A tiny input: ``steps`` (appends and Feast materialize windows, in order), then a
    training set over ``spine`` and an online read of ``online_keys``."""

    name: str
    what: str  #: what the case exercises
    steps: list[dict[str, Any]]
    spine: list[dict[str, Any]]
    online_keys: list[int] = field(default_factory=lambda: [1])
    #: Why Feast answers otherwise, from its source; shown only when the run finds a difference.
    cause: str = ""


CASES: list[Case] = [
    Case(
        "late_older_event",
        "an event arrives late with an older event time than the value online; Feast materializes the window "
        "that holds it (as a backfill would)",
        [
            {"append": [_row(1, 3, 3.0)]},
            {"materialize": [START_US, START_US + 4 * DAY_US]},
            {"append": [_row(1, 1, 1.0)]},
            {"materialize": [START_US + DAY_US // 2, START_US + 3 * DAY_US // 2]},
        ],
        [_at(1, 5)],
        cause="Feast's SQLite online store writes each materialized row with an unconditional upsert "
        "(`INSERT ... ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, event_ts = ...` in "
        "`feast/infra/online_stores/sqlite.py`): whatever is materialized last wins, so the older event replaces the "
        "newer value and online serving disagrees with the training set. featurelite's online write keeps the row "
        "with the later event time whatever the order of arrival.",
    ),
    Case(
        "tie_same_event_time",
        "two rows with the same key and event time (a re-sent correction), the correction second",
        [
            {"append": [_row(1, 1, 1.0), _row(1, 1, 2.0)]},
            {"materialize": [START_US, START_US + 2 * DAY_US]},
        ],
        [_at(1, 1), _at(1, 2)],
        cause="Feast breaks ties on event time only by the created timestamp, which this view does not have; among "
        "rows equal on both, its training query and its materialize query each keep whichever row they meet first, "
        "so they need not pick the same one, and Feast's online value can disagree with its own training set. "
        "featurelite's rule, offline and online alike: the row ingested last wins (here the correction, 2.0).",
    ),
    Case(
        "repeated_entity_rows",
        "the entity dataframe holds the same (key, time) twice",
        [{"append": [_row(1, 1, 1.0)]}, {"materialize": [START_US, START_US + 2 * DAY_US]}],
        [_at(1, 2), _at(1, 2)],
    ),
    Case(
        "nan_value",
        "a stored NaN (a value, not a missing one)",
        [{"append": [_row(1, 1, "NaN")]}, {"materialize": [START_US, START_US + 2 * DAY_US]}],
        [_at(1, 2)],
        cause="Feast's materialize converts values to protobuf with `pd.isnull(value)` as its test for a missing "
        "value (`feast/type_map.py`), and `pd.isnull(nan)` is true: the NaN is stored online as a missing value, "
        "while its training set keeps the NaN. featurelite keeps NaN and null apart in both paths.",
    ),
    Case(
        "entity_row_at_event_time",
        "training rows exactly at an event time and one microsecond before it",
        [{"append": [_row(1, 1, 1.0)]}, {"materialize": [START_US, START_US + 2 * DAY_US]}],
        [_at(1, 1), _at(1, 1, -1)],
    ),
]


def to_config() -> list[dict[str, Any]]:
    """The cases as the Feast driver's ``cases`` config."""
    return [{"name": c.name, "steps": c.steps, "spine": c.spine, "online_keys": c.online_keys} for c in CASES]


def _value(x: Any) -> Any:
    return "NaN" if isinstance(x, float) and math.isnan(x) else x


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.table({
        KEY: pa.array([r[KEY] for r in rows], pa.int64()),
        "x": pa.array([math.nan if r["x"] == "NaN" else r["x"] for r in rows], pa.float64()),
        TS: pa.array([r[TS] for r in rows], pa.timestamp("us")),
    })


def featurelite_side(case: Case) -> dict[str, Any]:
    """The case through featurelite, in memory: appends are ingests (online values are
    kept current at ingest, so Feast's materialize steps have nothing to do here)."""
    user = fl.Entity("user", join_keys=[KEY])
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field=TS)
    with fl.open() as store:
        store.apply([user, view])
        for step in case.steps:
            if "append" in step:
                store.ingest("v", _table(step["append"]))
        spine = pa.table({
            KEY: pa.array([r[KEY] for r in case.spine], pa.int64()),
            "event_timestamp": pa.array([r[TS] for r in case.spine], pa.timestamp("us")),
        })
        trained = store.get_historical_features(spine, ["v:x"])
        training = [
            {KEY: k, TS: int(t.replace(tzinfo=timezone.utc).timestamp() * 1_000_000), "x": _value(x)}
            for k, t, x in zip(
                trained.column(KEY).to_pylist(),
                trained.column("event_timestamp").to_pylist(),
                trained.column("x").to_pylist(),
                strict=True,
            )
        ]
        online = store.get_online_features({KEY: case.online_keys}, ["v:x"], now=datetime(2100, 1, 1))
        return {"training": training, "online": [_value(x) for x in online.to_dict()["x"]]}


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row[KEY], row[TS], repr(row["x"]))


def compare(case: Case, mine: dict[str, Any], feast: dict[str, Any]) -> dict[str, Any]:
    """Where the two answers differ: training rows (as multisets: Feast does not keep the
    entity dataframe's order) and online values."""
    if "error" in feast:
        return {"name": case.name, "agree": None, "differences": [f"Feast failed: {feast['error']}"],
                "featurelite": mine, "feast": feast}
    differences: list[str] = []
    ours, theirs = Counter(map(_key, mine["training"])), Counter(map(_key, feast["training"]))
    if len(mine["training"]) != len(feast["training"]):
        differences.append(
            f"training set: {len(mine['training'])} rows from featurelite, {len(feast['training'])} from Feast "
            f"(entity dataframe: {len(case.spine)})"
        )
    if ours != theirs:
        only_ours, only_theirs = ours - theirs, theirs - ours
        differences.append(
            "training values: featurelite " + ", ".join(_show(k) for k in sorted(only_ours, key=repr))
            + " / Feast " + ", ".join(_show(k) for k in sorted(only_theirs, key=repr))
        )
    if [repr(x) for x in mine["online"]] != [repr(x) for x in feast["online"]]:
        differences.append(f"online value: featurelite {mine['online']}, Feast {feast['online']}")
    return {"name": case.name, "agree": not differences, "differences": differences,
            "featurelite": mine, "feast": feast}


def _when(us: int) -> str:
    """A time as days after the history's start (to the half day), plus or minus µs."""
    half = DAY_US // 2
    steps = round((us - START_US) / half)
    off = us - START_US - steps * half
    return f"day {steps / 2:g}" + (f" {'+' if off > 0 else '-'} {abs(off)} µs" if off else "")


def _show(key: tuple[Any, ...]) -> str:
    who, ts, x = key
    return f"(key {who}, {_when(ts)}: x = {x})"


def describe_input(case: Case) -> str:
    """The case's input in one line, event times as days after the history's start."""
    parts = []
    for step in case.steps:
        if "append" in step:
            rows = ", ".join(f"(key {r[KEY]}, {_when(r[TS])}, x = {r['x']})" for r in step["append"])
            parts.append(f"ingest {rows}")
        else:
            start, end = step["materialize"]
            parts.append(f"Feast materializes [{_when(start)}, {_when(end)}]")
    spine = ", ".join(f"(key {r[KEY]}, {_when(r[TS])})" for r in case.spine)
    return "; then ".join(parts) + f"; training rows {spine}; online read of key(s) {case.online_keys}"
