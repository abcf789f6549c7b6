"""The one file: reopening, other processes, read-only, foreign and newer files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import featurelite as fl

T0 = datetime(2024, 5, 1)
user = fl.Entity("user", join_keys=["user_id"])
stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "country": "string"}, timestamp_field="ts")


def fill(path: Path) -> None:
    with fl.open(path) as store:
        store.apply([user, stats])
        store.ingest("stats", pa.table({
            "user_id": [1, 2, 1], "spend": [1.0, 2.0, 3.0], "country": ["de", "fr", "jp"],
            "ts": pa.array([T0, T0, datetime(2024, 5, 2)], pa.timestamp("us")),
        }))


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_reopen_in_a_new_process_restores_everything(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    done = run_python(f"""
        import json, featurelite as fl, pyarrow as pa
        from datetime import datetime
        with fl.open({str(path)!r}) as store:
            online = store.get_online_features({{"user_id": [1, 2]}}, ["stats:spend", "stats:country"], now=datetime(2024, 6, 1))
            spine = pa.table({{"user_id": [1], "event_timestamp": pa.array([datetime(2024, 5, 1, 12)], pa.timestamp("us"))}})
            train = store.get_historical_features(spine, ["stats:spend"])
            print(json.dumps({{
                "online": online.to_dict(), "train": train.column("spend").to_pylist(),
                "views": [v.name for v in store.list_feature_views()], "version": store.get_feature_view("stats").version,
                "versions": len(store.list_versions("stats")),
            }}))
    """)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {
        "online": {"user_id": [1, 2], "spend": [3.0, 2.0], "country": ["jp", "fr"]},
        "train": [1.0], "views": ["stats"], "version": stats.version, "versions": 1,
    }


def test_a_second_process_gets_a_clear_lock_error(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    with fl.open(path):
        for mode in ("False", "True"):
            done = run_python(f"""
                import featurelite as fl
                try:
                    fl.open({str(path)!r}, read_only={mode})
                except fl.StoreLockedError as exc:
                    print(type(exc).__name__, exc.path, exc)
            """)
            assert done.returncode == 0, done.stderr
            assert done.stdout.startswith(f"StoreLockedError {path}"), done.stdout
            assert "another process" in done.stdout


def test_read_only_store_reads_but_refuses_writes(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    with fl.open(path, read_only=True) as store:
        assert store.get_online_features([{"user_id": 2}], ["stats:spend"], now=T0).to_dict()["spend"] == [2.0]
        for write in (
            lambda: store.apply([user, stats]),
            lambda: store.ingest("stats", pa.table({"user_id": [1]})),
            lambda: store.materialize(),
            lambda: store.delete_feature_view("stats"),
        ):
            with pytest.raises(fl.ReadOnlyError, match="read-only"):
                write()
        assert store.apply([user, stats], dry_run=True).unchanged


def test_read_only_needs_an_existing_file(tmp_path):
    with pytest.raises(fl.StoreError, match="does not exist"):
        fl.open(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()


def test_newer_format_is_refused(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    con = duckdb.connect(str(path))
    con.execute("UPDATE fl_meta SET value = '99' WHERE key = 'format_version'").fetchall()
    con.close()
    with pytest.raises(fl.StoreFormatError, match="format version 99") as info:
        fl.open(path)
    assert info.value.format_version == 99


def test_foreign_files_are_refused(tmp_path):
    foreign = tmp_path / "other.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("CREATE TABLE people (name VARCHAR)").fetchall()
    con.close()
    with pytest.raises(fl.StoreFormatError, match="not a featurelite store"):
        fl.open(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a database" * 10)
    with pytest.raises(fl.StoreFormatError, match="not a DuckDB database"):
        fl.open(text)
    assert text.read_text().startswith("hello")
    with pytest.raises(fl.StoreError, match="is a folder"):
        fl.open(tmp_path)


def test_missing_folder_and_damaged_file(tmp_path):
    with pytest.raises(fl.StoreError, match="does not exist; create it first"):
        fl.open(tmp_path / "no" / "such" / "shop.duckdb")
    path = tmp_path / "shop.duckdb"
    fill(path)
    damaged = tmp_path / "damaged.duckdb"
    damaged.write_bytes(path.read_bytes()[:20])  # DuckDB's magic survives; the headers do not
    with pytest.raises(fl.StoreFormatError, match="is damaged: it is cut short"):
        fl.open(damaged)
    damaged.write_bytes(path.read_bytes()[:7])  # not even the magic
    with pytest.raises(fl.StoreFormatError, match="not a DuckDB database"):
        fl.open(damaged)


def test_an_empty_file_becomes_a_new_store(tmp_path):
    path = tmp_path / "new.duckdb"
    path.touch()
    with fl.open(path) as store:
        store.apply([user, stats])
    with fl.open(path) as store:
        assert [v.name for v in store.list_feature_views()] == ["stats"]


def test_closed_store_raises(tmp_path):
    store = fl.open(tmp_path / "s.duckdb")
    store.close()
    store.close()  # closing twice is fine
    with pytest.raises(fl.StoreClosedError, match="closed"):
        store.list_feature_views()
    with pytest.raises(fl.StoreClosedError):
        store.get_online_features([{"user_id": 1}], ["stats:spend"])
    assert "closed" in repr(store)


def test_public_surface_is_pinned():
    assert sorted(fl.__all__) == sorted([
        # issue 14: the serving log, freshness and consistency reports, the remote client
        "AgeSummary", "ConsistencyReport", "Difference", "FeatureConsistency", "FreshnessReport", "ServingLog",
        "ViewFreshness", "RemoteStore", "connect",
        # issue 15: per-feature metadata and search
        "Field", "SearchHit",
        # issue 15: statistics and lineage
        "FeatureStats", "Histogram", "PeriodStats", "TimelinePoint", "TopValue", "ViewStats", "Lineage", "LineageEdge",
        "LineageNode", "ModelRecord",
        # issue 16: the export for Spark
        "ExportResult",
        "DTYPES", "Aggregation", "ApplyResult", "BreakingChangeError", "Change", "DefinitionError", "Entity", "FeatureService", "FeatureView",
        "FeatureliteError", "Featurizer", "FeaturizerError", "IngestResult", "InputError", "Manifest", "ManifestError",
        "ManifestFeature", "MaterializeResult", "NotFoundError", "OnDemandFeatureView", "OnlineResponse", "PinnedVersionError",
        "ReadOnlyError", "RequestSource", "SchemaError", "ServerError", "ServiceImpact",
        "SourceError", "Status", "Store", "StoreClosedError", "StoreError", "StoreFormatError", "StoreLockedError",
        "Timestamp", "UnknownEntityError", "UnknownFeatureError", "UnknownFeatureServiceError", "UnknownFeatureViewError",
        "UnknownVersionError", "VerifyResult", "__version__", "featurizer",
        "open",
    ])
    for name in fl.__all__:
        obj = getattr(fl, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, fl.FeatureliteError) and name.endswith("Error")


def test_demo_runs(capsys):
    from featurelite.demo import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "training set" in out and "PRESENT" in out
    assert "through feature service 'checkout'" in out and "its manifest: 5 rows" in out
    # the two featurizers, and user_stats' windowed aggregation (verify covers aggregations)
    assert out.count("same bits in both paths") == 3 and "MISMATCH" not in out
    assert "verify user_stats:spend_7d_max_30d" in out


def test_the_same_file_twice_in_one_process_is_refused(tmp_path):
    path = tmp_path / "shop.duckdb"
    with fl.open(path), pytest.raises(fl.StoreLockedError, match="already open in this process"):
        fl.open(str(path))
    with fl.open(path) as again:  # free once the first is closed
        assert again.list_feature_views() == []


def test_checkpoint_leaves_the_whole_store_in_the_one_file(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    with fl.open(path) as store:
        store.ingest("stats", pa.table({
            "user_id": [9], "spend": [9.0], "country": ["it"], "ts": pa.array([T0], pa.timestamp("us")),
        }))
        store.checkpoint()
        copy = tmp_path / "copy.duckdb"
        copy.write_bytes(path.read_bytes())  # copied while the store is still open
    with fl.open(copy, read_only=True) as copied:
        assert copied.get_online_features([{"user_id": 9}], ["stats:spend"], now=T0).to_dict()["spend"] == [9.0]


def test_several_processes_may_read_at_once(tmp_path):
    path = tmp_path / "shop.duckdb"
    fill(path)
    code = f"""
        import sys, time, featurelite as fl
        from datetime import datetime
        with fl.open({str(path)!r}, read_only=True) as store:
            print("open", flush=True)
            sys.stdin.readline()  # hold the file until told to let go
            print(store.get_online_features([{{"user_id": 2}}], ["stats:spend"], now=datetime(2024, 6, 1)).to_dict()["spend"])
    """
    readers = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        assert [r.stdout.readline().strip() for r in readers] == ["open", "open"]  # both hold it now
        outputs = [r.communicate("\n", timeout=60)[0].strip() for r in readers]
    finally:
        for r in readers:
            r.kill()
    assert outputs == ["[2.0]", "[2.0]"]


def test_materialize_binds_end_date_instead_of_pasting_it(tmp_path, monkeypatch):
    from datetime import timedelta, timezone

    import featurelite.online as online_module

    path = tmp_path / "shop.duckdb"
    fill(path)
    seen: list[tuple[str, object]] = []
    real_run = online_module.run

    def spy(con, sql, params=None):
        seen.append((sql, params))
        return real_run(con, sql, params)

    monkeypatch.setattr(online_module, "run", spy)  # where the online table is rebuilt
    with fl.open(path) as store:
        # 2024-05-01 23:00 at +02:00 is 21:00 UTC: before user 1's second event (2024-05-02).
        end = datetime(2024, 5, 1, 23, tzinfo=timezone(timedelta(hours=2)))
        assert [r.online_rows for r in store.materialize(end_date=end)] == [2]
        assert store.get_online_features({"user_id": [1, 2]}, ["stats:spend"], now=T0).to_dict()["spend"] == [1.0, 2.0]
    assert not [sql for sql, _ in seen if "2024" in sql], "a value was pasted into SQL text"
    bound = [params for sql, params in seen if params and "INSERT INTO" in sql]
    assert bound == [{"end": datetime(2024, 5, 1, 21)}]
