"""Hypothesis over HTTP against a real ``featurelite serve`` (issue 10): random JSON bodies
built around the real request shapes plus garbage (wrong types, huge and odd numbers, lone
surrogates, deep nesting, odd timestamps, unknown views and features) and Arrow IPC
streams (valid ones of wrong types and schemas, compressed ones, and the same with bits
flipped, bytes inserted or the end cut off).

For every body: never a 500 (or any 5xx), an error is the JSON error shape, the server
stays up, a rejected push changes nothing (history row counts from /metrics against a
running tally of acknowledged rows), and its peak RSS stays bounded.

``FL_HTTP_FUZZ_EXAMPLES`` sets the examples per test (default 400: about 1,200 bodies, well under a minute);
a soak: ``FL_HTTP_FUZZ_EXAMPLES=2000 python -m pytest tests/test_server_fuzz.py -s``.
The counts are printed at the end (run with ``-s`` to see them).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_hardening import Live, launch

EXAMPLES = int(os.environ.get("FL_HTTP_FUZZ_EXAMPLES", "400"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}
T0 = datetime(2026, 1, 1)
VIEWS = ("stats", "twice")
#: Peak RSS the server may reach over the whole run (its baseline is ~200 MB with Numba).
RSS_LIMIT = 1024 * 2**20

COUNTS: Counter[str] = Counter()


class Fuzzed:
    """The server under fuzz, and what it has acknowledged."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.client = httpx.Client(base_url=live.url, timeout=60)
        self.history = self.metric_rows()

    def metric_rows(self) -> int:
        text = self.client.get("/metrics").text
        return sum(int(float(line.split()[-1])) for line in text.splitlines()
                   if line.startswith("featurelite_view_history_rows{"))

    def send(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        COUNTS["inputs"] += 1
        response = self.client.post(path, content=content, headers=headers or {})
        COUNTS[f"status {response.status_code}"] += 1
        if response.status_code >= 500:
            COUNTS["5xx"] += 1
        assert response.status_code < 500, (path, content[:300], response.text[:500])
        body = response.json()
        if response.status_code >= 400:
            assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}, body
            assert isinstance(body["error"]["message"], str) and body["error"]["message"]
        if path.startswith("/push"):
            if response.status_code == 200:
                self.history += body["rows"]
            now = self.metric_rows()
            if now != self.history:
                COUNTS["data changed by a rejected push"] += 1
            assert now == self.history, (response.status_code, response.text[:300])
        assert self.client.get("/health").status_code == 200
        return response


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with launch(tmp, entities=100, expect_clean_exit=True) as live:
        target = Fuzzed(live)
        yield target
        target.client.close()
        peak = live.peak_rss()
        text = live.stderr()
        COUNTS["server tracebacks"] += text.count("Traceback")
        for kind in re.findall(r"-> 500 unexpected (\w+)", text):
            COUNTS[f"raw {kind}"] += 1
        if os.environ.get("FL_HTTP_FUZZ_LOG"):  # keep the server's log of a soak
            shutil.copy(live.log, os.environ["FL_HTTP_FUZZ_LOG"])
        for key in ("5xx", "server tracebacks", "data changed by a rejected push"):
            COUNTS.setdefault(key, 0)  # printed even when zero
        print("\nHTTP fuzz:", json.dumps({**dict(sorted(COUNTS.items())), "peak_rss_mb": peak // 2**20}))
        assert peak < RSS_LIMIT, peak
    assert COUNTS["server tracebacks"] == 0 and COUNTS["5xx"] == 0


# --- JSON ----------------------------------------------------------------------------------

ODD_TEXT = st.sampled_from(["", " ", "\ud800", "\udfff", "\x00", "stats:", ":", "stats:version:x", "\u202e", "é",
                            "stats\n", "a" * 300, "NaN", "Infinity", "2026-01-01", "42"])
TEXT = st.one_of(st.text(max_size=20), ODD_TEXT)
ODD_NUMBERS = st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**40), 1e308, -0.0,
                               5e-324, float("nan"), float("inf"), float("-inf"), 0, -1, 1.5])
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), TEXT, ODD_NUMBERS)
JSON = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                    st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                 timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-13-01", "2026-01-01T25:00",
                     "2026-01-01T00:00:00Z", "2026-01-01 00:00:00", "1970-01-01", "", "now", "2026-01-01T00:00:00+24:00"]),
    SCALAR,
)
FEATURE = st.one_of(st.sampled_from(["stats:version", "stats:batch", "twice:doubled", "stats:nope", "ghost:x",
                                     "stats:*", "twice:version"]), TEXT, SCALAR)
