"""Cross-checks of Feast's answers (written by :mod:`benchmarks.feast_driver`) against
featurelite's, in the featurelite environment (pyarrow and numpy only; no Feast).

- :func:`compare`: a training set, Feast's Parquet against featurelite's Arrow table.
- :func:`compare_online`: online values, Feast's JSON dump against featurelite's
  ``get_online_features(...).to_dict()``.

Both return plain JSON-ready dicts: how many rows / values agree, and the kinds of
difference found, each with a count and its smallest example (smallest key, then event
time, then feature), so a difference can be looked at by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import KEY

__all__ = ["compare", "compare_online"]

TS = "event_timestamp"
LABEL = "label"
#: Kinds of per-value difference, in the order they are reported.
KINDS = (
    "differ",  # both sides hold a number, not the same one
    "feast_null_featurelite_value",
    "featurelite_null_feast_value",
    "nan_vs_null",  # NaN on one side, null on the other
    "nan_vs_value",  # NaN on one side, a number on the other
    "signed_zero",  # 0.0 against -0.0 (equal as numbers, other bits)
)
#: Kinds of agreement.
AGREE = ("equal", "both_null", "both_nan")


def _feature_name(name: str) -> str:
    """``view:feature`` or ``view__feature`` -> ``feature``."""
    if ":" in name:
        return name.split(":", 1)[1]
    if "__" in name:
        return name.split("__", 1)[1]
    return name


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps (any unit, naive UTC or zoned) as int64 microseconds since the epoch,
    UTC; nulls as the minimum int64."""
    t = column.type
    if pa.types.is_timestamp(t):
        column = column.cast(pa.timestamp("us", t.tz), safe=False).cast(pa.int64())
    elif not pa.types.is_integer(t):
        raise TypeError(f"not a timestamp column: {t}")
    return np.asarray(column.fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False), dtype=np.int64)


