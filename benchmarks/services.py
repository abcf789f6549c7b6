"""Feature services and models that carry their features (issue 13): what reading through
a service, or through a training set's manifest, adds to the same online read by plain
references, and what the MLflow model's one-row ``predict`` costs against the model's own
``predict`` plus the online read it needs.

One store of its own (:func:`_tables`, one row per entity of ``scale.entities`` users):

- ``user_stats``: ten float64 features (``f0``..``f9``), as in the main suite;
- ``profile``: ``tenure`` (int64) and ``score`` (float64);
- ``payments``: ``amount`` events (as many as users, over the last day of the data) with one
  windowed aggregation, ``amount_sum_1d``;
- ``shares``: an on-demand view, ``basket_share(f0, basket)`` over ``user_stats`` and the
  request field ``basket``;
- three feature services, one per online workload (:data:`VARIANTS`): five stored features
  of two views; the same plus the on-demand feature; the same plus the windowed aggregate.

Each online workload reads one entity through ``service=``, through ``manifest=`` (the
manifest of a training set built through that service) and by the same plain references,
alternating call by call (the order rotating), plus the plain-reference read a second time
as a control: the difference of the two identical reads' p50s is the noise floor of a
difference of p50s in that run.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import featurelite as fl

from . import data
from .config import ENTITY, FEATURES, KEY, TS, VIEW
from .featurizers import basket_share
from .measure import alternate_latency, stopwatch
from .model import Target, metric_row, skipped_workload, workload
from .workloads import Context, _check, _remove_db, _timer_floor

__all__ = ["MLFLOW_WORKLOAD", "NAMES", "VARIANTS", "LinearScorer", "run"]

PROFILE = "profile"
EVENTS = "payments"
ODFV = "shares"
REQUEST = "purchase"
REQUEST_FIELD = "basket"
STORED_REFS: tuple[str, ...] = (f"{VIEW}:f0", f"{VIEW}:f1", f"{VIEW}:f2", f"{PROFILE}:tenure", f"{PROFILE}:score")
ODFV_REF = f"{ODFV}:basket_share"
WINDOW_REF = f"{EVENTS}:amount_sum_1d"
#: Entity rows of the training sets the manifests come from (all at NOW).
TRAINING_ROWS = 10_000
#: Keys checked (service, manifest and plain reads equal, and equal to the training set).
CHECK_ROWS = 100
#: Issue 13's targets.
SERVICE_OVERHEAD_US = 1.0
PREDICT_RATIO = 2.0
#: The random stream of this module's data (``default_rng([seed, _STREAM, part])``).
_STREAM = 12
_DAY_US = 24 * 3600 * 1_000_000
#: The data's end: the history spans [data.START, END); every read and training row is at NOW.
END_US = data.START_US + data.SPAN_US
NOW = datetime(1970, 1, 1) + timedelta(microseconds=END_US + 1)


@dataclass(frozen=True)
class Variant:
    """One online workload: a service and the same features as plain references."""

    key: str
    service: str
    refs: tuple[str, ...]
    title: str
    what: str
    request: bool = False  #: the features need request data (``basket``)


VARIANTS: tuple[Variant, ...] = (
    Variant(
        "services_online", "svc", STORED_REFS,
        "Feature service: online read, 1 entity",
        f"5 stored features of 2 views ({', '.join(STORED_REFS)})",
    ),
    Variant(
        "services_online_ondemand", "svc_ondemand", (*STORED_REFS, ODFV_REF),
        "Feature service: online read with an on-demand feature and request data, 1 entity",
        f"the 5 stored features and the on-demand feature `{ODFV_REF}` (featurizer `basket / (abs(f0) + 1.0)` over "
        f"`f0` and the request field `{REQUEST_FIELD}`, passed as `request_data`)",
        request=True,
    ),
    Variant(
        "services_online_window", "svc_window", (*STORED_REFS, WINDOW_REF),
        "Feature service: online read with a windowed aggregate, 1 entity",
        f"the 5 stored features and the windowed aggregate `{WINDOW_REF}` (sum over the day before the read, from "
        "the view's in-memory event buffer)",
    ),
)
MLFLOW_WORKLOAD = "services_mlflow_predict"
#: The workloads of this module, in the order the page shows them.
NAMES = [*(v.key for v in VARIANTS), MLFLOW_WORKLOAD]
#: The service the MLflow model is trained on (the issue's example: entity keys + request data).
MLFLOW_VARIANT = VARIANTS[1]


def _rng(seed: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, _STREAM, part])


def _definitions() -> list[Any]:
    user = fl.Entity(ENTITY, join_keys=[KEY])
    stats = fl.FeatureView(VIEW, entities=[user], timestamp_field=TS, schema={f: "float64" for f in FEATURES})
    profile = fl.FeatureView(
        PROFILE, entities=[user], timestamp_field=TS, schema={"tenure": "int64", "score": "float64"}
    )
    payments = fl.FeatureView(
        EVENTS, entities=[user], timestamp_field=TS, schema={"amount": "float64"},
        aggregations=[fl.Aggregation("amount", "sum", "1d")],
    )
    request = fl.RequestSource(REQUEST, {REQUEST_FIELD: "float64"})
    shares = fl.OnDemandFeatureView(ODFV, sources=[stats, request], featurizers={"basket_share": basket_share})
    services = [fl.FeatureService(v.service, v.refs) for v in VARIANTS]
    return [user, stats, profile, payments, shares, *services]


def _tables(entities: int, seed: int) -> dict[str, pa.Table]:
    """One row per user for ``user_stats`` and ``profile`` at random times of the history's
    span; as many ``payments`` events as users, random users, over the span's last day."""
    rng = _rng(seed, 0)
    n = entities
    keys = pa.array(np.arange(n, dtype=np.int64))

    def times(count: int, low: int, high: int) -> pa.Array:
        return pa.array(rng.integers(low, high, count, dtype=np.int64), pa.timestamp("us"))

    stats = {KEY: keys, **{f: pa.array(rng.standard_normal(n)) for f in FEATURES}, TS: times(n, data.START_US, END_US)}
    profile = {
        KEY: keys,
        "tenure": pa.array(rng.integers(0, 3650, n, dtype=np.int64)),
        "score": pa.array(rng.standard_normal(n)),
        TS: times(n, data.START_US, END_US),
    }
    events = {
        KEY: pa.array(rng.integers(0, n, n, dtype=np.int64)),
        "amount": pa.array(rng.standard_normal(n)),
        TS: times(n, END_US - _DAY_US, END_US),
    }
    return {VIEW: pa.table(stats), PROFILE: pa.table(profile), EVENTS: pa.table(events)}