KEY = st.one_of(st.integers(0, 120), ODD_NUMBERS, TEXT, SCALAR, JSON)
ENTITIES = st.one_of(
    st.lists(st.fixed_dictionaries({"user_id": KEY}), max_size=5),
    st.lists(st.dictionaries(st.sampled_from(["user_id", "user", "customer", "\ud800"]), KEY, max_size=2), max_size=4),
    st.fixed_dictionaries({"user_id": st.one_of(st.lists(KEY, max_size=5), KEY)}),
    JSON,
)


def _get_body() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"features": st.one_of(st.lists(FEATURE, min_size=1, max_size=4), JSON), "entities": ENTITIES},
        optional={"request_data": JSON, "full_feature_names": SCALAR, "now": TIMES, "extra": JSON},
    )


ROW = st.fixed_dictionaries(
    {"user_id": KEY, "version": st.one_of(st.integers(-5, 5), SCALAR), "batch": st.one_of(st.integers(0, 3), SCALAR),
     "ts": TIMES},
    optional={"extra": SCALAR, "doubled": SCALAR},
)


VALID_ROW = st.fixed_dictionaries({
    "user_id": st.integers(0, 120), "version": st.integers(-5, 5), "batch": st.integers(0, 3),
    "ts": st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)).map(lambda d: d.isoformat()),
})


def _push_body() -> st.SearchStrategy[dict[str, Any]]:
    view = st.one_of(st.sampled_from((*VIEWS, "ghost")), TEXT, SCALAR)
    columns = st.dictionaries(st.sampled_from(["user_id", "version", "batch", "ts", "x"]),
                              st.one_of(st.lists(st.one_of(KEY, TIMES), max_size=4), SCALAR), max_size=5)
    return st.one_of(
        # mostly valid rows, now and then one that is not: the push must land whole or not at all
        st.fixed_dictionaries({"view": st.sampled_from(VIEWS), "rows": st.lists(
            st.one_of(VALID_ROW, VALID_ROW, VALID_ROW, ROW), min_size=1, max_size=6)}),
        st.fixed_dictionaries({"view": view, "rows": st.one_of(st.lists(ROW, max_size=5), JSON)}),
        st.fixed_dictionaries({"view": view, "columns": columns}),
        st.fixed_dictionaries({"view": view}, optional={"rows": JSON, "columns": JSON}),
    )


def _encode(payload: Any) -> bytes:
    # ensure_ascii: lone surrogates travel as \ud800 escapes (valid JSON, not valid Unicode);
    # NaN / Infinity travel as Python's non-standard tokens, as a careless client sends them.
    return json.dumps(payload, ensure_ascii=True).encode()


@st.composite
def raw_json(draw: st.DrawFn, shape: st.SearchStrategy[dict[str, Any]]) -> bytes:
    body = _encode(draw(shape))
    how = draw(st.sampled_from(["as is"] * 6 + ["deep", "truncate", "flip", "garbage", "not object", "utf16"]))
    if how == "deep":
        depth = draw(st.sampled_from([500, 1000, 5000, 100_000]))
        inner = b"[" * depth + b"]" * depth if draw(st.booleans()) else b'{"a":' * depth + b"1" + b"}" * depth
        return body[:-1] + b',"nested":' + inner + b"}"
    if how == "truncate":
        return body[: draw(st.integers(0, max(0, len(body) - 1)))]
    if how == "flip":
        i = draw(st.integers(0, len(body) - 1))
        return body[:i] + bytes([body[i] ^ (1 << draw(st.integers(0, 7)))]) + body[i + 1:]
    if how == "garbage":
        return draw(st.binary(max_size=64))
    if how == "not object":
        return _encode(draw(JSON))
    if how == "utf16":
        return body.decode().encode("utf-16")
    return body


@FUZZ
@given(body=raw_json(_get_body()))
def test_get_online_features_never_500(fuzzed, body):
    fuzzed.send("/get-online-features", body)


