"""Bad input through the Python API: each case raises a featurelite error that names the
argument and the fix, and leaves the store as it was (issue 10's reproducers, one test
each). The random search for more lives in test_api_fuzz.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

import featurelite as fl
from featurelite.definitions import MAX_TTL

T0 = datetime(2026, 1, 1)
user = fl.Entity("user", join_keys=["user_id"])


@pytest.mark.parametrize("name", ["user\n", "user\r\n", "a b", "", "1abc", "ü", "user\x00"])
def test_names_are_whole_identifiers(name):
    with pytest.raises(fl.DefinitionError, match="is not valid"):
        fl.Entity(name)
    with pytest.raises(fl.DefinitionError, match="is not valid"):
        fl.FeatureView(name, entities=[user], schema={"x": "float64"}, timestamp_field="ts")


@pytest.mark.parametrize("ttl", ["1000000000d", "106751992d", "99999999999999999999w", timedelta(days=999_999_999), MAX_TTL + timedelta(microseconds=1)])
def test_a_ttl_past_the_longest_is_refused_at_definition(ttl):
    with pytest.raises(fl.DefinitionError, match="longest ttl") as caught:
        fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts", ttl=ttl)
    assert caught.value.ttl == ttl


def test_the_longest_ttl_serves_training_sets_and_online_reads_at_both_ends_of_time(store):
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts", ttl=MAX_TTL)
    store.apply([user, view])
    first, last = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999)
    store.ingest("v", pa.table({"user_id": [1, 2], "x": [1.0, 2.0], "ts": pa.array([first, last], pa.timestamp("us"))}))
    spine = pa.table({"user_id": [1, 1, 2], "event_timestamp": pa.array([first, last, last], pa.timestamp("us"))})
    assert store.get_historical_features(spine, ["v:x"]).column("x").to_pylist() == [1.0, 1.0, 2.0]
    assert store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=last).to_dict()["x"] == [1.0, 2.0]


# -- retrieval arguments -------------------------------------------------------------------

stats = fl.FeatureView("stats", entities=[user], schema={"spend": "float64", "seen": "timestamp"}, timestamp_field="ts")
text_keyed = fl.FeatureView("by_name", entities=[fl.Entity("person", join_keys={"name": "string"})], schema={"x": "float64"}, timestamp_field="ts")


@fl.featurizer
def later(seen: fl.Timestamp, spend: float) -> fl.Timestamp:
    return seen + 1


@fl.featurizer
def boom(spend: float) -> str:
    # A lone surrogate (not valid Unicode) for one value the check at apply does not try.
    return "\ud800" if spend == 2.0625 else "ok"


derived = fl.OnDemandFeatureView("derived", sources=[stats], featurizers={"later": later, "bad": boom})


@pytest.fixture
def ready(store):
    store.apply([user, stats, text_keyed, derived])
    store.ingest("stats", pa.table({"user_id": [1], "spend": [2.0625], "seen": pa.array([T0], pa.timestamp("us")), "ts": pa.array([T0], pa.timestamp("us"))}))
    store.ingest("by_name", pa.table({"name": ["42"], "x": [1.0], "ts": pa.array([T0], pa.timestamp("us"))}))
    return store


PLUS_ONE = timezone(timedelta(hours=1))


@pytest.mark.parametrize("call, message", [
    (lambda s: s.get_online_features({"user_id": 1}, ["stats:spend"]), r"entity_rows\['user_id'\] is int 1; .*\{'user_id': \[1\]\}"),
    (lambda s: s.get_online_features({"user_id": "1"}, ["stats:spend"]), r"entity_rows\['user_id'\] is str"),
    (lambda s: s.get_online_features({"user_id": [1]}, 1), "features must be a list of 'view:feature' references, not int"),
    (lambda s: s.get_online_features({"user_id": [1]}, [{"a": 1}]), "feature reference .* is dict; pass 'view:feature' strings"),
    (lambda s: s.get_online_features({"user_id": [1]}, ["derived:later"], request_data=[1]), "request_data must be a dict"),
    (lambda s: s.get_historical_features(pa.table({"user_id": [1], "event_timestamp": [T0]}), 1), "features must be a list"),
    (lambda s: s.get_online_features({"user_id": [1]}, ["stats:spend"], now=datetime(1, 1, 1, tzinfo=PLUS_ONE)), "now .* outside years 1-9999"),
    (lambda s: s.get_online_features({"user_id": [1]}, ["stats:spend"], now=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2)))), "outside years 1-9999"),
    (lambda s: s.materialize(end_date=datetime(1, 1, 1, tzinfo=PLUS_ONE)), "end_date .* outside years 1-9999"),
    (lambda s: s.get_online_features({"name": [4.2]}, ["by_name:x"]), "join key 'name' of view 'by_name' is string, but an entity gives float"),
    (lambda s: s.get_online_features({"user_id": ["9" * 5000]}, ["stats:spend"]), "join key 'user_id' of view 'stats' is int64, but an entity gives str"),
])
def test_bad_retrieval_arguments_name_the_argument(ready, call, message):
    with pytest.raises(fl.InputError, match=message):
        call(ready)


def test_keys_are_converted_where_nothing_is_lost(ready):
    """JSON clients send ids as strings or whole floats: a key that means one stored key
    is looked up as that key, never answered NOT_FOUND for its type."""
    got = ready.get_online_features({"user_id": ["1", 1.0], "name": [42, "42"]}, ["stats:spend", "by_name:x"], now=T0)
    assert got.statuses == {"spend": ["PRESENT", "PRESENT"], "x": ["PRESENT", "PRESENT"]}
    assert got.to_dict() == {"user_id": [1, 1], "spend": [2.0625, 2.0625], "name": ["42", "42"], "x": [1.0, 1.0]}


def test_on_demand_timestamps_come_back_as_stored_ones_do(ready):
    """One UTC epoch: a timestamp computed per request is zone-aware UTC like a stored one."""
    got = ready.get_online_features({"user_id": [1]}, ["stats:seen", "derived:later"], now=T0).to_dict()
    stored, computed = got["seen"][0], got["later"][0]
    assert type(stored) is type(computed) and stored.utcoffset() == computed.utcoffset() == timedelta(0)
    assert computed - stored == timedelta(microseconds=1)
    offline = ready.get_historical_features(pa.table({"user_id": [1], "event_timestamp": [T0]}), ["stats:seen", "derived:later"])
    assert offline.column("later").to_pylist() == [computed] and offline.column("seen").to_pylist() == [stored]


def test_a_featurizer_failing_at_run_time_is_a_featurizer_error_on_every_path(ready):
    with pytest.raises(fl.FeaturizerError, match="not valid Unicode"):
        ready.get_online_features({"user_id": [1]}, ["derived:bad"], now=T0)
    spine = pa.table({"user_id": [1], "event_timestamp": pa.array([T0], pa.timestamp("us"))})
    with pytest.raises(fl.FeaturizerError, match=r"on-demand view 'derived'.*not valid Unicode") as caught:
        ready.get_historical_features(spine, ["derived:bad"])
    assert caught.value.view == "derived" and caught.value.featurizer == "boom"


def test_describe_covers_on_demand_views(ready):
    info = ready.describe("derived")
    assert info["kind"] == "on_demand_feature_view" and info["version"] == derived.version
    assert info["spec"] == derived.spec()
    assert ready.describe("stats")["kind"] == "feature_view"
    with pytest.raises(fl.UnknownFeatureViewError):
        ready.describe("nope")


# -- issue 10's raw exceptions from the Python API, each now a featurelite error -------------

ROW = {"user_id": [1], "spend": [1.0], "seen": pa.array([T0], pa.timestamp("us")), "ts": pa.array([T0], pa.timestamp("us"))}


@pytest.mark.parametrize("call, error, message", [
    (lambda s: s.ingest("stats", pa.table({**ROW, "ts": pa.array([2**31 - 1], pa.int32()).view(pa.date32())})),
     fl.SchemaError, r"column 'ts' row 0 has value 2147483647 \(date32\[day\]\), which does not fit dtype 'timestamp'"),
    (lambda s: s.ingest("stats", __import__("pandas").Series([1])), fl.SourceError, r"cannot read a pandas Series; .*to_frame"),
    (lambda s: s.ingest("stats", pa.table(ROW), batch_rows=None), fl.InputError, "batch_rows must be a whole number of at least 1, not None"),
    (lambda s: s.ingest("stats", pa.table(ROW), batch_rows=0), fl.InputError, "batch_rows must be a whole number of at least 1"),
    (lambda s: s.ingest(1, pa.table(ROW)), fl.InputError, "the view to ingest into must be a name"),
    (lambda s: s.apply(1), fl.DefinitionError, "apply takes an Entity, FeatureView, OnDemandFeatureView or FeatureService, or a list of them, not int"),
    (lambda s: s.apply(None), fl.DefinitionError, "apply takes"),
    (lambda s: s.apply([user], dry_run="yes"), fl.InputError, "dry_run must be True or False"),
    (lambda s: s.materialize(1), fl.InputError, "views must be a name or a list of names, not int"),
    (lambda s: s.materialize([{}]), fl.InputError, "each of views must be a name"),
    (lambda s: s.verify(examples=-5), fl.InputError, "examples must be a whole number of at least 1, not -5"),
    (lambda s: s.verify(seed=[]), fl.InputError, "seed must be a whole number of at least 0"),
    (lambda s: s.list_versions(1), fl.InputError, "the definition must be a name"),
    (lambda s: s.list_versions("stats", kind="views"), fl.InputError, "kind must be one of entity, feature_view, on_demand_feature_view"),
    (lambda s: s.describe({}), fl.InputError, "the view to describe must be a name"),
    (lambda s: s.delete_feature_view([]), fl.InputError, "the view to delete must be a name"),
    (lambda s: s.get_entity([]), fl.InputError, "the entity must be a name"),
    (lambda s: s.get_historical_features(pa.table({"user_id": [1], "event_timestamp": [T0]}), ["stats:spend"], timestamp_field=1),
     fl.InputError, "timestamp_field must be a name"),
    (lambda s: s.get_historical_features(pa.table([pa.array([1]), pa.array([T0]), pa.array([2])], names=["user_id", "event_timestamp", "user_id"]), ["stats:spend"]),
     fl.SchemaError, "entity_df has column 'user_id' more than once"),
    (lambda s: s.get_online_features({"user_id": [1]}, ["stats:spend"], full_feature_names="no"), fl.InputError, "full_feature_names must be True or False"),
])
def test_api_misuse_is_a_featurelite_error_that_changes_nothing(ready, call, error, message):
    before = ready.describe("stats"), ready.list_versions("stats"), ready.get_online_features({"user_id": [1]}, ["stats:spend"], now=T0).to_dict()
    with pytest.raises(error, match=message):
        call(ready)
    after = ready.describe("stats"), ready.list_versions("stats"), ready.get_online_features({"user_id": [1]}, ["stats:spend"], now=T0).to_dict()
    assert after == before


def test_a_store_path_that_is_not_utf8_is_a_store_error(tmp_path):
    """A file name with a byte that is not UTF-8 reaches Python as a lone surrogate;
    DuckDB cannot open it and raised a raw C++ std::bad_cast."""
    with pytest.raises(fl.StoreError, match="is not valid UTF-8"):
        fl.open(str(tmp_path / "\udcff.duckdb"))
    assert list(tmp_path.iterdir()) == []


def _stream_with_bad_name() -> pa.Table:
    """An Arrow table whose column name 'tX' became bytes that are not UTF-8 (as a bit flip
    in an IPC stream pushed over HTTP makes it)."""
    table = pa.table({"user_id": [1], "spend": [1.0], "seen": pa.array([T0], pa.timestamp("us")), "tX": pa.array([T0], pa.timestamp("us"))})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = bytearray(sink.getvalue().to_pybytes())
    body[body.find(b"tX") + 1] = 0xFF
    return pa.ipc.open_stream(bytes(body)).read_all()


def test_arrow_input_that_is_not_utf8_is_a_clear_error_and_writes_nothing(ready):
    before = ready.describe("stats")
    with pytest.raises(fl.SourceError, match="column name of the input is not valid UTF-8"):
        ready.ingest("stats", _stream_with_bad_name())
    with pytest.raises(fl.SourceError, match="column name of the input is not valid UTF-8"):
        ready.get_historical_features(_stream_with_bad_name(), ["stats:spend"])
    text = fl.FeatureView("texts", entities=[user], schema={"s": "string"}, timestamp_field="ts")
    ready.apply(text)
    offsets = pa.py_buffer(pa.array([0, 1, 3], pa.int32()).buffers()[1])
    values = pa.Array.from_buffers(pa.string(), 2, [None, offsets, pa.py_buffer(b"a\xff\xfe")])
    with pytest.raises(fl.SchemaError, match=r"column 's' row 1 has value b'\\xff\\xfe', which does not fit dtype 'string'"):
        ready.ingest("texts", pa.table({"user_id": [1, 2], "s": values, "ts": pa.array([T0, T0], pa.timestamp("us"))}))
    assert ready.describe("stats") == before and ready.describe("texts")["history_rows"] == 0


def test_runtime_values_are_bound_never_pasted_into_sql(tmp_path, monkeypatch):
    """Ingest sequence numbers (deferred online catch-up, fresh winners, describe's lag)
    and materialize's end_date reach DuckDB as parameters, never as text in the SQL."""
    import re

    import featurelite.db as db
    from featurelite import historical, offline, online, writes
    from featurelite import store as store_module
    from featurelite.rules import SEQ

    seen: list[str] = []
    real_run, real_fetch = db.run, db.fetch_arrow

    def run(con, sql, params=None):
        seen.append(sql)
        return real_run(con, sql, params)

    def fetch_arrow(con, sql, **kwargs):
        seen.append(sql)
        return real_fetch(con, sql, **kwargs)

    for module in (store_module, online, offline, writes, historical):
        monkeypatch.setattr(module, "run", run, raising=False)
        monkeypatch.setattr(module, "fetch_arrow", fetch_arrow, raising=False)
    view = fl.FeatureView("v", entities=[user], schema={"x": "float64"}, timestamp_field="ts")
    with fl.open(tmp_path / "s.duckdb") as store:
        store.apply([user, view])
        for day in range(1, 4):  # the first ingest upserts; with the index loaded, the rest defer
            store.ingest("v", pa.table({"user_id": [1, 1, 2], "x": [1.0, 2.0, 3.0], "ts": pa.array([T0 + timedelta(days=day)] * 3, pa.timestamp("us"))}))
            assert store.get_online_features({"user_id": [1, 2]}, ["v:x"], now=T0 + timedelta(days=9)).to_dict()["x"] == [2.0, 3.0]
        assert store.describe("v")["online_rows"] == 2
        store.checkpoint()  # the online table catches up
        store.materialize(end_date=T0 + timedelta(days=2))
    pasted = [sql for sql in seen if re.search(rf'{SEQ}"? >= \d|\'20\d\d-', sql)]
    assert any(SEQ in sql and "$min_seq" in sql for sql in seen) and not pasted, pasted