def _spine(entities: int, seed: int, rows: int) -> pa.Table:
    """Entity rows of the training sets: random users, all at NOW, with a basket each."""
    rng = _rng(seed, 1)
    return pa.table(
        {
            KEY: pa.array(rng.integers(0, entities, rows, dtype=np.int64)),
            "event_timestamp": pa.array([NOW] * rows, pa.timestamp("us")),
            REQUEST_FIELD: pa.array(rng.uniform(1.0, 100.0, rows)),
        }
    )


@dataclass(frozen=True)
class Requests:
    """One-entity requests: entity rows and request data, one per timed iteration."""

    rows: list[list[dict[str, int]]]
    baskets: list[float]

    @classmethod
    def draw(cls, entities: int, seed: int, part: int, count: int) -> Requests:
        rng = _rng(seed, part)
        keys: list[int] = rng.integers(0, entities, count, dtype=np.int64).tolist()
        baskets: list[float] = rng.uniform(1.0, 100.0, count).tolist()
        return cls([[{KEY: k}] for k in keys], baskets)

    def request_data(self, i: int, needed: bool) -> dict[str, list[float]] | None:
        return {REQUEST_FIELD: [self.baskets[i]]} if needed else None


def _build(path: Path, entities: int, seed: int) -> dict[str, int]:
    _remove_db(path)
    tables = _tables(entities, seed)
    with fl.open(path) as store:
        store.apply(_definitions())
        for view, table in tables.items():
            store.ingest(view, table)
    return {view: table.num_rows for view, table in tables.items()}


