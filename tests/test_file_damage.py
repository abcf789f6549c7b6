"""Damaged store files: opening one either works (and then every call succeeds or raises
a featurelite error) or raises StoreError / StoreFormatError saying the file is damaged.
Never a raw DuckDB / JSON / Python exception, and never "locked" unless another process
really holds the file (which still gives StoreLockedError).

Damage is done three ways: cutting a real store short at many offsets, flipping bits at
random offsets (of the file and of its write-ahead log), and rewriting featurelite's own
rows through DuckDB SQL.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView(
    "stats", entities=[user], schema={"spend": "float64", "country": "string"}, timestamp_field="ts", ttl="30d"
)
SPINE = pa.table({"user_id": [1, 2], "event_timestamp": pa.array([datetime(2024, 5, 3)] * 2, pa.timestamp("us"))})
#: Hypothesis runs each example against a fresh copy in one folder: no function-scoped fixture.
_SETTINGS = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)


def batch(ids: list[int], spend: float, day: int) -> pa.Table:
    return pa.table({
        "user_id": ids, "spend": [spend] * len(ids), "country": ["de"] * len(ids),
        "ts": pa.array([datetime(2024, 5, day)] * len(ids), pa.timestamp("us")),
    })


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real store, checkpointed into its one file."""
    path = tmp_path_factory.mktemp("pristine") / "shop.duckdb"
    with fl.open(path) as store:
        store.apply([user, stats])
        store.ingest("stats", batch([1, 2, 3], 1.0, 1))
        store.ingest("stats", batch([1, 1], 2.0, 2))  # a tie, so the tie-loser column is used
    return path


@pytest.fixture(scope="module")
def with_wal(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """(file, write-ahead log) of a store copied while open, after writes not yet checkpointed."""
    folder = tmp_path_factory.mktemp("wal")
    path = folder / "shop.duckdb"
    with fl.open(path) as store:
        store.apply([user, stats])
        store.ingest("stats", batch([1, 2], 1.0, 1))
        store.checkpoint()
        store.ingest("stats", batch([1, 3], 3.0, 2))
        store.materialize()
        store.ingest("stats", batch([4], 4.0, 3))
        copied = path.read_bytes(), Path(f"{path}.wal").read_bytes()
    assert copied[1], "the copy must carry a write-ahead log to damage"
    return copied


def exercise(path: Path) -> str:
    """Open ``path`` and use it. Returns what happened; fails the test on a raw exception,
    the bare root class, or a lock error for a file no other process holds."""
    try:
        store = fl.open(path)
    except fl.StoreLockedError as exc:
        pytest.fail(f"a damaged file was reported as locked: {exc}")
    except (fl.StoreFormatError, fl.StoreError) as exc:
        assert type(exc) is not fl.FeatureliteError
        return type(exc).__name__
    calls: list[Callable[[], object]] = [
        store.list_feature_views,
        lambda: store.list_versions("stats"),
        lambda: store.describe("stats"),
        lambda: store.get_online_features({"user_id": [1, 2, 3]}, ["stats:spend", "stats:country"], now=T0),
        lambda: store.get_historical_features(SPINE, ["stats:spend"]),
        lambda: store.ingest("stats", batch([5], 5.0, 4)),
        lambda: store.materialize(end_date=datetime(2024, 5, 2)),
        store.checkpoint,
    ]
    try:
        for call in calls:
            try:
                call()
            except fl.FeatureliteError as exc:
                assert type(exc) is not fl.FeatureliteError, f"the bare root class: {exc}"
                if isinstance(exc, fl.StoreClosedError):
                    break  # a fatal DuckDB error closed the store; it said why
    finally:
        store.close()
    return "opened"


def damaged_copy(folder: Path, data: bytes, wal: bytes | None = None) -> Path:
    path = folder / "damaged.duckdb"
    for stale in (path, Path(f"{path}.wal")):
        stale.unlink(missing_ok=True)
    path.write_bytes(data)
    if wal is not None:
        Path(f"{path}.wal").write_bytes(wal)
    return path


def test_the_pristine_store_opens_and_answers(pristine, tmp_path):
    path = damaged_copy(tmp_path, pristine.read_bytes())
    assert exercise(path) == "opened"
    with fl.open(path) as store:
        assert store.get_online_features({"user_id": [1]}, ["stats:spend"], now=datetime(2024, 5, 10)).to_dict()["spend"] == [2.0]


@pytest.mark.parametrize("size", [12 * 1024, 12 * 1024 + 1, 13 * 1024, 14 * 1024, 15 * 1024, 16 * 1024 - 1, 16 * 1024])
def test_a_file_cut_to_12_16_kib_is_damaged_not_locked(pristine, tmp_path, size):
    # The reproducer of the issue: this was reported as held by another process.
    path = damaged_copy(tmp_path, pristine.read_bytes()[:size])
    with pytest.raises(fl.StoreFormatError, match="is damaged") as info:
        fl.open(path)
    assert not isinstance(info.value, fl.StoreLockedError) and info.value.path == str(path)
    with pytest.raises(fl.StoreFormatError, match="is damaged"):
        fl.open(path, read_only=True)


def test_truncation_at_every_block_boundary(pristine, tmp_path):
    data = pristine.read_bytes()
    outcomes = {exercise(damaged_copy(tmp_path, data[:size])) for size in range(4096, len(data), 64 * 1024)}
    assert "StoreFormatError" in outcomes


@_SETTINGS
@given(cut=st.floats(0, 1, exclude_max=True))
def test_truncation_anywhere(pristine, tmp_path, cut):
    data = pristine.read_bytes()
    exercise(damaged_copy(tmp_path, data[: int(cut * len(data))]))


@_SETTINGS
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8))
def test_bit_rot_anywhere(pristine, tmp_path, flips):
    data = bytearray(pristine.read_bytes())
    for where, bit in flips:
        data[int(where * len(data))] ^= 1 << bit
    exercise(damaged_copy(tmp_path, bytes(data)))


