"""Ingest: every accepted source, timestamp handling, and every bad input leaving the
store exactly as it was."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import featurelite as fl

T0 = datetime(2024, 3, 1, 12, 0)
user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView(
    "stats", entities=[user], timestamp_field="ts", created_timestamp_field="created",
    schema={"spend": "float64", "orders": "int32", "small": "float32", "flag": "bool", "country": "string", "seen": "timestamp"},
)


def events(n: int = 3, start: int = 0) -> pa.Table:
    return pa.table({
        "user_id": pa.array(range(start, start + n), pa.int64()),
        "spend": pa.array([1.5 * i for i in range(n)], pa.float64()),
        "orders": pa.array(list(range(n)), pa.int32()),
        "small": pa.array([0.5] * n, pa.float32()),
        "flag": pa.array([i % 2 == 0 for i in range(n)]),
        "country": pa.array(["de"] * n),
        "seen": pa.array([T0] * n, pa.timestamp("us")),
        "ts": pa.array([T0 + timedelta(hours=i) for i in range(n)], pa.timestamp("us")),
        "created": pa.array([T0] * n, pa.timestamp("us")),
    })


@pytest.fixture
def ready(store):
    store.apply([user, stats])
    store.ingest("stats", events(3))
    store.get_online_features([{"user_id": 0}], ["stats:spend"])  # build the online index
    return store


def snapshot(store: fl.Store) -> tuple:
    """Everything an ingest could touch: history, online table, index reads, sequence."""
    history = store.con.sql('SELECT * FROM "fl_history__stats" ORDER BY _fl_seq').fetchall()
    online = store.con.sql('SELECT * FROM "fl_online__stats" ORDER BY user_id').fetchall()
    seq = store.con.sql("SELECT value FROM fl_meta WHERE key = 'next_seq'").fetchall()
    served = store.get_online_features({"user_id": list(range(12))}, ["stats:spend", "stats:country"], now=T0 + timedelta(days=1))
    return history, online, seq, served.to_dict(), served.statuses


def spend_of(store: fl.Store, uid: int) -> float | None:
    return store.get_online_features([{"user_id": uid}], ["stats:spend"], now=T0 + timedelta(days=1)).to_dict()["spend"][0]


# -- accepted sources ------------------------------------------------------------------------


def test_arrow_table_record_batch_and_reader(store):
    store.apply([user, stats])
    table = events(6)
    assert store.ingest("stats", table.slice(0, 2)).rows == 2
    assert store.ingest("stats", table.slice(2, 2).to_batches()[0]).rows == 2
    reader = pa.RecordBatchReader.from_batches(table.schema, table.slice(4, 2).to_batches())
    assert store.ingest("stats", reader).rows == 2
    assert store.describe("stats")["history_rows"] == 6
    assert spend_of(store, 5) == 7.5


def test_pandas_and_polars(store):
    store.apply([user, stats])
    assert store.ingest("stats", events(2).to_pandas()).rows == 2
    assert store.ingest("stats", pl.from_arrow(events(2, start=2))).rows == 2
    assert spend_of(store, 3) == 1.5


def test_parquet_and_csv_paths(store, tmp_path: Path):
    store.apply([user, stats])
    pq.write_table(events(2), tmp_path / "a.parquet")
    events(2, start=2).to_pandas().to_csv(tmp_path / "b.csv", index=False)
    assert store.ingest("stats", tmp_path / "a.parquet").rows == 2
    assert store.ingest("stats", str(tmp_path / "b.csv")).rows == 2
    result = store.get_online_features({"user_id": [1, 3]}, ["stats:spend", "stats:seen", "stats:flag"], now=T0 + timedelta(days=1))
    assert result.to_dict()["spend"] == [1.5, 1.5]
    assert result.to_dict()["seen"] == [T0.replace(tzinfo=timezone.utc)] * 2
    assert result.to_dict()["flag"] == [False, False]


def test_large_input_streams_in_batches(store):
    store.apply([user, stats])
    table = events(1000)
    result = store.ingest("stats", table, batch_rows=64)
    assert result.rows == 1000
    assert store.describe("stats")["history_rows"] == 1000
    seqs = store.con.sql('SELECT _fl_seq FROM "fl_history__stats" ORDER BY user_id').fetchall()
    assert [s for (s,) in seqs] == list(range(1000))


def test_zone_aware_timestamps_become_utc_and_naive_are_utc(store):
    store.apply([user, stats])
    paris = events(1).set_column(
        7, "ts", pa.array([datetime(2024, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1)))], pa.timestamp("ns", tz="Europe/Paris"))
    )
    store.ingest("stats", paris)
    (ts,) = store.con.sql('SELECT ts FROM "fl_history__stats"').fetchall()[0]
    assert ts == datetime(2024, 3, 1, 12, 0)
    text = events(1, start=1).set_column(7, "ts", pa.array(["2024-03-01T14:00:00+02:00"]))
    store.ingest("stats", text)
    assert store.con.sql('SELECT max(ts) FROM "fl_history__stats"').fetchall()[0][0] == datetime(2024, 3, 1, 12, 0)


def test_empty_input_is_a_no_op(ready):
    before = snapshot(ready)
    assert ready.ingest("stats", events(0)).rows == 0
    assert snapshot(ready) == before


def test_values_cast_to_declared_types_when_they_fit(store):
    store.apply([user, stats])
    table = events(2).set_column(2, "orders", pa.array([1.0, 2.0])).set_column(1, "spend", pa.array(["1.25", "2"]))
    store.ingest("stats", table)
    got = store.get_online_features({"user_id": [0, 1]}, ["stats:orders", "stats:spend"], now=T0 + timedelta(days=1)).to_dict()
    assert got["orders"] == [1, 2] and got["spend"] == [1.25, 2.0]


# -- bad input: right error, store unchanged -------------------------------------------------


def _bad_cases() -> list[tuple[str, object, type[Exception], dict]]:
    t = events(4, start=5)
    return [
        ("missing column", t.drop_columns(["spend"]), fl.SchemaError, {"column": "spend"}),
        ("extra column", t.append_column("bonus", pa.array([1] * 4)), fl.SchemaError, {"column": "bonus"}),
        ("wrong kind", t.set_column(5, "country", pa.array([1, 2, 3, 4])), fl.SchemaError, {"column": "country"}),
        ("text in a float", t.set_column(1, "spend", pa.array(["1", "2", "x", "4"])), fl.SchemaError, {"column": "spend", "row": 2}),
        ("int32 overflow", t.set_column(2, "orders", pa.array([1, 2, 3, 2**40])), fl.SchemaError, {"column": "orders", "row": 3}),
        ("fraction in an int", t.set_column(2, "orders", pa.array([1.0, 2.5, 3.0, 4.0])), fl.SchemaError, {"column": "orders", "row": 1}),
        ("float32 overflow", t.set_column(3, "small", pa.array([1.0, 1e300, 0.0, 0.0])), fl.SchemaError, {"column": "small"}),
        ("null join key", t.set_column(0, "user_id", pa.array([5, None, 7, 8], pa.int64())), fl.SchemaError, {"column": "user_id", "row": 1}),
        ("null event time", t.set_column(7, "ts", pa.array([T0, T0, None, T0], pa.timestamp("us"))), fl.SchemaError, {"column": "ts", "row": 2}),
        ("bad event time", t.set_column(7, "ts", pa.array(["2024-01-01", "2024-01-02", "yesterday", "2024-01-03"])), fl.SchemaError, {"column": "ts", "row": 2}),
        ("event time past year 9999", t.set_column(7, "ts", pa.array([T0, T0, T0, datetime(9999, 12, 31)], pa.timestamp("us")).cast(pa.int64()).to_pandas().add([0, 0, 0, 10**12]).pipe(lambda x: pa.array(x, pa.int64()).cast(pa.timestamp("us")))), fl.SchemaError, {"column": "ts", "row": 3}),
        ("seconds that overflow microseconds", t.set_column(6, "seen", pa.array([0, 0, 10**15, 0], pa.timestamp("s"))), fl.SchemaError, {"column": "seen", "row": 2}),
        ("not data", {"user_id": 1}, fl.SourceError, {}),
    ]


@pytest.mark.parametrize("name, data, error, attrs", _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_raises_and_changes_nothing(ready, name, data, error, attrs):
    before = snapshot(ready)
    with pytest.raises(error) as info:
        ready.ingest("stats", data)
    for key, value in attrs.items():
        assert getattr(info.value, key) == value, (key, str(info.value))
    if "column" in attrs:
        assert repr(attrs["column"]) in str(info.value)
        assert "'stats'" in str(info.value)
    assert snapshot(ready) == before


def test_unknown_view(ready):
    before = snapshot(ready)
    with pytest.raises(fl.UnknownFeatureViewError, match="'nope' is not registered"):
        ready.ingest("nope", events(1))
    assert snapshot(ready) == before


def test_error_in_a_later_batch_rolls_back_the_earlier_ones(ready):
    before = snapshot(ready)
    table = events(200, start=10)
    ts = table.column("ts").to_pylist()
    ts[150] = None
    table = table.set_column(7, "ts", pa.array(ts, pa.timestamp("us")))
    with pytest.raises(fl.SchemaError) as info:
        ready.ingest("stats", table, batch_rows=32)
    assert info.value.row == 150
    assert snapshot(ready) == before


def test_missing_file_and_non_data_file(ready, tmp_path: Path):
    before = snapshot(ready)
    with pytest.raises(fl.SourceError, match="does not exist") as info:
        ready.ingest("stats", tmp_path / "nope.parquet")
    assert info.value.path.endswith("nope.parquet")
    (tmp_path / "notes.json").write_text("{}")
    with pytest.raises(fl.SourceError, match="neither Parquet nor CSV"):
        ready.ingest("stats", tmp_path / "notes.json")
    (tmp_path / "fake.parquet").write_text("not parquet at all")
    with pytest.raises(fl.SourceError, match="could not be read"):
        ready.ingest("stats", tmp_path / "fake.parquet")
    assert snapshot(ready) == before


def test_csv_with_a_bad_value_far_down(ready, tmp_path: Path):
    before = snapshot(ready)
    frame = events(50, start=20).to_pandas()
    frame["orders"] = frame["orders"].astype(object)
    frame.loc[41, "orders"] = "many"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(fl.SchemaError) as info:
        ready.ingest("stats", tmp_path / "bad.csv")
    assert info.value.row == 41 and info.value.column == "orders"
    assert snapshot(ready) == before


def test_late_event_never_overwrites_a_newer_one(ready):
    older = events(1).set_column(1, "spend", pa.array([99.0])).set_column(7, "ts", pa.array([T0 - timedelta(days=1)], pa.timestamp("us")))
    ready.ingest("stats", older)
    assert spend_of(ready, 0) == 0.0
    assert ready.describe("stats")["history_rows"] == 4


def test_pandas_index_and_ns_timestamps(store):
    store.apply([user, stats])
    frame = events(2).to_pandas()
    frame.index = [10, 11]
    frame["ts"] = pd.to_datetime(frame["ts"]).astype("datetime64[ns]") + pd.Timedelta(nanoseconds=999)
    store.ingest("stats", frame)
    assert store.con.sql('SELECT min(ts) FROM "fl_history__stats"').fetchall()[0][0] == T0


def test_a_long_stream_is_ingested_with_bounded_memory(store):
    """Batches flow through one at a time: Arrow memory stays near one batch, not the input."""
    store.apply([user, stats])
    batch = events(20_000)
    batch_bytes = batch.nbytes
    peak = 0

    def batches():
        nonlocal peak
        for i in range(40):  # 800k rows in all, 40x the batch
            peak = max(peak, pa.total_allocated_bytes())
            yield batch.set_column(0, "user_id", pa.array(range(i * 20_000, (i + 1) * 20_000), pa.int64())).to_batches()[0]

    baseline = pa.total_allocated_bytes()
    result = store.ingest("stats", pa.RecordBatchReader.from_batches(batch.schema, batches()), batch_rows=20_000)
    assert result.rows == 800_000
    assert peak - baseline < 6 * batch_bytes, (peak - baseline, batch_bytes)
    assert store.describe("stats")["online_rows"] == 800_000


def test_csv_types_come_from_the_view_not_from_guessing(store, tmp_path: Path):
    zipcodes = fl.FeatureView("z", entities=[user], schema={"zip": "string", "score": "float64", "ok": "bool"}, timestamp_field="ts")
    store.apply([zipcodes])
    lines = ["user_id,zip,score,ok,ts", "1,01234,1,true,2024-03-01 12:00:00", "2,,NaN,False,2024-03-01T12:00:00Z"]
    lines += [f"{i},9,2,1,2024-03-01" for i in range(3, 2000)] + ["2000,9,2.5,0,2024-03-01"]
    (tmp_path / "z.csv").write_text("\n".join(lines) + "\n")
    assert store.ingest("z", tmp_path / "z.csv").rows == 2000
    got = store.get_online_features({"user_id": [1, 2, 2000]}, ["z:zip", "z:score", "z:ok"], now=T0).to_dict()
    assert got["zip"] == ["01234", None, "9"]
    assert got["score"][0] == 1.0 and got["score"][1] != got["score"][1] and got["score"][2] == 2.5
    assert got["ok"] == [True, False, False]