# -- online reads: service, manifest and plain references ---------------------------------


def _check_variant(store: fl.Store, variant: Variant, manifest: fl.Manifest, train: pa.Table) -> None:
    """The three reads return the same values and statuses, equal to the training set's
    (built at the same time, through the service)."""
    sample = train.slice(0, CHECK_ROWS)
    rows = [{KEY: k} for k in sample.column(KEY).to_pylist()]
    request = {REQUEST_FIELD: sample.column(REQUEST_FIELD).to_pylist()} if variant.request else None
    get = store.get_online_features
    service = get(rows, service=variant.service, request_data=request, now=NOW)
    refs = get(rows, list(variant.refs), request_data=request, now=NOW)
    pinned = get(rows, manifest=manifest, request_data=request, now=NOW)
    name = variant.key
    _check(service.to_dict() == refs.to_dict() == pinned.to_dict(),
           f"{name}: the service, manifest and plain-reference reads return different values")
    _check(service.statuses == refs.statuses == pinned.statuses,
           f"{name}: the service, manifest and plain-reference reads return different statuses")
    values = service.to_dict()
    _check(list(manifest.outputs) == [c for c in values if c != KEY], f"{name}: the read's columns are not the set's")
    for output in manifest.outputs:
        _check(values[output] == sample.column(output).to_pylist(),
               f"{name}: the online {output} differs from the training set's at the same time")
        _check(None not in values[output], f"{name}: {output} is null for a known entity")


def _online(ctx: Context, store: fl.Store, variant: Variant, manifest: fl.Manifest) -> dict[str, Any]:
    n = ctx.scale.latency_iterations
    req = Requests.draw(ctx.scale.entities, ctx.seed, 2, n)
    get, refs, service, needed = store.get_online_features, list(variant.refs), variant.service, variant.request
    shift = n // 4  # each side reads its own key (a key read just before by another side would be in cache)

    def at(k: int) -> Callable[[int], int]:
        return lambda i: (i + k * shift) % n

    s, r, m, c = at(0), at(1), at(2), at(3)
    stats = alternate_latency(
        {
            "featurelite": lambda i: get(req.rows[s(i)], service=service, request_data=req.request_data(s(i), needed),
                                         now=NOW),
            "limit": lambda i: get(req.rows[r(i)], refs, request_data=req.request_data(r(i), needed), now=NOW),
            "manifest": lambda i: get(req.rows[m(i)], manifest=manifest, request_data=req.request_data(m(i), needed),
                                      now=NOW),
            "control": lambda i: get(req.rows[c(i)], refs, request_data=req.request_data(c(i), needed), now=NOW),
            "timer": lambda i: None,
        },
        n,
        ctx.scale.warmup_iterations,
        rotate=True,
    )
    svc, plain, pinned, control = stats["featurelite"], stats["limit"], stats["manifest"], stats["control"]
    rows = [
        metric_row("p50", "us", svc["p50_us"], plain["p50_us"]),
        metric_row("p99", "us", svc["p99_us"], plain["p99_us"]),
        metric_row("mean", "us", svc["mean_us"], plain["mean_us"]),
        metric_row("p50 difference (service − plain references)", "us", svc["p50_us"] - plain["p50_us"], None,
                   Target("featurelite", "<=", SERVICE_OVERHEAD_US)),
        metric_row("p50, `manifest=m` (in the featurelite column)", "us", pinned["p50_us"], plain["p50_us"]),
        metric_row("p99, `manifest=m`", "us", pinned["p99_us"], plain["p99_us"]),
        metric_row("p50 difference (`manifest=m` − plain references)", "us", pinned["p50_us"] - plain["p50_us"], None),
        metric_row("p50 difference (plain references − the same read again: the noise floor)", "us",
                   control["p50_us"] - plain["p50_us"], None),
    ]
    return workload(
        variant.title,
        f"`store.get_online_features([{{'{KEY}': k}}], service='{service}'"
        + (f", request_data={{'{REQUEST_FIELD}': [x]}}" if needed else "")
        + f", now=...)` in-process, random keys, {n:,} timed calls: the service reads {variant.what}. Alternating "
        "call by call (the order rotating each call) with the same read by plain references, the read with "
        "`manifest=m` (the manifest of a training set of "
        f"{TRAINING_ROWS:,} rows built through the service: the same features at the versions it pinned) and the "
        "plain read again (a control: the difference of the two identical reads' p50s is the noise of a "
        "difference of p50s in this run); each side reads its own key. The target (issue 13) is on the difference "
        "of the p50s, service − plain references. Checked first: on "
        f"{CHECK_ROWS} keys the three reads return the same values and statuses, equal to the training set's. "
        f"`now` is a microsecond after the data's last event ({NOW.isoformat()}), on every side."
        + _timer_floor(stats),
        f"the same call by plain references, `store.get_online_features(rows, {refs})`, same store",
        rows,
        stats,
    )


