"""A store file written by an earlier featurelite (format version 1, before the structural
pass of issue 11) opens and serves the same values: the on-disk format stayed readable.

The file ``data/format1-featurelite-0.1.0.duckdb.gz`` was written by
``data/make_format1_store.py`` run against commit 26c6508: a view with a created time,
a ttl, a tie on key and event time, a featurizer, an ``fl_meta.next_seq`` row, and an
online table left lagging its history (a small push while the index served, then no
catch-up), so every piece of old state is read back.
"""

from __future__ import annotations

import gzip
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa

import featurelite as fl

DATA = Path(__file__).parent / "data" / "format1-featurelite-0.1.0.duckdb.gz"
T0 = datetime(2024, 5, 1)


def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "old.duckdb"
    with gzip.open(DATA) as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return path


def test_a_format_1_store_serves_what_it_held(tmp_path: Path) -> None:
    with fl.open(old_store(tmp_path)) as store:
        assert store.describe("stats")["online_rows"] == 4  # three in the table, one only in the lag
        now = T0 + timedelta(days=1)
        got = store.get_online_features(
            {"user_id": [1, 2, 3, 4]}, ["stats:spend", "shares:per_order"], now=now
        ).to_dict()
        # 1: a tie at T0 goes to the row with a created time; 2: the pushed row (the lag)
        # beats the earlier one at the same time and created time; 3: -0.0 kept; 4: later
        # than now, so not served yet.
        assert got["spend"] == [10.0, 7.5, -0.0, None]
        assert str(got["spend"][2]) == "-0.0"
        assert got["per_order"][:3] == [5.0, 2.5, 0.0]
        spine = pa.table({"user_id": [1, 2, 3, 4], "event_timestamp": pa.array([now] * 4, pa.timestamp("us"))})
        train = store.get_historical_features(spine, ["stats:spend", "shares:per_order"])
        assert train.column("spend").to_pylist() == got["spend"]
        assert train.column("per_order").to_pylist()[:3] == got["per_order"][:3]


def test_a_format_1_store_takes_new_writes_without_reusing_sequence_numbers(tmp_path: Path) -> None:
    path = old_store(tmp_path)
    with fl.open(path) as store:
        # Same key, event and created time as user 2's winning row: the row ingested last
        # must win, which it does only if its sequence number is past every stored one.
        store.ingest("stats", pa.table({
            "user_id": [2], "spend": [99.0], "n": pa.array([1], pa.int32()), "tag": ["z"],
            "ts": pa.array([T0 + timedelta(days=1)], pa.timestamp("us")),
            "created": pa.array([T0], pa.timestamp("us")),
        }))
        now = T0 + timedelta(days=1)
        assert store.get_online_features({"user_id": [2]}, ["stats:spend"], now=now).to_dict()["spend"] == [99.0]
    with fl.open(path, read_only=True) as store:  # the lag was caught up at close; values kept
        spine = pa.table({"user_id": [2], "event_timestamp": pa.array([T0 + timedelta(days=1)], pa.timestamp("us"))})
        assert store.get_historical_features(spine, ["stats:spend"]).column("spend").to_pylist() == [99.0]
        assert store.get_online_features({"user_id": [2]}, ["stats:spend"], now=T0 + timedelta(days=1)).to_dict()[
            "spend"
        ] == [99.0]