@_SETTINGS
@given(where=st.floats(0, 1, exclude_max=True), byte=st.integers(0, 255))
def test_a_byte_overwritten_in_the_first_blocks(pristine, tmp_path, where, byte):
    # The headers and the first metadata blocks: where a flip changes what DuckDB reads first.
    data = bytearray(pristine.read_bytes())
    data[int(where * min(len(data), 3 * 4096 + 256 * 1024))] = byte
    exercise(damaged_copy(tmp_path, bytes(data)))


@_SETTINGS
@given(data=st.data())
def test_a_damaged_write_ahead_log(with_wal, tmp_path, data):
    file, wal = with_wal
    damage = data.draw(st.sampled_from(["cut", "flip"]))
    if damage == "cut":
        wal = wal[: data.draw(st.integers(0, len(wal) - 1))]
    else:
        changed = bytearray(wal)
        changed[data.draw(st.integers(0, len(wal) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        wal = bytes(changed)
    exercise(damaged_copy(tmp_path, file, wal))


#: Edits of featurelite's own rows (and tables) through DuckDB, each a file featurelite
#: did not write; with whether opening must refuse it.
SQL_DAMAGE = {
    "format_version not a number": ("UPDATE fl_meta SET value = 'one' WHERE key = 'format_version'", True),
    "format_version missing": ("DELETE FROM fl_meta WHERE key = 'format_version'", True),
    # Early files hold a sequence counter nothing read or advanced; it is ignored, whatever it says.
    "next_seq of an early file": ("INSERT INTO fl_meta VALUES ('next_seq', '1.5e')", False),
    "online_pending not a number": ("INSERT INTO fl_meta VALUES ('online_pending:stats', 'x')", True),
    "format row missing": ("DELETE FROM fl_meta WHERE key = 'format'", True),
    "spec not JSON": ("UPDATE fl_versions SET spec = '{not json' WHERE kind = 'feature_view'", True),
    "spec a list": ("UPDATE fl_versions SET spec = '[1, 2]' WHERE kind = 'entity'", True),
    "spec empty": ("UPDATE fl_versions SET spec = '{}' WHERE kind = 'feature_view'", True),
    "spec a bad dtype": (
        "UPDATE fl_versions SET spec = replace(spec, '\"float64\"', '\"float65\"') WHERE kind = 'feature_view'", True
    ),
    "spec of another name": (
        "UPDATE fl_versions SET spec = replace(spec, '\"name\": \"stats\"', '\"name\": \"other\"') WHERE kind = 'feature_view'",
        True,
    ),
    "entity gone": ("DELETE FROM fl_current WHERE kind = 'entity'", True),
    "unknown kind": ("UPDATE fl_current SET kind = 'gadget' WHERE kind = 'entity'", True),
    "registry table dropped": ("DROP TABLE fl_versions", True),
    "history table dropped": ('DROP TABLE "fl_history__stats"', True),
    "online table dropped": ('DROP TABLE "fl_online__stats"', False),
    "history column dropped": ('ALTER TABLE "fl_history__stats" DROP COLUMN spend', False),
    "online column retyped": ('ALTER TABLE "fl_online__stats" ALTER country TYPE INTEGER USING 1', False),
    "history sequence nulls": (
        'ALTER TABLE "fl_history__stats" ALTER _fl_seq DROP NOT NULL; UPDATE "fl_history__stats" SET _fl_seq = NULL', False
    ),
}


@pytest.mark.parametrize("name", list(SQL_DAMAGE))
def test_rows_edited_outside_featurelite(pristine, tmp_path, name):
    sql, refused = SQL_DAMAGE[name]
    path = damaged_copy(tmp_path, pristine.read_bytes())
    con = duckdb.connect(str(path))
    for statement in sql.split("; "):
        con.execute(statement).fetchall()
    con.close()
    outcome = exercise(path)
    if refused:
        assert outcome in ("StoreFormatError", "StoreError")
        with pytest.raises(fl.StoreError) as info:
            fl.open(path)
        if name != "format row missing":  # that one is "not a featurelite store"
            assert "damaged" in str(info.value) and info.value.path == str(path)


def test_versions_with_a_damaged_old_spec(pristine, tmp_path):
    path = damaged_copy(tmp_path, pristine.read_bytes())
    con = duckdb.connect(str(path))
    # An old version no longer in force: the store opens; listing versions says what is wrong.
    con.execute("INSERT INTO fl_versions VALUES ('feature_view', 'stats', 'old', '{oops', TIMESTAMP '2000-01-01')").fetchall()
    con.close()
    with fl.open(path) as store, pytest.raises(fl.StoreFormatError, match="damaged: table fl_versions"):
        store.list_versions("stats")


def test_a_store_held_by_another_process_is_still_reported_as_locked(pristine, tmp_path):
    path = damaged_copy(tmp_path, pristine.read_bytes())
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, featurelite as fl
            with fl.open({str(path)!r}):
                print("open", flush=True)
                sys.stdin.readline()
        """)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        for read_only in (False, True):
            with pytest.raises(fl.StoreLockedError, match="held by another process") as info:
                fl.open(path, read_only=read_only)
            assert info.value.path == str(path)
    finally:
        holder.communicate("\n", timeout=60)
    with fl.open(path) as store:  # free once the other process let go
        assert store.list_feature_views()


def test_a_copy_of_a_locked_file_is_not_locked(pristine, tmp_path):
    # The lock belongs to the file a process holds, not to its bytes.
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(pristine, copy)
    with fl.open(copy, read_only=True) as store:
        assert [v.name for v in store.list_feature_views()] == ["stats"]