# -- the MLflow model ---------------------------------------------------------------------


class LinearScorer:
    """A plain Python model (no scikit-learn): a weighted sum of the feature columns plus a
    bias, over a pandas DataFrame of the features in the training set's column order."""

    def __init__(self, columns: Sequence[str], weights: np.ndarray, bias: float) -> None:
        self.columns = list(columns)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)

    def predict(self, features: Any) -> np.ndarray:
        matrix = features.to_numpy(dtype=np.float64)
        out: np.ndarray = matrix @ self.weights + self.bias
        return out


def _mlflow_unavailable() -> str | None:
    """Why the MLflow workload cannot run here, or None."""
    if importlib.util.find_spec("mlflow") is None:
        return "mlflow is not installed (`pip install -e '.[mlflow]'` installs it)"
    if importlib.util.find_spec("featurelite.mlflow") is None:
        return "this featurelite has no `featurelite.mlflow` module"
    return None


def _predictions(values: Any) -> list[float]:
    return [float(x) for x in np.asarray(values, dtype=np.float64).ravel()]


_MLFLOW_TITLE = "Feature service: MLflow model, predict on one row"
_MLFLOW_LIMIT = (
    "the model's own `predict` on a one-row feature DataFrame (built beforehand from the same read) plus the online "
    "read it needs, `store.get_online_features([{...}], service=..., request_data=...)`, timed as one call"
)