@FUZZ
@given(body=raw_json(_push_body()))
def test_json_pushes_never_500_and_a_rejected_one_changes_nothing(fuzzed, body):
    fuzzed.send("/push", body)


# --- Arrow IPC -----------------------------------------------------------------------------

_N = 4
COLUMN_VALUES: dict[str, pa.Array] = {
    "int64": pa.array([1, 2, 3, 4], pa.int64()),
    "int32": pa.array([1, None, 3, 4], pa.int32()),
    "uint64": pa.array([2**64 - 1, 0, 1, 2], pa.uint64()),
    "float64": pa.array([1.5, float("nan"), None, -0.0], pa.float64()),
    "string": pa.array(["1", "x", None, "\u00e9"], pa.string()),
    "large_string": pa.array(["1", "2", "3", "4"], pa.large_string()),
    "bool": pa.array([True, False, None, True]),
    "ts": pa.array([T0 + timedelta(seconds=i) for i in range(_N)], pa.timestamp("us")),
    "ts_tz": pa.array([T0 + timedelta(seconds=i) for i in range(_N)], pa.timestamp("ns", tz="Asia/Kolkata")),
    "ts_s": pa.array([-(2**40), 0, 2**40, None], pa.timestamp("s")),
    "date32": pa.array([-(2**31), 0, 2**31 - 1, None], pa.date32()),
    "list": pa.array([[1], [], None, [2, 3]], pa.list_(pa.int64())),
    "struct": pa.array([{"a": 1}, {"a": 2}, None, {"a": 4}]),
    "dict": pa.array(["a", "b", "a", None]).dictionary_encode(),
    "null": pa.nulls(_N),
    "binary": pa.array([b"\x00", b"", None, b"\xff"], pa.binary()),
    "decimal": pa.array([1, 2, 3, 4], pa.decimal128(38, 0)),
}


@st.composite
def arrow_streams(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(st.sampled_from(["user_id", "version", "batch", "ts", "extra", ""]), min_size=0,
                          max_size=5, unique=True))
    if draw(st.booleans()):  # mostly the view's own columns, each of a random type
        names = ["user_id", "version", "batch", "ts"]
    columns = {}
    for name in names:
        if draw(st.integers(0, 3)) and name in ("user_id", "version", "batch"):
            columns[name] = COLUMN_VALUES["int64"]
        elif draw(st.integers(0, 3)) and name == "ts":
            columns[name] = COLUMN_VALUES[draw(st.sampled_from(["ts", "ts_tz", "ts_s", "date32", "string"]))]
        else:
            columns[name] = COLUMN_VALUES[draw(st.sampled_from(sorted(COLUMN_VALUES)))]
    rows = draw(st.integers(0, _N))
    table = pa.table({n: c.slice(0, rows) for n, c in columns.items()}) if columns else pa.table({})
    compression = draw(st.sampled_from([None, None, "lz4", "zstd"]))
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as writer:
        for _ in range(draw(st.integers(0, 3))):
            writer.write_table(table)
    data = bytearray(sink.getvalue())
    for _ in range(draw(st.integers(0, 3))):
        how = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "int"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if how == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif how == "truncate":
            del data[i:]
        elif how == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif how == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:  # overwrite 4 or 8 bytes with an extreme integer: lengths, offsets, counts
            size = draw(st.sampled_from([4, 8]))
            value = draw(st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 2**62]))
            data[i:i + size] = value.to_bytes(8, "little", signed=True)[:size]
    return bytes(data)


@FUZZ
@given(body=arrow_streams(), view=st.sampled_from(["stats", "stats", "twice", "ghost"]))
def test_arrow_pushes_never_500_and_a_rejected_one_changes_nothing(fuzzed, body, view):
    fuzzed.send(f"/push?view={view}", body, ARROW)


def test_the_fuzzed_server_is_still_serving_values(fuzzed):
    response = fuzzed.client.post("/get-online-features", json={"features": ["stats:version"],
                                                                "entities": [{"user_id": 1}]})
    assert response.status_code == 200 and response.json()["statuses"]["version"] == ["PRESENT"]
    started = time.perf_counter()
    assert fuzzed.client.get("/health").status_code == 200
    assert time.perf_counter() - started < 1
    assert datetime.now(timezone.utc).year >= 2026
