"""featurelite.mlflow: a model saved with its training set's manifest, reloaded (in a fresh
process too), predicting from entity keys and request data only.

No tracking server: save_model writes a folder; log_model logs to a file store in tmp_path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from mlflow_helpers import LinearModel, build_store

import featurelite as fl
import featurelite.mlflow as flm  # imports mlflow.pyfunc without MLflow's own import-time UserWarning

HELPERS = str(Path(__file__).with_name("mlflow_helpers.py"))
#: Entity keys and request data, as a client sends them: user 4 is unknown to the store, and
#: user 3's basket is missing (NaN in pandas, null for the featurizer, as in a training set).
REQUEST = pd.DataFrame({"user_id": [1, 2, 3, 4], "basket": [12.5, 1.0, np.nan, 2.0]})


def expected_features(store: fl.Store, request: pd.DataFrame) -> pd.DataFrame:
    """What the service serves for ``request``, as a training set's features (through Arrow)."""
    response = store.get_online_features(
        {"user_id": request["user_id"].tolist()}, service="fraud",
        request_data={"basket": [None if pd.isna(b) else b for b in request["basket"]]},
    )
    return response.to_arrow().to_pandas()


def outputs(training_set: pa.Table) -> list[str]:
    return list(fl.Manifest.from_table(training_set).outputs)


@pytest.fixture
def trained(tmp_path):
    """(store path, training set, model): the store is closed, as it is for a model server."""
    path = tmp_path / "shop.duckdb"
    store, train = build_store(path)
    store.close()
    return path, train, LinearModel.fit(train)


def test_a_saved_model_predicts_from_keys_and_request_data_in_a_fresh_process(tmp_path):
    path = tmp_path / "shop.duckdb"
    store, train = build_store(path)
    model = LinearModel.fit(train)
    # code_paths: the model's class travels with it, as a user's would.
    flm.save_model(model, tmp_path / "model", training_set=train, store=str(path), code_paths=[HELPERS])
    served = expected_features(store, REQUEST)[outputs(train)]
    expected = model.predict(served)
    assert np.isnan(served["basket_share"][2]) and served["orders"].isna()[3]  # nulls are exercised
    store.close()

    script = textwrap.dedent("""
        import json, sys
        import mlflow.pyfunc
        import pandas as pd
        loaded = mlflow.pyfunc.load_model(sys.argv[1])
        request = pd.DataFrame(json.loads(sys.argv[2]))
        print(json.dumps(loaded.predict(request).tolist()))
    """)
    # A fresh interpreter, not started from the tests: nothing of this process is imported.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model"), REQUEST.to_json(orient="columns")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predictions = json.loads(done.stdout.splitlines()[-1])
    np.testing.assert_array_equal(np.array(predictions, dtype=np.float64), expected)


def test_the_model_hands_its_model_the_features_as_a_training_set_has_them(tmp_path, trained):
    path, train, model = trained
    flm.save_model(model, tmp_path / "model", training_set=train, store=path)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    inner = loaded.unwrap_python_model()
    assert isinstance(inner, flm.FeatureliteModel)
    assert inner.manifest == fl.Manifest.from_table(train)
    frame = inner.features(REQUEST.set_index(pd.Index([10, 11, 12, 13])))
    # Columns in the training set's order, typed as training_set.to_pandas() types them, and
    # the input's index, so predictions line up with the rows asked for.
    expected = expected_features(inner.store, REQUEST)[outputs(train)].set_axis(pd.Index([10, 11, 12, 13]))
    pd.testing.assert_frame_equal(frame, expected)
    assert list(frame.columns) == list(train.select(outputs(train)).to_pandas().columns)
    np.testing.assert_array_equal(loaded.predict(REQUEST), model.predict(expected))
    # A dict of lists works too; extra columns (a label, say) are ignored.
    np.testing.assert_array_equal(
        loaded.predict({"user_id": [1], "basket": [12.5], "label": [1.0]}), model.predict(expected.iloc[:1])
    )
    np.testing.assert_array_equal(
        loaded.predict({"user_id": np.array([1]), "basket": np.array([12.5])}), model.predict(expected.iloc[:1])
    )