def _mlflow(ctx: Context, store_path: Path, train: pa.Table) -> dict[str, Any]:
    """Issue 13's second target: ``loaded.predict`` on one row within 2x of the model's own
    predict plus the online read."""
    reason = _mlflow_unavailable()
    measures = (
        "`mlflow.pyfunc.load_model(path).predict(pd.DataFrame({'" + KEY + "': [k], '" + REQUEST_FIELD + "': [x]}))`"
        " of a model saved by `featurelite.mlflow.save_model(model, path, training_set=train, store=...)`: the "
        "model looks up its features itself (the manifest's features at its pinned versions)"
    )
    if reason is not None:
        return skipped_workload(_MLFLOW_TITLE, measures, _MLFLOW_LIMIT, reason,
                                [f"p50: featurelite / limit <= {PREDICT_RATIO:g}x"])
    # Imported by name: the optional extra may be missing where mypy runs (the lint extra
    # does not bring mlflow), and this code runs only where it is installed. featurelite.mlflow
    # first: it imports mlflow.pyfunc quieting the one warning MLflow raises about its own
    # type hints (an error under the quick test's `-W error`).
    flm = importlib.import_module("featurelite.mlflow")
    pyfunc = importlib.import_module("mlflow.pyfunc")
    import pandas as pd

    manifest = fl.Manifest.from_table(train)
    outputs = list(manifest.outputs)
    rng = _rng(ctx.seed, 3)
    model = LinearScorer(outputs, rng.standard_normal(len(outputs)), float(rng.standard_normal()))
    path = ctx.work / "services-model"
    shutil.rmtree(path, ignore_errors=True)
    watch = stopwatch()
    flm.save_model(model, str(path), training_set=train, store=str(store_path))
    save_s = watch()
    watch = stopwatch()
    loaded = pyfunc.load_model(str(path))  # opens the store read-only, checks the manifest, loads the indexes
    load_s = watch()
    # MLflow's own share: a pyfunc model whose predict does nothing, called the same way.
    pyfunc.save_model(str(ctx.work / "services-noop-model"), python_model=_noop_model(pyfunc),
                      pip_requirements=["mlflow-skinny"])
    noop = pyfunc.load_model(str(ctx.work / "services-noop-model"))
    inner = loaded.unwrap_python_model()
    # The limit reads through the Store the model opened (one Store per file and process):
    # both sides read the same in-memory index.
    store = inner.store
    _check(isinstance(store, fl.Store) and os.path.realpath(store.path) == os.path.realpath(store_path),
           f"{MLFLOW_WORKLOAD}: the loaded model reads another store than {store_path}")
    n = ctx.scale.predict_iterations
    req = Requests.draw(ctx.scale.entities, ctx.seed, 4, n)
    inputs = [pd.DataFrame({KEY: [row[0][KEY]], REQUEST_FIELD: [b]}) for row, b in zip(req.rows, req.baskets,
                                                                                        strict=True)]
    get, service = store.get_online_features, MLFLOW_VARIANT.service

    def read(i: int) -> fl.OnlineResponse:
        return get(req.rows[i], service=service, request_data={REQUEST_FIELD: [req.baskets[i]]})

    def frame(response: fl.OnlineResponse) -> Any:
        values = response.to_dict()
        return pd.DataFrame({o: values[o] for o in outputs})

    features = [frame(read(i)) for i in range(n)]
    for i in range(min(CHECK_ROWS, n)):
        got, expected = _predictions(loaded.predict(inputs[i])), _predictions(model.predict(features[i]))
        _check(got == expected, f"{MLFLOW_WORKLOAD}: the MLflow model predicted {got}, the model on the online "
               f"features {expected} (key {req.rows[i][0][KEY]})")
    shift = n // 8

    def at(k: int) -> Callable[[int], int]:
        return lambda i: (i + k * shift) % n

    p, lim, h, r, o, f, z = at(0), at(1), at(2), at(3), at(4), at(5), at(6)

    def by_hand(i: int) -> object:
        return model.predict(frame(read(i)))

    def read_then_predict(i: int) -> object:
        read(i)
        return model.predict(features[i])

    stats = alternate_latency(
        {
            "featurelite": lambda i: loaded.predict(inputs[p(i)]),
            "limit": lambda i: read_then_predict(lim(i)),
            "by_hand": lambda i: by_hand(h(i)),
            "read": lambda i: read(r(i)),
            "model": lambda i: model.predict(features[o(i)]),
            "features": lambda i: inner.features(inputs[f(i)]),
            "mlflow_noop": lambda i: noop.predict(inputs[z(i)]),
            "timer": lambda i: None,
        },
        n,
        min(ctx.scale.warmup_iterations, n),
        rotate=True,
    )
    mine, limit, hand = stats["featurelite"], stats["limit"], stats["by_hand"]
    rows = [
        metric_row("p50", "us", mine["p50_us"], limit["p50_us"], Target("ratio", "<=", PREDICT_RATIO)),
        metric_row("p99", "us", mine["p99_us"], limit["p99_us"]),
        metric_row("mean", "us", mine["mean_us"], limit["mean_us"]),
        metric_row("p50 against the read + a feature DataFrame built from it + predict (by hand)", "us",
                   mine["p50_us"], hand["p50_us"]),
        metric_row("p50 of the online read alone", "us", stats["read"]["p50_us"], None),
        metric_row("p50 of the model's predict alone", "us", stats["model"]["p50_us"], None),
        metric_row("p50 of `FeatureliteModel.features(df)` alone (input columns → read → feature DataFrame)", "us",
                   stats["features"]["p50_us"], None),
        metric_row("p50 of MLflow's `predict` around a pyfunc model that does nothing", "us",
                   stats["mlflow_noop"]["p50_us"], None),
        metric_row("save (`featurelite.mlflow.save_model`)", "s", save_s, None),
        metric_row("load (`mlflow.pyfunc.load_model`, opens the store)", "s", load_s, None),
    ]
    versions = {"mlflow": str(importlib.import_module("mlflow").__version__), "pandas": pd.__version__}
    return workload(
        _MLFLOW_TITLE,
        measures + f", on the service `{service}` ({MLFLOW_VARIANT.what}); the model is a plain Python class "
        f"(`benchmarks.services.LinearScorer`: `DataFrame.to_numpy() @ weights + bias`). {n:,} timed calls with "
        "random keys, alternating call by call (the order rotating) with the limit and, for context, the same "
        "work by hand (the read, a one-row feature DataFrame built from it, predict), the read alone, the "
        "model's predict alone, featurelite's part of the loaded model's predict alone "
        "(`loaded.unwrap_python_model().features(df)`: the input's keys and request fields, the read through the "
        "manifest, the feature DataFrame) and MLflow's part (the loaded pyfunc `predict` of a model that returns "
        "at once, on the same input); each side its own key. The limit and the read use the Store the loaded model "
        "opened. Checked first: on "
        f"{min(CHECK_ROWS, n)} rows the loaded model's predictions equal the model's own on the online features. "
        f"Versions: mlflow {versions['mlflow']}, pandas {versions['pandas']}." + _timer_floor(stats),
        _MLFLOW_LIMIT,
        rows,
        {**stats, "save_s": save_s, "load_s": load_s, "versions": versions},
    )


