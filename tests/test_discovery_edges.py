"""The discovery API's edges (issue 15): statistics, lineage and model records in
process, over HTTP, through the remote client and the CLI: bad input refused with the fix
(and 4xx, never 500, over HTTP; one Error: line from the CLI), the same results and
errors on every path, a cache that never answers for rows it did not cover, computations
that never make an apply or a checkpoint fail."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from live_server import wait_until_healthy

import featurelite as fl
from featurelite import statistics
from featurelite.cli import main

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
user = fl.Entity("user", join_keys=["user_id"])


def txn(description: str = "") -> fl.FeatureView:
    return fl.FeatureView("txn", entities=[user], schema={"amount": "float64", "country": "string"},
                          timestamp_field="ts", description=description)


def definitions() -> list:
    return [user, txn(), fl.FeatureService("fraud", ["txn:amount"])]


def rows(n: int, start: int = 0) -> pa.Table:
    return pa.table({
        "user_id": pa.array(range(start, start + n), pa.int64()),
        "amount": pa.array([float(i % 7) for i in range(start, start + n)], pa.float64()),
        "country": pa.array(["de" if i % 2 else "fr" for i in range(start, start + n)], pa.string()),
        "ts": pa.array([T0 + timedelta(hours=i) for i in range(start, start + n)], pa.timestamp("us", tz="UTC")),
    })


def training_set(store: fl.Store) -> pa.Table:
    spine = pa.table({"user_id": [1, 2], "event_timestamp": [T0 + timedelta(days=30)] * 2})
    return store.get_historical_features(spine, service="fraud")


@pytest.fixture
def store(tmp_path) -> Iterator[fl.Store]:
    with fl.open(tmp_path / "s.duckdb") as s:
        s.apply(definitions())
        s.ingest("txn", rows(40))
        yield s


# -- lineage ------------------------------------------------------------------------------


def test_lineage_of_a_model_name_roots_at_its_latest_record_even_past_nine_records(store):
    """store.lineage("m") roots at the newest record of model m, by number: m#10 after
    ten records (sorted as text, m#9 came last)."""
    train = training_set(store)
    for _ in range(10):
        store.record_model("m", train)
    assert store.lineage("m").root == "model:m#10"


def test_a_manifest_with_no_features_is_refused_instead_of_breaking_lineage_for_good(store):
    """record_model refuses a manifest (of this store) that names no features, and lineage
    keeps working: records are never deleted, so one unreadable record would break the
    store's lineage for good."""
    manifest = fl.Manifest.from_table(training_set(store))
    data = json.loads(manifest.to_json())
    data.update(service=None, service_version=None, features=[])
    bogus = fl.Manifest.from_json(json.dumps(data))
    with contextlib.suppress(fl.FeatureliteError):
        store.record_model("empty", bogus)
    store.lineage()  # raises InputError when the record was kept


def test_a_manifest_with_a_malformed_reference_is_refused_instead_of_breaking_lineage(store):
    """A manifest (of this store) whose loose feature reference is not
    'view@version:feature' is refused by record_model."""
    manifest = fl.Manifest.from_table(training_set(store))
    data = json.loads(manifest.to_json())
    data.update(service=None, service_version=None)
    data["features"][0]["reference"] = "no colon here"
    bogus = fl.Manifest.from_json(json.dumps(data))
    with contextlib.suppress(fl.FeatureliteError):
        store.record_model("broken", bogus)
    store.lineage()


# -- stats cache ----------------------------------------------------------------------------


def test_a_view_deleted_and_created_again_during_a_computation_is_not_answered_from_the_old_rows(
        store, monkeypatch):
    """After delete_feature_view + apply (the same definition, so the same version) +
    ingest of 2 rows, stats() describes those 2 rows: a computation that began before the
    delete and ends after it is not cached (the view's generation changed)."""
    started, release = threading.Event(), threading.Event()
    compute = statistics.compute

    def slow(*args, **kwargs):
        result = compute(*args, **kwargs)
        started.set()
        assert release.wait(20)
        return result

    store.delete_feature_service("fraud")
    monkeypatch.setattr(statistics, "compute", slow)
    worker = threading.Thread(target=lambda: store.stats("txn"))
    worker.start()
    try:
        assert started.wait(20)
        monkeypatch.setattr(statistics, "compute", compute)
        store.delete_feature_view("txn")
        with contextlib.suppress(fl.StoreError):  # committed; its checkpoint fails beside the computation
            store.apply([user, txn()])
        store.ingest("txn", rows(2, 1000))
    finally:
        release.set()
        worker.join(20)
    assert store.stats("txn").rows == 2


def test_apply_and_checkpoint_succeed_while_statistics_are_computed(store, monkeypatch):
    """A computation's read transaction (on its own cursor) would make DuckDB's CHECKPOINT
    fail: apply() of a changed definition succeeds meanwhile (its write-ahead log is folded
    later), and checkpoint() waits for the computation to end, then folds it."""
    started, release = threading.Event(), threading.Event()
    compute = statistics.compute

    def slow(*args, **kwargs):
        result = compute(*args, **kwargs)
        started.set()
        assert release.wait(20)
        return result

    monkeypatch.setattr(statistics, "compute", slow)
    worker = threading.Thread(target=lambda: store.stats("txn"))
    worker.start()
    try:
        assert started.wait(20)
        store.apply(txn(description="changed"))
        assert store.get_feature_view("txn").description == "changed"
        threading.Timer(0.3, release.set).start()
        store.checkpoint()  # waits for the computation, then folds
        assert release.is_set()
    finally:
        release.set()
        worker.join(20)
    assert not worker.is_alive()


def test_stats_while_another_thread_ingests_claim_exactly_the_rows_they_covered(store):
    """Concurrent ingest: every result's rows equal the rows at or before its
    ingest_position, and the cached one too."""
    stop = threading.Event()

    def ingest():
        at = 100
        while not stop.is_set():
            store.ingest("txn", rows(5, at))
            at += 5

    thread = threading.Thread(target=ingest)
    thread.start()
    try:
        results = [store.stats("txn", refresh=True) for _ in range(8)]
    finally:
        stop.set()
        thread.join()
    history = store._catalog.layouts["txn"].history_table
    for result in [*results, store.stats("txn", refresh=False)]:
        covered = store.con.execute(f"SELECT count(*) FROM {history} WHERE _fl_seq <= ?",
                                    [result.ingest_position]).fetchone()[0]
        assert result.rows == covered == result.features["amount"].count


def test_a_second_process_reads_the_cache_the_first_wrote(tmp_path):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as s:
        s.apply(definitions())
        s.ingest("txn", rows(40))
        first = s.stats("txn", since=datetime(2026, 1, 1, 5))
    code = ("import featurelite as fl, sys, datetime as d\n"
            "s = fl.open(sys.argv[1], read_only=True)\n"
            "r = s.stats('txn', since=d.datetime(2026, 1, 1, 5, tzinfo=d.timezone.utc))\n"
            "print(r.cached, r.rows, r.computed_at.isoformat())")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", str(first.rows), first.computed_at.isoformat()]


# -- HTTP, remote client, CLI -------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, str, dict]]:
    """A served store (url, path) and what the Store says in process, computed first."""
    folder = tmp_path_factory.mktemp("probe")
    path = folder / "served.duckdb"
    expected: dict = {}
    with fl.open(path) as s:
        s.apply(definitions())
        s.ingest("txn", rows(40))
        train = training_set(s)
        pq.write_table(train, folder / "train.parquet")
        for _ in range(2):
            s.record_model("m:odd name/é", train, uri="runs:/x")
        expected["lineage"] = s.lineage().to_dict()
        expected["models"] = [r.to_dict() for r in s.list_models()]
        expected["stats"] = s.stats("txn", since=datetime(2026, 1, 1, 3), period="week").to_dict()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "featurelite", "serve", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(url, proc, lambda: proc.communicate()[1])
    try:
        yield url, str(path), expected
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert "Traceback" not in err, err


@pytest.mark.parametrize("body", [
    b"[]", b'"txn"', b"null", b"{}", b'{"view": 5}', b'{"view": "txn", "refresh": "yes"}',
    b'{"view": "txn", "period": "month"}', b'{"view": "txn", "period": 7}', b'{"view": "txn", "since": 5}',
    b'{"view": "txn", "since": "0001-01-01T00:00:00+01:00"}', b'{"view": "txn", "until": "+20000-01-01"}',
    b'{"view": "txn", "since": "2026-02-01", "until": "2026-01-01"}', b'{"view": "ghost"}',
    b'{"view": ["txn"]}', b'{"view": "txn", "since": "2026-01-01T00:00:00+99:00"}',
])
def test_bad_stats_bodies_are_4xx_with_the_error_class(served, body):
    url, _, _ = served
    answer = httpx.post(url + "/v1/stats", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    kind = answer.json()["error"]["type"]
    assert issubclass(getattr(fl, kind, None) or getattr(fl.errors, kind), fl.FeatureliteError), answer.text


def test_remote_stats_lineage_and_models_equal_in_process(served):
    url, _, expected = served
    with fl.connect(url) as remote:
        got = remote.stats("txn", since=datetime(2026, 1, 1, 3), period="week", refresh=False).to_dict()
        for key in ("seconds", "cached"):
            got.pop(key), expected["stats"].pop(key, None)
        assert got == {k: v for k, v in expected["stats"].items() if k not in ("seconds", "cached")}
        assert remote.lineage().to_dict() == expected["lineage"]
        assert [r.to_dict() for r in remote.list_models("m:odd name/é")] == expected["models"]
        assert remote.lineage("m:odd name/é").root == "model:m:odd name/é#2"


@pytest.mark.parametrize("call", [
    lambda s: s.stats("txn", since="2026-01-01"),
    lambda s: s.stats("txn", since=date(2026, 1, 1)),
    lambda s: s.stats("txn", refresh="yes"),
    lambda s: s.lineage("table:x"),
    lambda s: s.list_models(5),
])
def test_remote_errors_equal_in_process(served, call):
    url, _, _ = served
    with fl.connect(url) as remote, pytest.raises(fl.FeatureliteError) as remote_error:
        call(remote)
    # The in-process error of the same store: a copy (the server holds the file).
    with fl.open(":memory:") as local:
        local.apply(definitions())
        with pytest.raises(fl.FeatureliteError) as local_error:
            call(local)
    assert (type(remote_error.value), str(remote_error.value)) == (type(local_error.value), str(local_error.value))


@pytest.mark.parametrize("args", [
    ["lineage", "{path}", "m:odd name/é"], ["list-models", "{path}"], ["stats", "{path}", "txn"],
])
def test_the_cli_uses_the_server_holding_the_store(served, args):
    _, path, expected = served
    result = CliRunner().invoke(main, [a.format(path=path) for a in args] + ["--format", "json"])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    if args[0] == "list-models":
        assert json.loads(result.stdout) == expected["models"]


@pytest.mark.parametrize("args,code", [
    (["lineage", "{path}", "ghost"], 1), (["list-models", "{path}", "ghost"], 0),
    (["stats", "{path}", "ghost"], 1), (["stats", "{path}", "txn", "--since", "yesterday"], 2),
    (["record-model", "{path}", "m", "{path}"], 1),
])
def test_cli_errors_against_a_served_store_are_one_line(served, args, code):
    _, path, _ = served
    result = CliRunner().invoke(main, [a.format(path=path) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code == 1:
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and result.stdout == "", result.output


@pytest.mark.parametrize("content", [b"", b"a,b\n1,2\n", b"PAR1garbage", None])
def test_record_model_of_a_file_that_is_no_training_set_is_one_error_line(tmp_path, content):
    path = tmp_path / "s.duckdb"
    with fl.open(path) as s:
        s.apply(definitions())
    given = tmp_path / "train.bin"
    if content is None:  # a Parquet file without a manifest
        pq.write_table(rows(3), given)
    else:
        given.write_bytes(content)
    result = CliRunner().invoke(main, ["record-model", str(path), "m", str(given)])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1, \
        result.output
    with fl.open(path, read_only=True) as s:
        assert s.list_models() == []


def test_stats_of_a_feature_service_name_says_it_is_a_service(store):
    """store.stats("fraud") (a feature service) says it is a feature service and points at
    the views it reads, as it does for an on-demand view (not "apply it first")."""
    with pytest.raises(fl.FeatureliteError) as caught:
        store.stats("fraud")
    assert "service" in str(caught.value) and "apply it first" not in str(caught.value)


def test_mlflow_save_model_checks_the_record_name_before_saving(store, tmp_path):
    """save_model(model, ".../fraud#2", training_set=..., store=<open writable Store>)
    refuses the name records cannot keep before MLflow writes anything."""
    flm = pytest.importorskip("featurelite.mlflow")
    target = tmp_path / "fraud#2"
    try:
        flm.save_model(lambda df: df.iloc[:, 0], str(target), training_set=training_set(store), store=store)
    except fl.FeatureliteError:
        assert not target.exists(), "refused after the model folder was written"
    else:
        assert [r.name for r in store.list_models()] == ["fraud#2"]