def test_missing_input_columns_are_named_with_the_fix(tmp_path, trained):
    path, train, model = trained
    flm.save_model(model, tmp_path / "model", training_set=train, store=path)
    loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    with pytest.raises(fl.SchemaError, match=r"the model's input has no column 'basket'") as info:
        loaded.predict(pd.DataFrame({"user_id": [1]}))
    assert info.value.column == "basket"
    assert "pass a DataFrame of the entity keys (user_id) and request fields (basket)" in str(info.value)
    with pytest.raises(fl.SchemaError, match=r"no column 'user_id' \(missing: user_id, basket\)"):
        loaded.predict(pd.DataFrame({"customer": [1]}))
    with pytest.raises(fl.InputError, match="must be a pandas DataFrame"):
        loaded.predict([1, 2])


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A local file store in tmp_path as the tracking URI, for this test only."""
    # mlflow-skinny has no database backend, and MLflow 3 wants an opt-in for the file store.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    assert mlflow.get_tracking_uri() == (tmp_path / "mlruns").as_uri()  # nobody set one in-process


def test_log_model_logs_to_a_run_and_the_store_can_be_given_at_load_time(tmp_path, trained, tracking):
    path, train, model = trained
    with mlflow.start_run():
        info = flm.log_model(model, "fraud_model", training_set=fl.Manifest.from_table(train))
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "download")))
    # The manifest is plain JSON in the model folder, and a summary is in the MLmodel file.
    manifest = fl.Manifest.from_json((local / "artifacts" / "featurelite_manifest.json").read_text())
    assert manifest == fl.Manifest.from_table(train)
    summary = mlflow.models.Model.load(str(local / "MLmodel")).metadata["featurelite"]
    assert summary["features"] == list(manifest.references) and summary["store_id"] == manifest.store_id
    # Logged without a store: loading says how to give one, and model_config gives it.
    with pytest.raises(fl.StoreError, match=r"has no store to read features from; pass .*model_config"):
        mlflow.pyfunc.load_model(info.model_uri)
    loaded = mlflow.pyfunc.load_model(info.model_uri, model_config={"store": path.as_uri()})  # a file URI is a path
    expected = model.predict(expected_features(loaded.unwrap_python_model().store, REQUEST)[outputs(train)])
    np.testing.assert_array_equal(loaded.predict(REQUEST), expected)


def test_models_loaded_in_one_process_share_one_read_only_store(tmp_path, trained):
    path, train, model = trained
    flm.save_model(model, tmp_path / "model", training_set=train, store=path)
    first = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    second = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    store = first.unwrap_python_model().store
    assert store is second.unwrap_python_model().store  # one Store per file and process
    assert store.read_only
    np.testing.assert_array_equal(first.predict(REQUEST), second.predict(REQUEST))


def test_predict_refuses_once_the_pinned_view_storage_changed(tmp_path):
    user = fl.Entity("user", join_keys=["user_id"])
    with fl.open(tmp_path / "shop.duckdb") as store:
        store.apply([user, fl.FeatureView("profile", entities=[user], schema={"age": "float64"}),
                     fl.FeatureService("ages", ["profile:age"])])
        pinned = store.get_feature_view("profile").version
        spine = pa.table({"user_id": [1], "event_timestamp": [pd.Timestamp("2026-01-01")]})
        train = store.get_historical_features(spine, service="ages")
        # A callable is a model too (cloudpickle saves the lambda itself).
        flm.save_model(lambda features: features["age"].to_numpy(), tmp_path / "model", training_set=train)
        # In the process that has the store open, the Store itself is passed.
        loaded = mlflow.pyfunc.load_model(str(tmp_path / "model"), model_config={"store": store})
        assert np.isnan(loaded.predict(pd.DataFrame({"user_id": [1]}))).all()
        # Allowed while the view holds no rows: the pinned feature's stored dtype changes.
        store.apply([fl.FeatureView("profile", entities=[user], schema={"age": "int64"})])
        with pytest.raises(fl.PinnedVersionError, match="feature view 'profile' is pinned at version") as info:
            loaded.predict(pd.DataFrame({"user_id": [1]}))
        assert info.value.pinned == pinned
        assert "changes dtype from 'float64' to 'int64'" in str(info.value)
        # Loading it again refuses at once, not on the first request.
        with pytest.raises(fl.PinnedVersionError):
            mlflow.pyfunc.load_model(str(tmp_path / "model"), model_config={"store": store})


def test_load_refuses_a_manifest_from_another_store(tmp_path, trained):
    _, train, model = trained
    other, _ = build_store(tmp_path / "other.duckdb")  # the same definitions, another store
    with pytest.raises(fl.ManifestError, match="the training set is from another store"):
        flm.save_model(model, tmp_path / "refused", training_set=train, store=other)
    other.close()
    flm.save_model(model, tmp_path / "model", training_set=train, store=tmp_path / "other.duckdb")
    with pytest.raises(fl.ManifestError, match=r"the manifest is from another store .*open the store the training set"):
        mlflow.pyfunc.load_model(str(tmp_path / "model"))


def test_a_store_another_process_holds_for_writing_is_refused_with_the_reason(tmp_path, trained):
    path, train, model = trained
    flm.save_model(model, tmp_path / "model", training_set=train, store=path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, featurelite as fl\ns = fl.open(sys.argv[1])\nprint('open', flush=True)\n"
         "sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(fl.StoreLockedError, match="DuckDB does not let a process read a store file while") as info:
            mlflow.pyfunc.load_model(str(tmp_path / "model"))
        assert info.value.path == str(path)
        assert "serve the model from a copy of the file" in str(info.value)
    finally:
        holder.communicate("", timeout=60)
    # Once the writer is gone, the model loads.
    assert len(mlflow.pyfunc.load_model(str(tmp_path / "model")).predict(REQUEST)) == len(REQUEST)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "https://features.example.com/shop"])
def test_a_server_url_is_refused_until_the_remote_client_exists(tmp_path, trained, url):
    _, train, model = trained
    with pytest.raises(fl.StoreError, match="reading features from a featurelite server is not supported yet") as info:
        flm.save_model(model, tmp_path / "refused", training_set=train, store=url)
    assert info.value.path == url
    flm.save_model(model, tmp_path / "model", training_set=train)
    with pytest.raises(fl.StoreError, match="not supported yet"):
        mlflow.pyfunc.load_model(str(tmp_path / "model"), model_config={"store": url})


def test_what_cannot_be_saved_is_refused_with_the_fix(tmp_path, trained):
    _, train, model = trained
    with pytest.raises(fl.StoreError, match="an in-memory store cannot be read by a model loaded elsewhere"):
        flm.save_model(model, tmp_path / "a", training_set=train, store=":memory:")
    with pytest.raises(fl.InputError, match="must have a predict"):
        flm.save_model(object(), tmp_path / "b", training_set=train)
    with pytest.raises(fl.ManifestError, match="pandas DataFrame, which does not keep the training set's manifest"):
        flm.save_model(model, tmp_path / "c", training_set=train.to_pandas())
    with pytest.raises(fl.ManifestError, match="carries no featurelite manifest"):
        flm.save_model(model, tmp_path / "d", training_set=train.replace_schema_metadata(None))
    with pytest.raises(fl.InputError, match="sets python_model= itself"):
        flm.save_model(model, tmp_path / "e", training_set=train, python_model=model)
    assert not any((tmp_path / name).exists() for name in "abcde")
    with pytest.raises(fl.StoreError, match="no store file at"):
        flm.save_model(model, tmp_path / "f", training_set=train, store=tmp_path / "missing.duckdb")
        mlflow.pyfunc.load_model(str(tmp_path / "f"))


def test_a_model_logged_with_an_open_store_is_recorded_for_lineage(tmp_path, tracking):
    """Issue 15: lineage shows which model was trained on which service version. Logging
    with an open, writable store records the model in it (name, MLflow URI, service and
    versions); a store given as a path is not opened, so nothing is recorded there."""
    path = tmp_path / "shop.duckdb"
    store, train = build_store(path)
    model = LinearModel.fit(train)
    with mlflow.start_run():
        info = flm.log_model(model, "fraud_model", training_set=train, store=store)
    (record,) = store.list_models()
    manifest = fl.Manifest.from_table(train)
    assert (record.name, record.number, record.uri) == ("fraud_model", 1, info.model_uri)
    assert (record.service, record.service_version) == ("fraud", manifest.service_version)
    assert record.pins == dict(manifest.pins) and record.manifest_digest == manifest.digest
    graph = store.lineage("fraud")
    assert ("feature_service:fraud", "model:fraud_model#1", "trained_on", manifest.service_version) in {
        (e.source, e.target, e.relation, e.version) for e in graph.edges}
    flm.save_model(model, tmp_path / "saved", training_set=train, store=store)
    assert [(r.name, r.uri) for r in store.list_models()] == [
        ("fraud_model", info.model_uri), ("saved", str(tmp_path / "saved"))]
    store.close()
    flm.save_model(model, tmp_path / "by_path", training_set=train, store=str(path))
    with fl.open(path, read_only=True) as reopened:
        assert [r.name for r in reopened.list_models()] == ["fraud_model", "saved"]
