"""A full disk: every failure is a StoreError that says whether the change was committed,
and the Store is then either still usable or closed with the reason (never dead but open).

The disk is real: a small tmpfs mounted for the test and filled up to the last few KiB,
so DuckDB's own writes (the write-ahead log at COMMIT, new blocks at CHECKPOINT) fail
with ENOSPC exactly as on a full production disk. DuckDB treats a CHECKPOINT that cannot
write as fatal (it invalidates the database in this process), which is the case the
Store must translate and close itself on. Mounting needs root (CI runs as root); the
tests skip, saying why, where mount is not permitted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
first = fl.FeatureView("first", entities=[user], schema={"spend": "float64"}, timestamp_field="ts")
second = fl.FeatureView("second", entities=[user], schema={"spend": "float64"}, timestamp_field="ts")
#: Space left on the disk: enough for a small commit's write-ahead log entry, too little
#: for the 256 KiB blocks a checkpoint writes.
LEFT = 64 * 1024


def rows(ids: np.ndarray, spend: float) -> pa.Table:
    return pa.table({
        "user_id": ids, "spend": np.full(len(ids), spend), "ts": pa.array([T0] * len(ids), pa.timestamp("us")),
    })


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own (so filling it disturbs nothing else)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if shutil.which("mount") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("filling a real disk needs a tmpfs mount, which needs root and the mount command")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], check=False, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({done.stderr.strip()}); a container without CAP_SYS_ADMIN")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path, *, leave: int = LEFT) -> Path:
    """Fill the disk up to ``leave`` bytes; returns the filler file (delete it to free the space)."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def make_store(disk: Path, n: int = 10) -> fl.Store:
    store = fl.open(disk / "shop.duckdb")
    store.apply([user, first])
    store.ingest("first", rows(np.arange(n), 1.0))
    store.checkpoint()
    return store


def assert_closed_with_reason(store: fl.Store) -> None:
    assert store.closed
    with pytest.raises(fl.StoreClosedError):
        store.list_feature_views()
    with pytest.raises(fl.StoreClosedError):
        store.get_online_features({"user_id": [1]}, ["first:spend"])
    store.close()  # closing again is fine and raises nothing


def test_apply_on_a_full_disk_says_it_committed_and_closes_the_store(disk):
    store = make_store(disk)
    filler = fill(disk)
    with pytest.raises(fl.StoreError) as info:
        store.apply([user, second])
    error = info.value
    assert type(error) is fl.StoreError and error.committed is True
    assert "the change was committed" in str(error) and "open it again" in str(error)
    assert error.path == str(disk / "shop.duckdb")
    assert_closed_with_reason(store)
    filler.unlink()
    with fl.open(disk / "shop.duckdb") as again:  # the file was released, in this process too
        assert sorted(v.name for v in again.list_feature_views()) == ["first", "second"]
        again.ingest("second", rows(np.array([7]), 7.0))
        got = again.get_online_features({"user_id": [1, 7]}, ["first:spend", "second:spend"], full_feature_names=True)
        assert got.to_dict() == {"user_id": [1, 7], "first__spend": [1.0, 1.0], "second__spend": [None, 7.0]}


def test_materialize_on_a_full_disk_says_it_committed_and_closes_the_store(disk):
    store = make_store(disk, n=100)
    store.ingest("first", rows(np.arange(100), 2.0))
    filler = fill(disk)
    with pytest.raises(fl.StoreError) as info:
        store.materialize(end_date=datetime(2030, 1, 1))
    assert info.value.committed is True and "the change was committed" in str(info.value)
    assert_closed_with_reason(store)
    filler.unlink()
    with fl.open(disk / "shop.duckdb") as again:
        assert again.get_online_features({"user_id": [0, 99]}, ["first:spend"]).to_dict()["spend"] == [2.0, 2.0]
        assert again.describe("first")["online_rows"] == 100


def test_checkpoint_on_a_full_disk_keeps_committed_writes_and_closes_the_store(disk):
    store = make_store(disk)
    store.ingest("first", rows(np.array([42]), 4.2))
    filler = fill(disk)
    with pytest.raises(fl.StoreError) as info:
        store.checkpoint()
    assert info.value.committed is True and "checkpoint" in str(info.value)
    assert_closed_with_reason(store)
    filler.unlink()
    with fl.open(disk / "shop.duckdb") as again:  # the ingest was committed to the write-ahead log
        assert again.get_online_features({"user_id": [42]}, ["first:spend"]).to_dict()["spend"] == [4.2]


def test_a_commit_that_cannot_be_written_changes_nothing_and_the_store_stays_usable(disk):
    store = make_store(disk, n=20_000)
    store.ingest("first", rows(np.arange(20_000), 2.0))  # a lag for materialize to rebuild in one big write
    filler = fill(disk)
    with pytest.raises(fl.StoreError) as info:
        store.materialize()
    assert info.value.committed is False and "nothing was written" in str(info.value)
    assert not store.closed
    filler.unlink()
    assert store.get_online_features({"user_id": [5]}, ["first:spend"]).to_dict()["spend"] == [2.0]
    store.ingest("first", rows(np.array([5]), 5.0))
    store.close()
    with fl.open(disk / "shop.duckdb") as again:
        assert again.get_online_features({"user_id": [5, 6]}, ["first:spend"]).to_dict()["spend"] == [5.0, 2.0]


def test_an_ingest_that_cannot_be_written_says_nothing_was_written(disk):
    store = make_store(disk)
    filler = fill(disk)
    with pytest.raises(fl.StoreError) as info:
        store.ingest("first", rows(np.arange(300_000), 3.0))
    assert info.value.committed is False
    assert type(info.value) is not fl.FeatureliteError
    filler.unlink()
    assert store.get_online_features({"user_id": [1, 20]}, ["first:spend"]).to_dict()["spend"] == [1.0, None]
    store.close()


def test_close_on_a_full_disk_raises_nothing_and_releases_the_file(disk):
    store = make_store(disk)
    store.get_online_features({"user_id": [1]}, ["first:spend"])  # the index serves reads: ingests defer the online table
    store.ingest("first", rows(np.array([1]), 9.0))
    filler = fill(disk, leave=0)
    store.close()
    assert store.closed
    filler.unlink()
    with fl.open(disk / "shop.duckdb") as again:
        assert again.get_online_features({"user_id": [1]}, ["first:spend"]).to_dict()["spend"] == [9.0]
