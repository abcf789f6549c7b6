"""Read planning: what a retrieval request needs, decided once, as named data.

:class:`Catalog` is a snapshot of the registered views (replaced whole when definitions
change, so readers never see half an update, and cached plans die with it). It turns a
feature list into an :class:`OnlinePlan` (online reads) or a :class:`HistoricalPlan`
(training sets). Both ask :func:`on_demand_plan` which stored inputs an on-demand view's
featurizers need: the one home of that rule. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import pyarrow as pa

from .errors import InputError, UnknownFeatureViewError
from .layout import ViewLayout
from .retrieval import resolve_features
from .types import arrow_type

if TYPE_CHECKING:
    from .definitions import Aggregation, OnDemandFeatureView
    from .featurizer import Featurizer
    from .registry import Binding

__all__ = [
    "Catalog", "FeatureGroup", "FeaturizerCall", "HistoricalPlan", "OnDemandPlan", "OnlinePlan", "RequestInput",
    "StoredInput", "ViewRead", "WindowInput", "WindowRead", "on_demand_plan",
]

#: Distinct feature lists whose online plan a catalog caches.
PLAN_CACHE_SIZE = 1024


@dataclass(frozen=True)
class FeatureGroup:
    """The features asked of one view, with the names they are returned under."""

    view: str
    features: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class FeaturizerCall:
    """One featurizer of an on-demand view, run once however many of its outputs are
    asked for: its input bindings in parameter order, and where each asked output goes
    (position among the features asked of the view, index of the featurizer's output)."""

    featurizer: Featurizer
    bindings: tuple[Binding, ...]
    places: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class OnDemandPlan:
    """What an on-demand view needs to compute some of its features."""

    view: str
    #: Features to read per source view, in first-use order: stored features and windowed
    #: aggregates alike (:meth:`Catalog.split` tells them apart).
    stored: dict[str, tuple[str, ...]]
    calls: tuple[FeaturizerCall, ...]


def on_demand_plan(
    odfv: OnDemandFeatureView, bindings: Mapping[str, Mapping[str, Binding]], features: Sequence[str]
) -> OnDemandPlan:
    """Which stored inputs (per source view) and which featurizer runs ``features`` of
    on-demand view ``odfv`` need; ``bindings``: its resolved inputs per feature. The one
    home of this rule: online reads and training sets both use it."""
    outputs = odfv.outputs
    stored: dict[str, list[str]] = {}
    calls: dict[int, tuple[Featurizer, tuple[Binding, ...], list[tuple[int, int]]]] = {}
    for position, feature in enumerate(features):
        fz, output = outputs[feature]
        if id(fz) in calls:  # another output of a featurizer already planned
            calls[id(fz)][2].append((position, output))
            continue
        bound = tuple(bindings[feature][param] for param, _ in fz.inputs)
        calls[id(fz)] = (fz, bound, [(position, output)])
        for kind, source, field in bound:
            if kind == "view" and field not in stored.setdefault(source, []):
                stored[source].append(field)
    return OnDemandPlan(
        odfv.name,
        {view: tuple(fields) for view, fields in stored.items()},
        tuple(FeaturizerCall(fz, bound, tuple(places)) for fz, bound, places in calls.values()),
    )


class ViewRead(NamedTuple):
    """One online index read of a stored view: ``features`` are read; the first
    ``len(outputs)`` are returned under ``outputs``, the rest feed featurizers only.
    (A NamedTuple: the per-request loop unpacks it.)"""

    view: str
    features: tuple[str, ...]
    outputs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredInput:
    """A featurizer argument read online: feature ``column`` of read number ``read``."""

    read: int
    column: int


@dataclass(frozen=True, slots=True)
class WindowInput:
    """A featurizer argument computed online: aggregate ``position`` of window read
    number ``window``."""

    window: int
    position: int


@dataclass(frozen=True, slots=True)
class RequestInput:
    """A featurizer argument taken from the request's ``request_data[field]``."""

    field: str


@dataclass(frozen=True, slots=True)
class FeaturizerRun:
    """A featurizer run per entity of an online read."""

    view: str
    featurizer: Featurizer
    inputs: tuple[StoredInput | WindowInput | RequestInput, ...]
    #: (output name, index of the featurizer's output)
    outputs: tuple[tuple[str, int], ...]


class WindowRead(NamedTuple):
    """The windowed aggregates asked of one view, computed at the read time from its
    recent events (:mod:`featurelite.window_buffer`): the first ``len(outputs)`` are
    returned under ``outputs``, the rest feed featurizers only."""

    view: str
    aggregations: tuple[Aggregation, ...]
    outputs: tuple[str, ...]


class OnlinePlan(NamedTuple):
    """How to serve a feature list online: one index read per stored view (which also
    fetches what on-demand views need from it), the windowed aggregates, then the
    featurizers. (A NamedTuple: each request unpacks it.)"""

    reads: tuple[ViewRead, ...]
    runs: tuple[FeaturizerRun, ...]
    #: Output names in request order when filling read by read, then run by run, is not
    #: already that order (else None).
    order: tuple[str, ...] | None
    #: Arrow type of every returned column (join keys and features).
    types: dict[str, pa.DataType]
    #: Join keys of the views read (the columns of a response to no entities).
    key_names: tuple[str, ...]
    windows: tuple[WindowRead, ...]


@dataclass(frozen=True)
class HistoricalPlan:
    """How to build a training set: the point-in-time joins, then the featurizers."""

    groups: tuple[FeatureGroup, ...]
    #: Output names in request order.
    order: tuple[str, ...]
    #: Stored features to join per view: those asked for, plus on-demand inputs.
    joins: dict[str, tuple[str, ...]]
    on_demand: dict[str, OnDemandPlan]
    #: Windowed aggregates to compute per view: those asked for, plus on-demand inputs.
    windows: dict[str, tuple[Aggregation, ...]]


class Catalog:
    """The registered views at one moment, and the plans made from them."""

    def __init__(
        self, layouts: Mapping[str, ViewLayout], odfvs: Mapping[str, OnDemandFeatureView],
        bindings: Mapping[str, Mapping[str, Mapping[str, Binding]]], broken: Mapping[str, Exception],
    ) -> None:
        self.layouts = dict(layouts)
        self.odfvs = dict(odfvs)
        self.bindings = dict(bindings)
        self.broken = dict(broken)
        self._online_plans: dict[tuple[tuple[str, ...], bool], OnlinePlan] = {}

    def layout(self, view: str) -> ViewLayout:
        """A stored view's layout; UnknownFeatureViewError names the registered ones."""
        layout = self.layouts.get(view)
        if layout is None:
            raise self.unknown(view)
        return layout

    def unknown(self, view: str) -> UnknownFeatureViewError:
        """The error for a feature view that is not registered."""
        return UnknownFeatureViewError(
            f"feature view {view!r} is not registered (registered: {', '.join(sorted(self.layouts)) or 'none'}); "
            "apply it first",
            name=view,
        )

    def schema_of(self, name: str) -> Mapping[str, str]:
        """Features and dtypes of a feature view or an on-demand feature view."""
        layout = self.layouts.get(name)
        if layout is not None:
            return layout.view.feature_schema
        odfv = self.odfvs.get(name)
        if odfv is not None:
            return odfv.schema
        if name in self.broken:
            raise self.broken[name]
        return self.layout(name).view.feature_schema  # raises UnknownFeatureViewError

    def verified_views(self) -> list[str]:
        """The views ``Store.verify`` checks by default, by name: on-demand views and feature
        views with write-time featurizers or windowed aggregates."""
        checked = (v for v, layout in self.layouts.items() if layout.view.featurizers or layout.view.aggregations)
        return sorted([*self.odfvs, *checked])

    def featurizer_sources(self, view: str) -> list[tuple[Featurizer, tuple[str, ...], dict[str, tuple[str, str]]]]:
        """Each featurizer of a view (on-demand or with write-time featurizers):
        (featurizer, its features, {input: (stored view, column)} for the inputs read from
        stored history). InputError for a view without featurizers."""
        odfv = self.odfvs.get(view)
        if odfv is not None:
            bindings = self.bindings[view]
            found = []
            for key, fz in odfv.featurizers.items():
                features = (key,) if isinstance(key, str) else key
                sources = {
                    p: (src, f) for p, (kind, src, f) in bindings[features[0]].items()
                    if kind == "view" and f in self.layouts[src].view.schema  # not a windowed aggregate
                }
                found.append((fz, features, sources))
            return found
        self.schema_of(view)  # raises for an unknown or broken view
        layout = self.layouts[view]
        if not layout.derived:
            raise InputError(f"feature view {view!r} has no featurizers to verify")
        # The view's own Featurizer objects (layout.derived lists them in the same order).
        return [
            (fz, names, {p: (view, column) for p, column in inputs.items()})
            for fz, (_, names, inputs) in zip(layout.view.featurizers.values(), layout.derived, strict=True)
        ]

    def _groups(self, features: Sequence[str], full_feature_names: bool) -> tuple[list[FeatureGroup], list[str]]:
        groups, order = resolve_features(features, full_feature_names, self.schema_of)
        return [FeatureGroup(view, tuple(feats), tuple(outs)) for view, feats, outs in groups], order

    def split(self, group: FeatureGroup) -> tuple[FeatureGroup, WindowRead | None]:
        """A stored view's group as (its stored features, its windowed aggregates or None)."""
        view = self.layouts[group.view].view
        by_name = {a.name: a for a in view.aggregations}
        stored = [(f, o) for f, o in zip(group.features, group.outputs, strict=True) if f not in by_name]
        windowed = [(by_name[f], o) for f, o in zip(group.features, group.outputs, strict=True) if f in by_name]
        window = None
        if windowed:
            window = WindowRead(group.view, tuple(a for a, _ in windowed), tuple(o for _, o in windowed))
        return FeatureGroup(group.view, tuple(f for f, _ in stored), tuple(o for _, o in stored)), window

    def on_demand(self, group: FeatureGroup) -> OnDemandPlan:
        return on_demand_plan(self.odfvs[group.view], self.bindings[group.view], group.features)

    def historical_plan(self, features: Sequence[str], full_feature_names: bool) -> HistoricalPlan:
        """What a training set of ``features`` joins and computes."""
        groups, order = self._groups(features, full_feature_names)
        joins: dict[str, list[str]] = {}
        on_demand: dict[str, OnDemandPlan] = {}
        windows: dict[str, list[Aggregation]] = {}
        for group in groups:
            if group.view in self.odfvs:
                on_demand[group.view] = plan = self.on_demand(group)
                needed = [self.split(FeatureGroup(view, fields, fields)) for view, fields in plan.stored.items()]
            else:
                needed = [self.split(group)]
            for stored, window in needed:
                if stored.features:
                    joined = joins.setdefault(stored.view, [])
                    joined.extend(f for f in stored.features if f not in joined)
                if window is not None:
                    computed = windows.setdefault(window.view, [])
                    computed.extend(a for a in window.aggregations if a not in computed)
        return HistoricalPlan(
            tuple(groups), tuple(order), {v: tuple(f) for v, f in joins.items()}, on_demand,
            {v: tuple(a) for v, a in windows.items()},
        )

    def online_plan(self, features: Sequence[str] | str, full_feature_names: bool) -> OnlinePlan:
        """How to serve ``features`` online, cached per distinct list."""
        if isinstance(features, str):
            features = [features]
        key: tuple[tuple[str, ...], bool] | None
        try:
            key = (tuple(features), full_feature_names)
            plan = self._online_plans.get(key)
        except TypeError:  # not a list of strings: resolve_features says what is wrong
            key, plan = None, None
        if plan is None:
            plan = self._plan_online(features, full_feature_names)
            if key is not None:
                if len(self._online_plans) >= PLAN_CACHE_SIZE:
                    self._online_plans.clear()  # callers with endless distinct lists: start over
                self._online_plans[key] = plan
        return plan

    def _plan_online(self, features: Sequence[str], full_feature_names: bool) -> OnlinePlan:
        groups, order = self._groups(features, full_feature_names)
        reads: list[ViewRead] = []
        windows: list[WindowRead] = []
        for group in groups:
            if group.view not in self.odfvs:
                stored, window = self.split(group)
                if stored.features or window is None:
                    reads.append(ViewRead(stored.view, stored.features, stored.outputs))
                if window is not None:
                    windows.append(window)
        runs: list[FeaturizerRun] = []
        for group in groups:
            if group.view in self.odfvs:
                runs.extend(self._online_runs(group, reads, windows))
        types = {
            out: arrow_type(self.schema_of(g.view)[f])
            for g in groups
            for f, out in zip(g.features, g.outputs, strict=True)
        }
        key_types: dict[str, pa.DataType] = {}
        for view in [*(read.view for read in reads), *(window.view for window in windows)]:
            key_types.update(self.layout(view).keys_arrow_types())
        # Values are filled read by read, window by window, then run by run: only when that
        # is not already the order asked does the response need slots laid out in advance.
        natural = [o for read in reads for o in read.outputs] + [o for w in windows for o in w.outputs]
        natural += [out for run in runs for out, _ in run.outputs]
        return OnlinePlan(
            tuple(reads), tuple(runs), tuple(order) if natural != order else None, {**key_types, **types},
            tuple(key_types), tuple(windows),
        )

    def _online_runs(
        self, group: FeatureGroup, reads: list[ViewRead], windows: list[WindowRead]
    ) -> list[FeaturizerRun]:
        """The featurizer runs of an on-demand group, widening ``reads`` and ``windows`` (in
        place) by the stored features and windowed aggregates they need."""
        plan = self.on_demand(group)
        for view, fields in plan.stored.items():
            stored, window = self.split(FeatureGroup(view, fields, fields))
            if stored.features:
                at = _find(reads, view, ViewRead(view, (), ()))  # appended if read only for featurizers
                read = reads[at]
                extra = tuple(f for f in stored.features if f not in read.features)
                reads[at] = ViewRead(view, read.features + extra, read.outputs)
            if window is not None:
                at = _find(windows, view, WindowRead(view, (), ()))
                have = windows[at]
                more = tuple(a for a in window.aggregations if a not in have.aggregations)
                windows[at] = WindowRead(view, have.aggregations + more, have.outputs)
        runs = []
        for call in plan.calls:
            inputs: list[StoredInput | WindowInput | RequestInput] = []
            for kind, source, field in call.bindings:
                if kind != "view":
                    inputs.append(RequestInput(field))
                elif field in self.layouts[source].view.schema:
                    at = next(i for i, read in enumerate(reads) if read.view == source)
                    inputs.append(StoredInput(at, reads[at].features.index(field)))
                else:  # a windowed aggregate
                    at = next(i for i, w in enumerate(windows) if w.view == source)
                    names = [a.name for a in windows[at].aggregations]
                    inputs.append(WindowInput(at, names.index(field)))
            outputs = tuple((group.outputs[position], output) for position, output in call.places)
            runs.append(FeaturizerRun(group.view, call.featurizer, tuple(inputs), outputs))
        return runs



_Read = TypeVar("_Read", ViewRead, WindowRead)


def _find(found: list[_Read], view: str, empty: _Read) -> int:
    """Position of ``view``'s read in ``found``; appends ``empty`` when there is none."""
    at = next((i for i, read in enumerate(found) if read.view == view), None)
    if at is None:
        found.append(empty)
        at = len(found) - 1
    return at
