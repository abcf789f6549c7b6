"""Seeded, vectorised data generators. The same seed gives the same bytes on any machine
with the same NumPy major version (``numpy.random.default_rng``, PCG64)."""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import numpy as np
import pyarrow as pa

from .config import FEATURES, KEY, TS, Scale

__all__ = [
    "AGG_DAYS", "TIE_SHARE", "agg_request_keys", "agg_spine", "events", "extra_history", "featurizer_columns",
    "history", "history_with_ties", "pushes", "request_keys", "spine", "tie_winners",
]

#: First event time of the generated history (well in the past, so that online reads at
#: "now" never need the rare future-event path).
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
START_US = int(START.timestamp()) * 1_000_000
SPAN_US = 180 * 24 * 3600 * 1_000_000
#: The training spine reaches a week before the first and after the last event.
MARGIN_US = 7 * 24 * 3600 * 1_000_000

#: Share of history rows that, in :func:`history_with_ties`, repeat the key and event time
#: of another row.
TIE_SHARE = 0.10

#: Independent random streams, one per generator, derived from the run's seed.
_HISTORY, _SPINE, _REQUESTS, _TIES, _FEATURIZER, _EXTRA = 1, 2, 3, 4, 5, 6
_EVENTS, _AGG_SPINE, _AGG_REQUESTS, _AGG_PUSH = 7, 8, 9, 10

#: Days the events of the windowed-aggregation workloads span (from START).
AGG_DAYS = 30
_DAY_US = 24 * 3600 * 1_000_000


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def _timestamps(rng: np.random.Generator, count: int, low_us: int, high_us: int) -> pa.Array:
    """``count`` naive UTC microsecond timestamps, uniform in [low, high)."""
    return pa.array(rng.integers(low_us, high_us, count, dtype=np.int64), pa.timestamp("us"))


def history(scale: Scale, seed: int) -> pa.Table:
    """Feature history: ``scale.history_rows`` rows of (user_id, f0..f9, ts), every one of
    ``scale.entities`` keys appearing about equally often, in random order, at random
    microsecond times over 180 days."""
    rng = _rng(seed, _HISTORY)
    rows = scale.history_rows
    keys = rng.permutation(np.arange(rows, dtype=np.int64) % scale.entities)
    columns: dict[str, pa.Array] = {KEY: pa.array(keys)}
    for name in FEATURES:
        columns[name] = pa.array(rng.standard_normal(rows))
    columns[TS] = _timestamps(rng, rows, START_US, START_US + SPAN_US)
    return pa.table(columns)


def extra_history(scale: Scale, seed: int, number: int, features: list[str], share: float = 0.2) -> pa.Table:
    """The history of a second (third, ...) view of the same entity, for training sets over
    several views: ``share`` of ``scale.history_rows`` rows of (user_id, ``features``, ts),
    drawn like :func:`history` from a stream of its own per ``number``."""
    rng = np.random.default_rng([seed, _EXTRA, number])
    rows = max(1, int(scale.history_rows * share))
    keys = rng.permutation(np.arange(rows, dtype=np.int64) % scale.entities)
    columns: dict[str, pa.Array] = {KEY: pa.array(keys)}
    for name in features:
        columns[name] = pa.array(rng.standard_normal(rows))
    columns[TS] = _timestamps(rng, rows, START_US, START_US + SPAN_US)
    return pa.table(columns)


