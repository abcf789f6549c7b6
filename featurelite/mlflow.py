"""Models that carry their features: a model and its training set's manifest as one MLflow model.

    >>> import featurelite.mlflow as flm
    >>> train = store.get_historical_features(spine, service="fraud")
    >>> model = MyModel().fit(train)
    >>> flm.save_model(model, "fraud_model", training_set=train, store="shop.duckdb")
    >>> loaded = mlflow.pyfunc.load_model("fraud_model")
    >>> loaded.predict(pd.DataFrame({"user_id": [42], "basket": [12.5]}))

:func:`save_model` (to a folder) and :func:`log_model` (to the active MLflow run) store the
user's model together with the :class:`~featurelite.Manifest` of the training set it was
fitted on, as an MLflow ``pyfunc`` model. The loaded model's ``predict`` takes entity keys
(``manifest.entity_keys``) and request data (``manifest.request_fields``) only: it reads the
features from the store, at exactly the versions the training set was built with, and calls
the user's model on a DataFrame of them in the training set's column order
(``manifest.outputs``). The client sends keys, never features.

Needs the optional extra: ``pip install 'featurelite[mlflow]'`` (mlflow-skinny and pandas).

**How the model is packaged, and why.** The model folder holds, besides MLflow's files:

- ``artifacts/featurelite_manifest.json``: the manifest as plain JSON, so anyone can read
  which store, service, definition versions and featurizers a model was trained with
  (``mlflow artifacts download``, a text editor) without unpickling anything;
- ``artifacts/model.pkl``: the user's model, pickled with cloudpickle (the library MLflow
  pickles ``python_model`` objects with, so the same objects can be saved);
- ``python_model.pkl``: a :class:`FeatureliteModel` with no state, pickled by reference, so
  the serving code is the installed featurelite's (bug fixes apply to models already saved)
  and the manifest is never hidden inside a pickle;
- the ``MLmodel`` file's metadata, ``featurelite``: store identity, service, manifest digest
  and the pinned feature references, shown by the MLflow UI;
- ``model_config``: ``store`` (the store file's path) and ``read_only`` (default True).

**Where the features come from.** ``store=`` at save time records the path of the store file
(made absolute); ``mlflow.pyfunc.load_model(uri, model_config={"store": path})`` overrides it
at load time (so does the ``MLFLOW_PYFUNC_INFERENCE_CONFIG`` environment variable, e.g. for
``mlflow models serve``). In the process that has the store open already, pass the
:class:`~featurelite.Store` itself: ``model_config={"store": store}``. A server URL is not
supported yet (it needs the remote client, a later release) and is refused.

**Loading** opens the store once, read-only, and checks the manifest against it: a manifest
from another store (:class:`~featurelite.ManifestError`), or versions whose stored columns
have changed since (:class:`~featurelite.PinnedVersionError`), fail at load, not on the
first request. Every ``predict`` reads through the manifest again, so a store changed under a
loaded model refuses rather than serving other features. Several processes (e.g. the workers
of ``mlflow models serve``) can open one store read-only at once, and models loaded in one
process share one Store per file.

**A store another process writes.** DuckDB cannot open a file read-only while another
process has it open for writing (``featurelite serve``, an ingest job), and while any model
holds the file read-only no process can open it for writing. featurelite does not work
around this: copying the file would serve values that silently stop changing. Loading
raises :class:`~featurelite.StoreLockedError` saying so; serve the model from a copy of the
file you refresh on purpose (``store.checkpoint()``, copy, reload the model), or stop the
writer; reading through the server, for a store that keeps taking writes, comes with the
remote client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import warnings
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import cloudpickle
import pandas as pd
import pyarrow as pa

from ._version import __version__
from .errors import InputError, ManifestError, SchemaError, StoreClosedError, StoreError, StoreLockedError
from .lineage import check_model_name
from .manifest import Manifest
from .store import Store
from .store import open as open_store
from .types import dtype

with warnings.catch_warnings():
    # MLflow 3.x warns about its own type hints when mlflow.pyfunc is imported (UserWarning
    # "Any type hint is inferred as AnyType", from mlflow.types.responses): nothing a user of
    # featurelite can act on, and an error under `-W error`. Only that warning is ignored,
    # only while importing.
    warnings.filterwarnings("ignore", message=r".*Any type hint is inferred as AnyType", category=UserWarning)
    import mlflow.pyfunc
    from mlflow.pyfunc.model import PythonModel

__all__ = ["FeatureliteModel", "log_model", "save_model"]

#: Artifact names inside the model folder (``artifacts/<file>``).
MANIFEST_ARTIFACT = "featurelite_manifest"
MODEL_ARTIFACT = "model"
_MANIFEST_FILE = "featurelite_manifest.json"
_MODEL_FILE = "model.pkl"

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

StoreArg = str | os.PathLike[str] | Store


def save_model(
    model: Any,
    path: str | os.PathLike[str],
    *,
    training_set: pa.Table | pa.Schema | Manifest,
    store: StoreArg | None = None,
    read_only: bool = True,
    **kwargs: Any,
) -> Any:
    """Save ``model`` with ``training_set``'s manifest as an MLflow pyfunc model in folder ``path``.

    ``model`` has a ``predict(features: pandas.DataFrame)`` method (or is a callable taking
    that DataFrame). ``training_set`` is the table ``store.get_historical_features`` returned
    (or its schema, or its :class:`~featurelite.Manifest`). ``store`` is the path of the
    store file the model reads features from (or an open Store: its path is recorded, and,
    if it is open for writing, the model is recorded in it with ``Store.record_model`` for
    lineage); it may also be given at load time. ``read_only=False`` makes the model open the store for
    writing, which locks every other process out of it. Other keyword arguments go to
    ``mlflow.pyfunc.save_model`` (``code_paths``, ``signature``, ``metadata``,
    ``pip_requirements``, ``extra_pip_requirements``, ...).
    """
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    _check_recordable(store, name)
    with _packaged(model, training_set, store, read_only, kwargs) as arguments:
        saved = mlflow.pyfunc.save_model(os.fspath(path), **arguments)
    _record(store, name, training_set, os.path.abspath(os.fspath(path)))
    return saved


def log_model(
    model: Any,
    name_or_artifact_path: str,
    *,
    training_set: pa.Table | pa.Schema | Manifest,
    store: StoreArg | None = None,
    read_only: bool = True,
    **kwargs: Any,
) -> Any:
    """Log ``model`` with ``training_set``'s manifest as an MLflow pyfunc model named
    ``name_or_artifact_path`` (MLflow 3's ``name=``), linked to the active run if there is one,
    and return MLflow's ``ModelInfo`` (``.model_uri`` loads it). Arguments as for :func:`save_model`;
    other keyword arguments go to ``mlflow.pyfunc.log_model`` (``registered_model_name``,
    ``params``, ``tags``, ...)."""
    registered = kwargs.get("registered_model_name")
    name = registered if isinstance(registered, str) else name_or_artifact_path
    _check_recordable(store, name)
    with _packaged(model, training_set, store, read_only, kwargs) as arguments:
        info = mlflow.pyfunc.log_model(name=name_or_artifact_path, **arguments)
    _record(store, name, training_set, getattr(info, "model_uri", None))
    return info


def _check_recordable(store: StoreArg | None, name: str) -> None:
    """Before anything is saved: a model that will be recorded (an open writable Store)
    has a name records can keep."""
    if isinstance(store, Store) and not store.read_only and not store.closed:
        check_model_name(name)


def _record(store: StoreArg | None, name: str, training_set: object, uri: str | None) -> None:
    """Record the model in ``store`` (for lineage) when it is an open Store that may be
    written; a path is not opened (this or another process may hold it): record it with
    ``store.record_model`` or ``featurelite record-model`` then."""
    if isinstance(store, Store) and not store.read_only and not store.closed:
        store.record_model(name, _manifest_of(training_set), uri=uri)


@contextlib.contextmanager
def _packaged(
    model: Any, training_set: object, store: StoreArg | None, read_only: bool, kwargs: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """The keyword arguments for MLflow's save_model / log_model, with the manifest and
    the pickled model written to a temporary folder that MLflow copies them from."""
    if not (hasattr(model, "predict") or callable(model)):
        raise InputError(f"the model must have a predict(features) method or be a callable, not {type(model).__name__}")
    if not isinstance(read_only, bool):
        raise InputError(f"read_only must be True or False, not {read_only!r}")
    for taken in ("python_model", "artifacts", "loader_module", "data_path", "name", "artifact_path", "path"):
        if taken in kwargs:
            raise InputError(f"featurelite.mlflow sets {taken}= itself; leave it out")
    manifest = _manifest_of(training_set)
    path = None if store is None else _recorded_path(store, manifest)
    kwargs = dict(kwargs)
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata["featurelite"] = {
        "store_id": manifest.store_id,
        "service": manifest.service,
        "service_version": manifest.service_version,
        "manifest_digest": manifest.digest,
        "features": list(manifest.references),
        "entity_keys": list(manifest.entity_keys),
        "request_fields": list(manifest.request_fields),
    }
    config = dict(kwargs.pop("model_config", None) or {})
    # Every key load_model(model_config=...) may override must be saved: MLflow ignores
    # load-time keys the saved config does not have.
    config.update({"store": path, "read_only": read_only})
    # Explicit requirements: MLflow would otherwise infer them by loading the model in a
    # subprocess, which opens the store (and fails while this process holds it).
    requirements = kwargs.pop("pip_requirements", None)
    requirements = list(_default_requirements() if requirements is None else requirements)
    requirements += list(kwargs.pop("extra_pip_requirements", None) or [])
    with tempfile.TemporaryDirectory(prefix="featurelite-mlflow-") as folder:
        manifest_path = os.path.join(folder, _MANIFEST_FILE)
        model_path = os.path.join(folder, _MODEL_FILE)
        with open(manifest_path, "w", encoding="utf-8") as f:
            f.write(manifest.to_json())
        with open(model_path, "wb") as pickled:
            cloudpickle.dump(model, pickled)
        _PYFUNC_LOG.addFilter(_NO_SIGNATURE_NOTICE)
        try:
            yield {
                **kwargs,
                "python_model": FeatureliteModel(),
                "artifacts": {MANIFEST_ARTIFACT: manifest_path, MODEL_ARTIFACT: model_path},
                "model_config": config,
                "metadata": metadata,
                "pip_requirements": requirements,
            }
        finally:
            _PYFUNC_LOG.removeFilter(_NO_SIGNATURE_NOTICE)


class _NoSignatureNotice(logging.Filter):
    """Drops MLflow's notice that it could not infer a signature from
    ``FeatureliteModel.predict``'s type hint. The model has no MLflow signature on purpose:
    the manifest says what it reads, ``predict`` checks its input itself (naming a missing
    column and the fix), and MLflow's schema enforcement would cost every request time. The
    notice would only mislead; MLflow's other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to infer model signature")


_PYFUNC_LOG = logging.getLogger("mlflow.pyfunc")
_NO_SIGNATURE_NOTICE = _NoSignatureNotice()


def _default_requirements() -> list[str]:
    return [
        f"featurelite[mlflow]=={__version__}",
        f"cloudpickle=={cloudpickle.__version__}",
        f"pandas=={pd.__version__}",
        f"pyarrow=={pa.__version__}",
    ]


def _manifest_of(training_set: object) -> Manifest:
    if isinstance(training_set, Manifest):
        return training_set
    if isinstance(training_set, pd.DataFrame):
        raise ManifestError(
            "training_set is a pandas DataFrame, which does not keep the training set's manifest; pass the "
            "pyarrow Table store.get_historical_features returned (or fl.Manifest.from_table(it))"
        )
    return Manifest.from_table(training_set)  # anything else: a clear ManifestError


def _recorded_path(store: object, manifest: Manifest) -> str:
    """The absolute path of the store file ``store`` names, checked as far as it can be
    without opening the file (this process may hold it for writing)."""
    if isinstance(store, Store):
        if store.store_id != manifest.store_id:
            raise ManifestError(
                f"the training set is from another store ({manifest.store_id}), not {store.path!r} "
                f"({store.store_id}); pass the store the training set was built from"
            )
        store = store.path
    return _store_path(store)


def _store_path(store: object) -> str:
    if not isinstance(store, (str, os.PathLike)):
        raise StoreError(
            f"store must be the path of a store file (or an open featurelite Store), not {type(store).__name__}"
        )
    path = os.fspath(store)
    if not isinstance(path, str):
        raise StoreError(f"store must be a path given as text, not {path!r}")
    if path.startswith("file://"):  # a file URI (as MLflow users often write paths) names a file
        path = url2pathname(urlparse(path).path)
    elif _URL.match(path):
        raise StoreError(
            f"store {path!r} is a URL: reading features from a featurelite server is not supported yet (it "
            "comes with the remote client); pass the path of the store file",
            path=path,
        )
    if path == ":memory:" or not path:
        raise StoreError(
            "an in-memory store cannot be read by a model loaded elsewhere; save the store to a file "
            "(fl.open('shop.duckdb')) and pass its path",
            path=path,
        )
    return os.path.abspath(path)


#: Stores opened by loaded models, per file: models loaded in one process share one Store
#: (DuckDB and featurelite allow one per file and process). A Store is closed when the last
#: model using it is garbage collected.
_SHARED: weakref.WeakValueDictionary[str, Store] = weakref.WeakValueDictionary()
_SHARED_LOCK = threading.Lock()


def _open_for_model(path: str, read_only: bool) -> Store:
    key = os.path.realpath(path)
    with _SHARED_LOCK:
        shared = _SHARED.get(key)
        if shared is not None and not shared.closed and (read_only or not shared.read_only):
            return shared
        if not os.path.exists(path):
            raise StoreError(
                f"no store file at {path!r}; pass the path of the store the model was trained from "
                "(mlflow.pyfunc.load_model(uri, model_config={'store': path}))",
                path=path,
            )
        try:
            opened = open_store(path, read_only=read_only)
        except StoreLockedError as exc:
            mode = "read-only" if read_only else "for writing"
            raise StoreLockedError(
                f"the model cannot open store {path!r} {mode} ({exc}): DuckDB does not let a process read a "
                "store file while another has it open for writing (`featurelite serve`, an ingest job, a Store "
                "open in this process); stop the writer, serve the model from a copy of the file, or, in the "
                "process that has the store open, pass it: load_model(uri, model_config={'store': store})",
                path=path,
            ) from exc
        _SHARED[key] = opened
        return opened


class FeatureliteModel(PythonModel):  # type: ignore[misc]  # mlflow is read as untyped (pyproject.toml)
    """The pyfunc model :func:`save_model` and :func:`log_model` write: the user's model plus
    the manifest of its training set. Get it from a loaded model with
    ``loaded.unwrap_python_model()``; :attr:`manifest`, :attr:`model` and :attr:`store` are
    set once it is loaded."""

    manifest: Manifest
    #: The user's model.
    model: Any
    #: The store the features are read from.
    store: Store

    def load_context(self, context: Any) -> None:
        """Read the manifest and the user's model, open the store, and check that the store
        can serve the manifest (ManifestError, PinnedVersionError if not)."""
        with open(context.artifacts[MANIFEST_ARTIFACT], encoding="utf-8") as f:
            self.manifest = Manifest.from_json(f.read())
        with open(context.artifacts[MODEL_ARTIFACT], "rb") as pickled:
            self.model = cloudpickle.load(pickled)
        config = context.model_config or {}
        store = config.get("store")
        read_only = config.get("read_only", True)
        if store is None:
            raise StoreError(
                "the model has no store to read features from; pass "
                "mlflow.pyfunc.load_model(uri, model_config={'store': '/path/to/store.duckdb'}) "
                "(or store= to featurelite.mlflow.save_model / log_model)"
            )
        if isinstance(store, Store):
            if store.closed:
                raise StoreClosedError(
                    f"the store passed to the model ({store.path!r}) is closed; pass an open one",
                    path=store.path,
                )
            self.store = store
        else:
            self.store = _open_for_model(_store_path(store), read_only=bool(read_only))
        m = self.manifest
        self._keys = m.entity_keys
        self._fields = m.request_fields
        self._outputs = list(m.outputs)
        self._types = [dtype(f.dtype).arrow for f in m.features]
        self._schema = pa.schema(list(zip(self._outputs, self._types, strict=True)))
        self._predict = getattr(self.model, "predict", self.model)
        # Read no rows through the manifest: checks the store's identity and that every
        # pinned version can still be served, and loads the online indexes now, not on
        # the first request.
        self.store.get_online_features(
            {k: [] for k in self._keys}, manifest=m, request_data={f: [] for f in self._fields} or None
        )

    def features(self, model_input: pd.DataFrame | Mapping[str, Sequence[Any]]) -> pd.DataFrame:
        """The DataFrame ``predict`` hands the user's model for ``model_input``: the
        manifest's features in the training set's column order, with ``model_input``'s index."""
        keys, request, index = self._columns(model_input)
        values = self.store.get_online_features(keys, manifest=self.manifest, request_data=request).to_dict()
        # Through Arrow with the features' declared types, as the training set was: each
        # column gets the pandas dtype training_set.to_pandas() gives it (an int feature
        # with a null is float64, a missing float is NaN, not None in an object column).
        arrays = [pa.array(values[name], type=kind) for name, kind in zip(self._outputs, self._types, strict=True)]
        frame: pd.DataFrame = pa.RecordBatch.from_arrays(arrays, schema=self._schema).to_pandas(split_blocks=True)
        if index is not None:
            frame.index = index
        return frame

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        """The user's model's prediction for each row of ``model_input``, a DataFrame of entity
        keys and request data (other columns are ignored)."""
        return self._predict(self.features(model_input))

    def _columns(
        self, model_input: object
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]] | None, pd.Index | None]:
        """The entity rows and request data in ``model_input``, as lists; missing values
        (NaN, None, NaT) become None, as they become nulls in a training set built from a
        pandas DataFrame."""
        if isinstance(model_input, pd.DataFrame):
            columns: Mapping[str, Any] = model_input
            index = model_input.index
        elif isinstance(model_input, Mapping):
            columns, index = model_input, None
        else:
            raise InputError(
                f"the model's input must be a pandas DataFrame of {self._needed()}, "
                f"not {type(model_input).__name__}"
            )
        missing = [c for c in (*self._keys, *self._fields) if c not in columns]
        if missing:
            raise SchemaError(
                f"the model's input has no column {missing[0]!r} (missing: {', '.join(missing)}); pass a "
                f"DataFrame of {self._needed()}",
                column=missing[0],
            )
        keys = {k: _values(columns[k]) for k in self._keys}
        request = {f: _values(columns[f]) for f in self._fields} if self._fields else None
        return keys, request, index

    def _needed(self) -> str:
        needed = f"the entity keys ({', '.join(self._keys)})"
        if self._fields:
            needed += f" and request fields ({', '.join(self._fields)})"
        return needed


def _values(column: Any) -> list[Any]:
    """A column of the model's input as a list, its missing values (NaN, None, NaT) as None."""
    if not isinstance(column, pd.Series):
        return column.tolist() if hasattr(column, "tolist") else list(column)  # a NumPy array: Python scalars
    if column.dtype.kind in "mM":  # numpy's datetimes become ints in tolist(); pandas' are Timestamps
        return column.astype(object).where(column.notna(), None).tolist()  # type: ignore[no-any-return]
    array = column.to_numpy()
    values: list[Any] = array.tolist()
    if array.dtype.kind in "fcO":  # only floats and objects can hold a missing value
        missing = pd.isna(array)
        if missing.any():
            for i in missing.nonzero()[0].tolist():
                values[i] = None
    return values