def _noop_model(pyfunc: Any) -> Any:
    """A pyfunc model whose predict returns at once: what MLflow's own ``predict`` costs.
    Its ``predict`` is typed as featurelite's model's is (MLflow reads the hints)."""
    import pandas as pd

    def predict(self: Any, context: Any, model_input: Any, params: Any = None) -> Any:
        return np.zeros(len(model_input))

    # The hints as objects, not the strings this module's `from __future__ import annotations`
    # makes them: MLflow resolves them when the class is created, and cannot see `pd` here.
    predict.__annotations__ = {
        "context": Any, "model_input": pd.DataFrame, "params": dict[str, Any] | None, "return": Any,
    }
    return type("NoOp", (pyfunc.PythonModel,), {"predict": predict})()


# -- the group ----------------------------------------------------------------------------


def run(ctx: Context) -> dict[str, dict[str, Any]]:
    """All service workloads, in their own store."""
    path = ctx.work / "services.duckdb"
    watch = stopwatch()
    counts = _build(path, ctx.scale.entities, ctx.seed)
    ctx.log(f"services: store built in {watch():.1f} s ({counts})")
    spine = _spine(ctx.scale.entities, ctx.seed, min(ctx.scale.spine_rows, TRAINING_ROWS))
    results: dict[str, dict[str, Any]] = {}
    with fl.open(path, read_only=True) as store:
        watch = stopwatch()
        trains: Mapping[str, pa.Table] = {
            v.key: store.get_historical_features(spine, service=v.service) for v in VARIANTS
        }
        ctx.log(f"services: {len(VARIANTS)} training sets of {spine.num_rows:,} rows in {watch():.1f} s")
        manifests = {key: fl.Manifest.from_table(t) for key, t in trains.items()}
        for variant in VARIANTS:
            _check(manifests[variant.key].service == variant.service,
                   f"{variant.key}: the training set's manifest names service {manifests[variant.key].service!r}")
            watch = stopwatch()
            _check_variant(store, variant, manifests[variant.key], trains[variant.key])
            ctx.log(f"services: {variant.key} checked in {watch():.1f} s (first reads build the indexes)")
            watch = stopwatch()
            results[variant.key] = _online(ctx, store, variant, manifests[variant.key])
            ctx.log(f"services: {variant.key} done in {watch():.1f} s")
    watch = stopwatch()
    results[MLFLOW_WORKLOAD] = _mlflow(ctx, path, trains[MLFLOW_VARIANT.key])
    ctx.log(f"services: {MLFLOW_WORKLOAD} done in {watch():.1f} s")
    _remove_db(path)
    return results