def history_with_ties(scale: Scale, seed: int, share: float = TIE_SHARE) -> pa.Table:
    """:func:`history` with ties: ``share`` of the rows (chosen at random) take the event
    time of another row of the same key, so each such row repeats that row's (key, ts).
    Keys, features and row order are unchanged; every tie is a pair (the copied row is
    never a copy itself), so ``2 * share`` of the rows are tied."""
    table = history(scale, seed)
    keys = table.column(KEY).to_numpy()
    ts = table.column(TS).cast(pa.int64()).to_numpy().copy()
    n = len(keys)
    # Rows grouped by key; a row at an odd position of its group may copy the row just
    # before it (an even position), which is then never a copy.
    order = np.argsort(keys, kind="stable")
    grouped = keys[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    position = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    candidates = np.flatnonzero(position % 2 == 1)
    count = min(round(share * n), len(candidates))
    copies = _rng(seed, _TIES).choice(candidates, size=count, replace=False)
    ts[order[copies]] = ts[order[copies - 1]]
    return table.set_column(table.schema.get_field_index(TS), TS, pa.array(ts, pa.timestamp("us")))


def tie_winners(table: pa.Table) -> pa.Table:
    """(key, ts, f0) of every (key, ts) that several rows of ``table`` share, with the
    ``f0`` of the last of them in table order: the row featurelite's tie-break picks when
    ``table`` is ingested in one call (later ingest sequence wins)."""
    with duckdb.connect() as con:
        rows = table.select([KEY, TS, FEATURES[0]]).append_column("_row", pa.array(np.arange(table.num_rows)))
        con.register("rows", rows)
        return con.sql(
            f"SELECT {KEY}, {TS}, arg_max({FEATURES[0]}, _row) AS {FEATURES[0]} FROM rows "
            f"GROUP BY {KEY}, {TS} HAVING count(*) > 1"
        ).to_arrow_table()


def spine(scale: Scale, seed: int) -> pa.Table:
    """The entity dataframe of a training set: (user_id, event_timestamp, label), keys
    drawn uniformly and times reaching a week beyond the history on both sides (so some
    rows match nothing and get nulls)."""
    rng = _rng(seed, _SPINE)
    rows = scale.spine_rows
    return pa.table(
        {
            KEY: pa.array(rng.integers(0, scale.entities, rows, dtype=np.int64)),
            "event_timestamp": _timestamps(rng, rows, START_US - MARGIN_US, START_US + SPAN_US + MARGIN_US),
            "label": pa.array(rng.integers(0, 2, rows, dtype=np.int8)),
        }
    )


def request_keys(scale: Scale, seed: int, count: int) -> list[int]:
    """``count`` entity keys for online requests, uniform over all entities."""
    keys: list[int] = _rng(seed, _REQUESTS).integers(0, scale.entities, count, dtype=np.int64).tolist()
    return keys


def featurizer_columns(scale: Scale, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 columns of ``scale.featurizer_rows`` standard normal values: the inputs
    of the batch featurizer workload."""
    rng = _rng(seed, _FEATURIZER)
    return rng.standard_normal(scale.featurizer_rows), rng.standard_normal(scale.featurizer_rows)


def events(scale: Scale, seed: int) -> pa.Table:
    """Events of the windowed-aggregation workloads: ``scale.agg_events`` rows of
    (user_id, amount, ts), every one of ``scale.agg_entities`` keys appearing about equally
    often, in random order, ``amount`` standard normal float64, ``ts`` uniform microseconds
    over AGG_DAYS days from START."""
    rng = _rng(seed, _EVENTS)
    rows = scale.agg_events
    return pa.table(
        {
            KEY: pa.array(rng.permutation(np.arange(rows, dtype=np.int64) % scale.agg_entities)),
            "amount": pa.array(rng.standard_normal(rows)),
            TS: _timestamps(rng, rows, START_US, START_US + AGG_DAYS * _DAY_US),
        }
    )


def agg_spine(scale: Scale, seed: int) -> pa.Table:
    """Entity rows of the windowed-aggregation training set: (user_id, event_timestamp,
    label), keys uniform, times uniform from a day before the events to a day after."""
    rng = _rng(seed, _AGG_SPINE)
    rows = scale.agg_spine_rows
    return pa.table(
        {
            KEY: pa.array(rng.integers(0, scale.agg_entities, rows, dtype=np.int64)),
            "event_timestamp": _timestamps(rng, rows, START_US - _DAY_US, START_US + (AGG_DAYS + 1) * _DAY_US),
            "label": pa.array(rng.integers(0, 2, rows, dtype=np.int8)),
        }
    )


def agg_request_keys(scale: Scale, seed: int, count: int) -> list[int]:
    """``count`` keys for online reads of the windowed-aggregation workloads."""
    keys: list[int] = _rng(seed, _AGG_REQUESTS).integers(0, scale.agg_entities, count, dtype=np.int64).tolist()
    return keys


def pushes(scale: Scale, seed: int, count: int, after_us: int, size: int = 1_000) -> list[pa.Table]:
    """``count`` batches of ``size`` fresh events (user_id, amount, ts): distinct keys per
    batch, event times after ``after_us``, each batch a second after the one before."""
    rng = _rng(seed, _AGG_PUSH)
    out = []
    for b in range(count):
        base = after_us + (b + 1) * 1_000_000
        out.append(
            pa.table(
                {
                    KEY: pa.array(rng.choice(scale.agg_entities, size, replace=False).astype(np.int64)),
                    "amount": pa.array(rng.standard_normal(size)),
                    TS: pa.array(base + np.arange(size, dtype=np.int64), pa.timestamp("us")),
                }
            )
        )
    return out