def _floats(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 and a validity mask (True = not null)."""
    column = column.cast(pa.float64())
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    values = np.asarray(column.fill_null(0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, valid


def _iso(us: int) -> str | None:
    if us == np.iinfo(np.int64).min:
        return None
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).replace(tzinfo=None).isoformat()


def _value(v: float, ok: bool) -> float | str | None:
    if not ok:
        return None
    if math.isnan(v):
        return "NaN"
    return float(v)


def _classify(a: np.ndarray, a_ok: np.ndarray, b: np.ndarray, b_ok: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of every kind of agreement and difference between side a (Feast) and side b
    (featurelite); exactly one is true per position."""
    a_nan = a_ok & np.isnan(a)
    b_nan = b_ok & np.isnan(b)
    a_num = a_ok & ~a_nan
    b_num = b_ok & ~b_nan
    both = a_num & b_num
    same_bits = a.view(np.uint64) == b.view(np.uint64)
    return {
        "equal": both & same_bits,
        "both_null": ~a_ok & ~b_ok,
        "both_nan": a_nan & b_nan,
        "differ": both & (a != b),
        "signed_zero": both & (a == b) & ~same_bits,
        "feast_null_featurelite_value": ~a_ok & b_num,
        "featurelite_null_feast_value": a_num & ~b_ok,
        "nan_vs_null": (a_nan & ~b_ok) | (~a_ok & b_nan),
        "nan_vs_value": (a_nan & b_num) | (a_num & b_nan),
    }


def _occurrence(keys: Sequence[np.ndarray]) -> np.ndarray:
    """For each row, how many earlier rows (in a stable order) share all of ``keys``."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(tuple(reversed(keys)))
    sorted_keys = [k[order] for k in keys]
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    for k in sorted_keys:
        new_group[1:] |= k[1:] != k[:-1]
    starts = np.flatnonzero(new_group)
    lengths = np.diff(np.r_[starts, n])
    rank_sorted = np.arange(n) - np.repeat(starts, lengths)
    occ = np.empty(n, dtype=np.int64)
    occ[order] = rank_sorted
    return occ


def _key_columns(table: pa.Table, use_label: bool) -> list[np.ndarray]:
    cols = [np.asarray(table.column(KEY).cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(), dtype=np.int64),
            _micros(table.column(TS))]
    if use_label:
        cols.append(np.asarray(table.column(LABEL).cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(),
                               dtype=np.int64))
    return cols


def _match(a_keys: list[np.ndarray], b_keys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pair rows of a and b with equal keys (the i-th duplicate with the i-th duplicate):
    index arrays ``ia``, ``ib`` of the pairs, in b's row order."""
    a_occ = _occurrence(a_keys)
    b_occ = _occurrence(b_keys)
    a_tab = pa.table({**{f"k{i}": k for i, k in enumerate(a_keys)}, "occ": a_occ, "ia": np.arange(len(a_occ))})
    b_tab = pa.table({**{f"k{i}": k for i, k in enumerate(b_keys)}, "occ": b_occ, "ib": np.arange(len(b_occ))})
    joined = a_tab.join(b_tab, keys=[*(f"k{i}" for i in range(len(a_keys))), "occ"], join_type="inner")
    ia = joined.column("ia").to_numpy()
    ib = joined.column("ib").to_numpy()
    order = np.argsort(ib, kind="stable")
    return ia[order], ib[order]


def compare(feast_training_parquet: str | Path, featurelite_training_table: pa.Table) -> dict[str, Any]:
    """Compare Feast's training set (the Parquet the driver wrote) with featurelite's, for
    the same entity dataframe.

    Rows are paired on (user_id, event_timestamp, label), the n-th duplicate with the n-th
    (Feast returns rows in another order than the entity dataframe's). Reports row counts,
    rows Feast dropped / added, per-kind value counts (equal, both null, both NaN, differ,
    null on one side only, NaN against null or a number, signed zeros), per feature, and
    the smallest example of every kind of difference.
    """
    feast = pq.read_table(feast_training_parquet)
    mine = featurelite_training_table
    for side, table in (("feast", feast), ("featurelite", mine)):
        for col in (KEY, TS):
            if col not in table.column_names:
                raise ValueError(f"the {side} table has no column {col!r}: {table.column_names}")
    feast = feast.rename_columns([_feature_name(c) for c in feast.column_names])
    mine = mine.rename_columns([_feature_name(c) for c in mine.column_names])
    key_cols = {KEY, TS, LABEL}
    features = [c for c in mine.column_names if c not in key_cols and c in feast.column_names]
    use_label = LABEL in feast.column_names and LABEL in mine.column_names
    a_keys, b_keys = _key_columns(feast, use_label), _key_columns(mine, use_label)
    ia, ib = _match(a_keys, b_keys)
    b_only = np.ones(mine.num_rows, dtype=bool)
    b_only[ib] = False
    a_only = np.ones(feast.num_rows, dtype=bool)
    a_only[ia] = False

    def row_example(keys: list[np.ndarray], idx: np.ndarray) -> dict[str, Any] | None:
        if idx.size == 0:
            return None
        order = np.lexsort(tuple(reversed([k[idx] for k in keys])))
        i = int(idx[order[0]])
        out: dict[str, Any] = {KEY: int(keys[0][i]), TS: _iso(int(keys[1][i]))}
        if use_label:
            out[LABEL] = int(keys[2][i])
        return out

    # Dropped rows: featurelite rows without a Feast partner, split by whether
    # featurelite found a value for them (a Feast drop of a matched row is the worse kind).
    dropped_idx = np.flatnonzero(b_only)
    dropped_with_values = 0
    if features and dropped_idx.size:
        _, ok = _floats(mine.column(features[0]))
        dropped_with_values = int(ok[dropped_idx].sum())

    kinds_total = {k: 0 for k in (*AGREE, *KINDS)}
    per_feature: dict[str, dict[str, int]] = {}
    examples: dict[str, dict[str, Any]] = {}
    max_abs_diff = 0.0
    row_differs = np.zeros(ia.size, dtype=bool)
    for f in features:
        a, a_ok = _floats(feast.column(f))
        b, b_ok = _floats(mine.column(f))
        a, a_ok, b, b_ok = a[ia], a_ok[ia], b[ib], b_ok[ib]
        masks = _classify(a, a_ok, b, b_ok)
        counts = {k: int(m.sum()) for k, m in masks.items()}
        per_feature[f] = {k: v for k, v in counts.items() if v}
        for k, v in counts.items():
            kinds_total[k] += v
        for kind in KINDS:
            mask = masks[kind]
            if not mask.any():
                continue
            row_differs |= mask
            idx = np.flatnonzero(mask)
            pair_keys = [k[ib[idx]] for k in b_keys]
            best = int(np.lexsort(tuple(reversed(pair_keys)))[0])
            j = int(idx[best])
            candidate: dict[str, Any] = {KEY: int(b_keys[0][ib[j]]), TS: _iso(int(b_keys[1][ib[j]]))}
            if use_label:
                candidate[LABEL] = int(b_keys[2][ib[j]])
            candidate.update(feature=f, feast=_value(a[j], bool(a_ok[j])), featurelite=_value(b[j], bool(b_ok[j])))
            previous = examples.get(kind)
            if previous is None or (candidate[KEY], candidate[TS] or "") < (previous[KEY], previous[TS] or ""):
                examples[kind] = candidate
        if masks["differ"].any():
            max_abs_diff = max(max_abs_diff, float(np.max(np.abs(a[masks["differ"]] - b[masks["differ"]]))))

    order_kept = bool(ia.size == feast.num_rows == mine.num_rows and np.array_equal(ia, np.arange(ia.size)))
    values = ia.size * len(features)
    agree_values = sum(kinds_total[k] for k in AGREE)
    return {
        "features": features,
        "paired_on": [KEY, TS, *([LABEL] if use_label else [])],
        "rows": {
            "featurelite": mine.num_rows,
            "feast": feast.num_rows,
            "paired": int(ia.size),
            "agree": int(ia.size - row_differs.sum()),
            "differ": int(row_differs.sum()),
            "feast_dropped": int(b_only.sum()),
            "feast_dropped_where_featurelite_has_values": dropped_with_values,
            "feast_extra": int(a_only.sum()),
            "feast_keeps_entity_df_order": order_kept,
        },
        "values": {
            "compared": values,
            "agree": agree_values,
            "differ": values - agree_values,
            **kinds_total,
            "max_abs_diff": max_abs_diff,
        },
        "per_feature": per_feature,
        "examples": {
            **examples,
            **({"feast_dropped": row_example(b_keys, dropped_idx)} if dropped_idx.size else {}),
            **({"feast_extra": row_example(a_keys, np.flatnonzero(a_only))} if a_only.any() else {}),
        },
        "identical": bool(values - agree_values == 0 and not b_only.any() and not a_only.any()),
    }


def compare_online(feast_online_json: str | Path, featurelite_values: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Compare Feast's online values (the driver's ``feast_online.json``: ``keys``,
    ``features``, ``values`` per feature) with featurelite's for the same keys, as
    ``store.get_online_features([{"user_id": k}, ...], refs).to_dict()`` gives them
    (``{"user_id": [...], "f0": [...], ...}``; ``view:feature`` / ``view__feature``
    names are accepted). Keys are paired by value (the n-th duplicate with the n-th).
    """
    dump = json.loads(Path(feast_online_json).read_text())
    mine = {_feature_name(k): list(v) for k, v in featurelite_values.items()}
    if KEY not in mine:
        raise ValueError(f"featurelite_values has no {KEY!r} column: {list(mine)}")
    a_key = np.asarray(dump["keys"], dtype=np.int64)
    b_key = np.asarray(mine[KEY], dtype=np.int64)
    ia, ib = _match([a_key], [b_key])
    features = [f for f in dump["features"] if f in mine]

    def floats(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        ok = np.array([v is not None for v in values], dtype=bool)
        arr = np.array([0.0 if v is None else float(v) for v in values], dtype=np.float64)  # float("NaN") too
        return arr, ok

    kinds_total = {k: 0 for k in (*AGREE, *KINDS)}
    per_feature: dict[str, dict[str, int]] = {}
    examples: dict[str, dict[str, Any]] = {}
    row_differs = np.zeros(ia.size, dtype=bool)
    max_abs_diff = 0.0
    for f in features:
        a, a_ok = floats(dump["values"][f])
        b, b_ok = floats(mine[f])
        a, a_ok, b, b_ok = a[ia], a_ok[ia], b[ib], b_ok[ib]
        masks = _classify(a, a_ok, b, b_ok)
        counts = {k: int(m.sum()) for k, m in masks.items()}
        per_feature[f] = {k: v for k, v in counts.items() if v}
        for k, v in counts.items():
            kinds_total[k] += v
        for kind in KINDS:
            mask = masks[kind]
            if not mask.any():
                continue
            row_differs |= mask
            idx = np.flatnonzero(mask)
            j = int(idx[np.argmin(b_key[ib[idx]])])
            candidate = {KEY: int(b_key[ib[j]]), "feature": f, "feast": _value(a[j], bool(a_ok[j])),
                         "featurelite": _value(b[j], bool(b_ok[j]))}
            if kind not in examples or candidate[KEY] < examples[kind][KEY]:
                examples[kind] = candidate
        if masks["differ"].any():
            max_abs_diff = max(max_abs_diff, float(np.max(np.abs(a[masks["differ"]] - b[masks["differ"]]))))
    a_only = np.ones(a_key.size, dtype=bool)
    a_only[ia] = False
    b_only = np.ones(b_key.size, dtype=bool)
    b_only[ib] = False
    values = ia.size * len(features)
    agree_values = sum(kinds_total[k] for k in AGREE)
    return {
        "features": features,
        "features_missing": {
            "in_featurelite": [f for f in dump["features"] if f not in mine],
        },
        "keys": {
            "feast": int(a_key.size), "featurelite": int(b_key.size), "paired": int(ia.size),
            "agree": int(ia.size - row_differs.sum()), "differ": int(row_differs.sum()),
            "feast_only": int(a_only.sum()), "featurelite_only": int(b_only.sum()),
        },
        "values": {"compared": values, "agree": agree_values, "differ": values - agree_values, **kinds_total,
                   "max_abs_diff": max_abs_diff},
        "per_feature": per_feature,
        "examples": examples,
        "identical": bool(values - agree_values == 0 and not a_only.any() and not b_only.any()),
    }
