"""Seeded, vectorised data generators. The same seed gives the same bytes on any machine
with the same NumPy major version (``numpy.random.default_rng``, PCG64)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from .config import FEATURES, KEY, TS, Scale

__all__ = ["history", "request_keys", "spine"]

#: First event time of the generated history (well in the past, so that online reads at
#: "now" never need the rare future-event path).
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
START_US = int(START.timestamp()) * 1_000_000
SPAN_US = 180 * 24 * 3600 * 1_000_000
#: The training spine reaches a week before the first and after the last event.
MARGIN_US = 7 * 24 * 3600 * 1_000_000

#: Independent random streams, one per generator, derived from the run's seed.
_HISTORY, _SPINE, _REQUESTS = 1, 2, 3


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
