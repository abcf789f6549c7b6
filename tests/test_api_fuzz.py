"""Fuzzing the Python API: every public Store method, called with random wrong types,
shapes, names, timestamps and sizes (and, often enough to reach deep paths, with inputs
that are almost right).

The property: each call either succeeds or raises a subclass of FeatureliteError (never
the bare root, never a raw exception), and after a rejected call the store's registry,
history and online values are exactly what they were (fingerprinted before and after).

Size: ``FL_FUZZ_EXAMPLES`` stores (default: the Hypothesis profile's count), each taking
up to ``FL_FUZZ_CALLS`` calls (default 12). ``FL_FUZZ_REPORT=path`` writes the counts
(calls tried, rejected, raw exceptions, data changed by a rejected call) as JSON, for a
soak such as ``FL_FUZZ_EXAMPLES=600 FL_FUZZ_REPORT=fuzz.json pytest tests/test_api_fuzz.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import traceback
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl

T0 = datetime(2026, 1, 1)
user = fl.Entity("user", join_keys=["user_id"])
shop = fl.Entity("shop", join_keys={"shop": "string"})
SCHEMA_A = {"x": "float64", "n": "int64", "s": "string", "f": "float32", "b": "bool", "t": "timestamp", "i": "int32"}
view_a = fl.FeatureView(
    "a", entities=[user], schema=SCHEMA_A, timestamp_field="ts", created_timestamp_field="created", ttl="30d"
)
view_b = fl.FeatureView("b", entities=[user, shop], schema={"y": "float64"}, timestamp_field="ts")
req = fl.RequestSource("req", schema={"basket": "float64"})


@fl.featurizer
def share(basket: float, x: float = 0.0) -> float:
    return basket / (basket + x)


@fl.featurizer
def doubled(y: float) -> float:
    return y * 2.0


ratios = fl.OnDemandFeatureView("ratios", sources=[view_a, req], featurizers={"share": share})
derived = fl.FeatureView(
    "d", entities=[user], schema={"y": "float64"}, timestamp_field="ts", featurizers={"y2": doubled}
)
DEFINITIONS = [user, shop, view_a, view_b, ratios, derived]
VIEWS = ["a", "b", "d"]
REFS = ["a:x", "a:n", "a:s", "a:f", "a:b", "a:t", "a:i", "b:y", "ratios:share", "d:y", "d:y2"]
KEYS = [{"user_id": u, "shop": s} for u in range(3) for s in ("p", "q")]

EXAMPLES = int(os.environ.get("FL_FUZZ_EXAMPLES", "0")) or None
CALLS = int(os.environ.get("FL_FUZZ_CALLS", "12"))
STATS: Counter[str] = Counter()


def seed_store(store: fl.Store) -> None:
    store.apply(DEFINITIONS)
    store.ingest("a", pa.table({
        "user_id": [0, 1, 1, 2], "x": [1.0, -0.0, float("nan"), None], "n": [1, 2, None, -(2**63)],
        "s": ["x", "ü", None, ""], "f": pa.array([0.5, -0.0, None, float("inf")], pa.float32()),
        "b": [True, None, False, True], "t": pa.array([T0, None, T0, T0], pa.timestamp("us")),
        "i": pa.array([1, None, 2**31 - 1, -(2**31)], pa.int32()),
        "ts": pa.array([T0, T0, T0 + timedelta(days=1), T0], pa.timestamp("us")),
        "created": pa.array([None, T0, T0, None], pa.timestamp("us")),
    }))
    store.ingest("b", pa.table({"user_id": [0, 1], "shop": ["p", "q"], "y": [2.0, 3.0], "ts": pa.array([T0, T0], pa.timestamp("us"))}))
    store.ingest("d", pa.table({"user_id": [0], "y": [4.0], "ts": pa.array([T0], pa.timestamp("us"))}))


def fingerprint(store: fl.Store) -> str:
    """A digest of everything the store holds: registry rows, every table of the file
    (history and online, in a stable order) and what the online index serves."""
    con = store.con
    digest = hashlib.sha256()
    tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY table_name").fetchall()]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        rows = con.execute(f"SELECT * FROM {quoted}").fetchall()
        digest.update(table.encode())
        digest.update(repr(sorted(map(repr, rows))).encode())
    views = sorted(v.name for v in store.list_feature_views())
    for name in views:
        view = store.get_feature_view(name)
        refs = [f"{name}:{f}" for f in view.schema]
        keys = [{k: key[k] for k in ("user_id", "shop")} for key in KEYS]
        served = store.get_online_features(keys, refs, now=T0 + timedelta(days=2), full_feature_names=True)
        digest.update(repr(served.to_dict()).encode() + repr(served.statuses).encode())
    return digest.hexdigest()


# -- values ----------------------------------------------------------------------------

ZONES = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-59))])
DATETIMES = st.builds(
    lambda d, z: d.replace(tzinfo=z), st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)), ZONES
) | st.sampled_from([datetime.min, datetime.max, datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), T0])
NAMES = st.sampled_from(["a", "b", "d", "ratios", "user", "shop", "nope", "", "a\n", "_fl_x", "A", "a:x", "ü"]) | st.text(max_size=8)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-3, 3), st.floats(), st.text(max_size=6),
    st.sampled_from(["\ud800", "0", "42", "1.0", " 1", "NaN", "2026-01-01", "2026-01-01T00:00:00+25:00"]),
    st.binary(max_size=4), DATETIMES, st.dates(), st.just(timedelta(days=1)),
    st.sampled_from([np.int64(1), np.float32(-0.0), np.bool_(True), np.datetime64("2026-01-01")]),
)
JUNK = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | st.sampled_from(["user_id", "shop"]), inner, max_size=3)
    | st.tuples(inner),
    max_leaves=6,
)

#: Arrow types a column may arrive as, and how to draw values that fit each.
INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64()]
TS_TYPES = [pa.timestamp(u) for u in ("s", "ms", "us", "ns")] + [pa.timestamp("us", tz="UTC"), pa.timestamp("ms", tz="Asia/Kolkata")]


@st.composite
def arrow_column(draw: st.DrawFn, n: int, hint: str | None) -> pa.Array:
    """``n`` values of a random Arrow type, biased towards the type ``hint`` (a dtype)."""
    choices = ["int", "float", "string", "bool", "timestamp", "date", "null", "binary", "decimal", "dict", "list", "large_string"]
    kind = draw(st.sampled_from(choices))
    if hint is not None and draw(st.integers(0, 9)) > 0:  # mostly the right family, so ingests get deep
        kind = {"int64": "int", "int32": "int", "float64": "float", "float32": "float", "string": "string",
                "bool": "bool", "timestamp": "timestamp"}[hint]
    nulls = st.none() if draw(st.integers(0, 3)) == 0 else st.nothing()
    if kind == "int":
        typ = draw(st.sampled_from(INT_TYPES))
        bits, signed = typ.bit_width, pa.types.is_signed_integer(typ)
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        return pa.array(draw(st.lists(st.integers(lo, hi) | nulls, min_size=n, max_size=n)), typ)
    if kind == "float":
        typ = draw(st.sampled_from([pa.float32(), pa.float64(), pa.float16()]))
        values = draw(st.lists(st.floats() | nulls, min_size=n, max_size=n))
        if typ == pa.float64():
            return pa.array(values, typ)
        if typ == pa.float32():
            return _float32s(values)
        with np.errstate(over="ignore"):  # too large for the narrow type: inf, as NumPy casts
            narrow = np.array([0.0 if v is None else v for v in values]).astype(np.float16)
        return pa.array(narrow, mask=np.array([v is None for v in values], dtype=bool))
    if kind in ("string", "large_string", "dict"):
        values = draw(st.lists(
            st.text(max_size=12) | st.sampled_from(["1", "-5", "2026-01-02 03:04:05", "2026-01-02T03:04:05Z", "true", "nan", "1e400"]) | nulls,
            min_size=n, max_size=n,
        ))
        array = pa.array(values, pa.large_string() if kind == "large_string" else pa.string())
        return array.dictionary_encode() if kind == "dict" else array
    if kind == "bool":
        return pa.array(draw(st.lists(st.booleans() | nulls, min_size=n, max_size=n)), pa.bool_())
    if kind == "timestamp":
        typ = draw(st.sampled_from(TS_TYPES))
        wide = st.integers(-(2**63) + 1, 2**63 - 1)
        near = st.integers(1_700_000_000, 1_800_000_000).map(lambda s: s * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[typ.unit])
        return pa.array(draw(st.lists(st.one_of(near, near, near, wide, nulls), min_size=n, max_size=n)), pa.int64()).view(typ)
    if kind == "date":
        if draw(st.booleans()):
            return pa.array(draw(st.lists(st.integers(-(2**31), 2**31 - 1) | nulls, min_size=n, max_size=n)), pa.int32()).view(pa.date32())
        return pa.array(draw(st.lists(st.integers(-(2**62), 2**62) | nulls, min_size=n, max_size=n)), pa.int64()).view(pa.date64())
    if kind == "null":
        return pa.nulls(n)
    if kind == "binary":
        return pa.array(draw(st.lists(st.binary(max_size=4) | nulls, min_size=n, max_size=n)), pa.binary())
    if kind == "decimal":
        return pa.array([None] * n, pa.decimal128(10, 2))
    return pa.array([[1]] * n, pa.list_(pa.int64()))


@st.composite
def tables(draw: st.DrawFn, columns: dict[str, str | None]) -> pa.Table:
    """A table that is almost ``columns`` (name -> dtype hint): usually all of them, with
    odd types and values, sometimes one missing, one extra or one repeated."""
    names = list(columns)
    if names and draw(st.integers(0, 9)) == 0:
        names.remove(draw(st.sampled_from(names)))
    if draw(st.integers(0, 9)) == 0:
        names.append(draw(st.sampled_from(["extra", "_fl_seq", "x", "ts", "user_id"])))
    n = draw(st.sampled_from([0, 1, 2, 3, 5, 40]))
    arrays = [draw(arrow_column(n, columns.get(name))) for name in names]
    return pa.Table.from_arrays(arrays, names=names)


def ingest_columns(view: str) -> dict[str, str | None]:
    if view == "a":
        return {"user_id": "int64", **SCHEMA_A, "ts": "timestamp", "created": "timestamp"}
    if view == "b":
        return {"user_id": "int64", "shop": "string", "y": "float64", "ts": "timestamp"}
    return {"user_id": "int64", "y": "float64", "ts": "timestamp"}


def _float32s(values: list[float | None]) -> pa.Array:
    """Floats as a float32 array, as NumPy narrows them (too large: inf). Not Hypothesis's
    ``floats(width=32)``, which can fail inside Hypothesis itself ("float too large to pack")."""
    with np.errstate(over="ignore"):
        narrow = np.array([0.0 if v is None else v for v in values]).astype(np.float32)
    return pa.array(narrow, mask=np.array([v is None for v in values], dtype=bool))


NEAR_US = st.integers(1_767_225_600_000_000, 1_767_225_600_000_000 + 5 * 86_400_000_000).map(lambda us: us - us % 3_600_000_000)


@st.composite
def good_tables(draw: st.DrawFn, view: str) -> pa.Table:
    """A table the view accepts: every column of the right type, values in range, keys
    and (hourly) event times drawn from small sets so that ties and older events occur."""
    n = draw(st.integers(1, 6))
    col = lambda s: draw(st.lists(s, min_size=n, max_size=n))  # noqa: E731
    floats = st.floats() | st.none()
    columns: dict[str, pa.Array] = {"user_id": pa.array(col(st.integers(0, 3)), pa.int64())}
    if view == "b":
        columns["shop"] = pa.array(col(st.sampled_from(["p", "q"])), pa.string())
    if view == "a":
        columns.update({
            "x": pa.array(col(floats), pa.float64()), "n": pa.array(col(st.integers(-(2**63), 2**63 - 1) | st.none()), pa.int64()),
            "s": pa.array(col(st.text(max_size=4) | st.none()), pa.string()),
            "f": _float32s(col(floats)),
            "b": pa.array(col(st.booleans() | st.none()), pa.bool_()),
            "t": pa.array(col(NEAR_US | st.none()), pa.int64()).view(pa.timestamp("us")),
            "i": pa.array(col(st.integers(-(2**31), 2**31 - 1) | st.none()), pa.int32()),
        })
    else:
        columns["y"] = pa.array(col(floats), pa.float64())
    columns["ts"] = pa.array(col(NEAR_US), pa.int64()).view(pa.timestamp("us"))
    if view == "a":
        columns["created"] = pa.array(col(NEAR_US | st.none()), pa.int64()).view(pa.timestamp("us"))
    return pa.table(columns)


@st.composite
def poisoned_tables(draw: st.DrawFn, view: str) -> pa.Table:
    """A good table with one bad value in one row (a null event time or join key): with a
    small batch_rows, the rows before it are appended before it is found, and must not stay."""
    table = draw(good_tables(view))
    row = draw(st.integers(0, table.num_rows - 1))
    name = draw(st.sampled_from(["ts", "user_id"]))
    values = table.column(name).to_pylist()
    values[row] = None
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values, table.schema.field(name).type))


DATA_SOURCES = st.one_of(
    st.sampled_from(VIEWS).flatmap(good_tables),
    st.sampled_from(VIEWS).flatmap(poisoned_tables),
    st.sampled_from(VIEWS).flatmap(lambda v: tables(ingest_columns(v))),
    st.sampled_from(VIEWS).flatmap(lambda v: tables(ingest_columns(v))).map(lambda t: t.to_batches()[0] if t.num_rows else t),
    st.sampled_from(VIEWS).flatmap(lambda v: tables(ingest_columns(v))).map(lambda t: pa.RecordBatchReader.from_batches(t.schema, t.to_batches())),
    st.just(pd.Series([1])), st.just(pd.DataFrame({"user_id": [1]})), st.just("/no/such/file.parquet"), st.just(Path("/")),
    JUNK,
)
REF_LISTS = st.one_of(
    st.lists(st.sampled_from(REFS), min_size=1, max_size=4),
    st.lists(st.sampled_from(REFS) | NAMES, max_size=3),
    st.sampled_from(REFS), JUNK,
)
ENTITY_ROWS = st.one_of(
    st.lists(st.fixed_dictionaries({"user_id": SCALARS}, optional={"shop": SCALARS}), max_size=4),
    st.dictionaries(st.sampled_from(["user_id", "shop"]), st.lists(SCALARS, min_size=1, max_size=1), max_size=2),
    st.fixed_dictionaries({"user_id": st.lists(st.integers(-1, 3), max_size=4)}),
    JUNK,
)
SPINES = tables({"user_id": "int64", "shop": "string", "event_timestamp": "timestamp", "basket": "float64"})
TIMES = st.one_of(st.none(), DATETIMES, JUNK)
DEFINITIONS_ARG = st.one_of(
    st.lists(st.sampled_from(DEFINITIONS), max_size=3),
    st.sampled_from(DEFINITIONS),
    st.builds(lambda n: [user, fl.FeatureView("a", entities=[user], schema={"x": n}, timestamp_field="ts")], st.sampled_from(["int64", "string"])),
    st.just([user, fl.FeatureView("a", entities=[user], schema={"x": "float64"}, timestamp_field="ts")]),
    st.just([user, fl.FeatureView("b", entities=[user], schema={"y": "float64"}, timestamp_field="ts")]),
    JUNK,
)


def calls() -> st.SearchStrategy[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    """(method name, positional args, keyword args)."""
    k = st.fixed_dictionaries
    return st.one_of(
        st.tuples(st.just("apply"), st.tuples(DEFINITIONS_ARG), k({}, optional={"dry_run": st.booleans() | JUNK})),
        st.tuples(st.just("ingest"), st.sampled_from(VIEWS).flatmap(
            lambda v: st.tuples(st.just(v), good_tables(v) | good_tables(v) | poisoned_tables(v))),
            k({}, optional={"batch_rows": st.sampled_from([1, 2, 1 << 20])})),
        st.tuples(st.just("ingest"), st.tuples(st.sampled_from(VIEWS) | NAMES, DATA_SOURCES),
                  k({}, optional={"batch_rows": st.sampled_from([1, 2, 1 << 20]) | JUNK})),
        st.tuples(st.just("get_online_features"), st.tuples(ENTITY_ROWS, REF_LISTS),
                  k({}, optional={"now": TIMES, "request_data": st.one_of(st.none(), st.fixed_dictionaries({"basket": st.lists(SCALARS, max_size=3)}), JUNK),
                                  "full_feature_names": st.booleans() | JUNK})),
        st.tuples(st.just("get_historical_features"), st.tuples(SPINES | JUNK, REF_LISTS),
                  k({}, optional={"timestamp_field": st.none() | NAMES | JUNK, "full_feature_names": st.booleans() | JUNK})),
        st.tuples(st.just("materialize"), st.tuples(st.none() | st.sampled_from(VIEWS) | st.lists(st.sampled_from(VIEWS) | NAMES, max_size=2) | JUNK),
                  k({}, optional={"end_date": TIMES})),
        st.tuples(st.just("describe"), st.tuples(NAMES | JUNK), k({})),
        st.tuples(st.just("list_versions"), st.tuples(NAMES | JUNK), k({}, optional={"kind": st.none() | NAMES | JUNK})),
        st.tuples(st.just("delete_feature_view"), st.tuples(NAMES | JUNK), k({})),
        st.tuples(st.just("verify"), st.tuples(st.none() | NAMES | JUNK),
                  k({}, optional={"examples": st.sampled_from([1, 5]) | st.integers(-5, 0) | JUNK, "seed": st.integers(0, 3) | JUNK})),
        st.tuples(st.sampled_from(["get_entity", "get_feature_view"]), st.tuples(NAMES | JUNK), k({})),
        st.tuples(st.sampled_from(["checkpoint", "list_entities", "list_feature_views", "list_on_demand_feature_views"]), st.just(()), k({})),
    )


MUTATING = {"apply", "ingest", "materialize", "delete_feature_view", "checkpoint"}


def _report() -> None:
    path = os.environ.get("FL_FUZZ_REPORT")
    if path:
        Path(path).write_text(json.dumps(dict(STATS), indent=2, sort_keys=True))


@settings(max_examples=EXAMPLES or settings.default.max_examples, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.nested_given])
# deferred: Hypothesis shows the strategy's repr in notes when a draw fails, and the
# repr of the whole call grammar is tens of kB (a HypothesisWarning, an error here).
@given(st.lists(st.deferred(calls), min_size=1, max_size=CALLS))
def test_every_call_succeeds_or_raises_a_featurelite_error_and_a_rejected_call_changes_nothing(tmp_path_factory, sequence):
    path = tmp_path_factory.mktemp("fuzz") / "store.duckdb"
    with fl.open(path) as store:
        seed_store(store)
        before = fingerprint(store)
        for method, args, kwargs in sequence:
            STATS["calls"] += 1
            try:
                getattr(store, method)(*args, **kwargs)
            except fl.FeatureliteError as exc:
                STATS["rejected"] += 1
                STATS[f"rejected:{method}"] += 1
                STATS[f"rejected:{type(exc).__name__}"] += 1
                assert type(exc) is not fl.FeatureliteError, f"{method} raised the bare root class: {exc}"
                assert str(exc) and "\n" not in str(exc).strip(), f"{method}: not a one-line message: {exc!r}"
                if method in MUTATING:
                    after = fingerprint(store)
                    if after != before:
                        STATS["data_changed"] += 1
                    assert after == before, f"rejected {method}{args!r} {kwargs!r} changed the store: {exc}"
            except Exception as exc:  # noqa: BLE001 - the finding this test exists for
                STATS["raw"] += 1
                _report()
                trace = "".join(traceback.format_exception(exc)[-6:])
                pytest.fail(f"{method}(*{args!r}, **{kwargs!r}) raised {type(exc).__name__}: {exc}\n{trace}")
            else:
                STATS["succeeded"] += 1
                STATS[f"succeeded:{method}"] += 1
                if method in MUTATING:
                    before = fingerprint(store)
    _report()
