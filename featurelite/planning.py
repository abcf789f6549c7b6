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
from typing import TYPE_CHECKING, NamedTuple, Protocol, TypeVar

import pyarrow as pa

from .compatibility import storage_difference
from .errors import (
    DefinitionError,
    InputError,
    PinnedVersionError,
    UnknownFeatureServiceError,
    UnknownFeatureViewError,
    UnknownVersionError,
)
from .layout import ViewLayout
from .references import FeatureRef, parse_references
from .retrieval import resolve_features
from .types import arrow_type

if TYPE_CHECKING:
    from .definitions import Aggregation, FeatureService, FeatureView, OnDemandFeatureView
    from .featurizer import Featurizer
    from .registry import Binding

__all__ = [
    "Catalog", "FeatureGroup", "FeaturizerCall", "HistoricalPlan", "OnDemandPlan", "OnlinePlan", "RequestInput",
    "StoredInput", "Versions", "ViewRead", "WindowInput", "WindowRead", "on_demand_plan",
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
    ``layout`` is the view as this plan reads it (a pinned version's ttl, say), and
    ``ttl_us`` its ttl in microseconds (None: forever). (A NamedTuple: the per-request
    loop unpacks it.)"""

    view: str
    features: tuple[str, ...]
    outputs: tuple[str, ...]
    ttl_us: int | None
    layout: ViewLayout


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
    #: The version of every definition the plan reads (on-demand views' sources too).
    pins: Mapping[str, str]
    #: Each returned feature's (view, feature) by output name, in request order.
    sources: Mapping[str, tuple[str, str]]


@dataclass(frozen=True)
class HistoricalPlan:
    """How to build a training set: the point-in-time joins, then the featurizers, in
    ``catalog`` (the definitions at the versions the request pins)."""

    groups: tuple[FeatureGroup, ...]
    #: Output names in request order.
    order: tuple[str, ...]
    #: Stored features to join per view: those asked for, plus on-demand inputs.
    joins: dict[str, tuple[str, ...]]
    on_demand: dict[str, OnDemandPlan]
    #: Windowed aggregates to compute per view: those asked for, plus on-demand inputs.
    windows: dict[str, tuple[Aggregation, ...]]
    #: The version of every definition the plan reads (on-demand views' sources too).
    pins: Mapping[str, str]
    #: The references as asked, and the service asked for (if any).
    references: tuple[str, ...]
    service: FeatureService | None
    catalog: Catalog


class Versions(Protocol):
    """Every stored version of the definitions (the registry): what pinned reads need."""

    def versions_of(self, name: str) -> list[tuple[str, str]]:
        """(kind, version) of every version of ``name`` ever applied, oldest first."""
        ...

    def view_at(self, name: str, version: str) -> FeatureView: ...

    def odfv_at(self, name: str, version: str) -> OnDemandFeatureView: ...

    def bind(
        self, odfv: OnDemandFeatureView, views: Mapping[str, FeatureView]
    ) -> Mapping[str, Mapping[str, Binding]]: ...


#: Plan-cache keys of service reads start with this (no feature reference can).
_SERVICE = "\0service"


class Catalog:
    """The registered views at one moment, and the plans made from them.

    A read that pins versions other than those in force (``view@version:feature``, a feature
    service, a manifest) is planned in a *pinned* catalog (:meth:`pinned`): the same one
    with those definitions swapped for their pinned versions, reading the same tables.
    """

    def __init__(
        self, layouts: Mapping[str, ViewLayout], odfvs: Mapping[str, OnDemandFeatureView],
        bindings: Mapping[str, Mapping[str, Mapping[str, Binding]]], broken: Mapping[str, Exception],
        services: Mapping[str, FeatureService] | None = None, versions: Versions | None = None,
        *, tables: Mapping[str, ViewLayout] | None = None,
    ) -> None:
        self.layouts = dict(layouts)
        self.odfvs = dict(odfvs)
        self.bindings = dict(bindings)
        self.broken = dict(broken)
        self.services = dict(services or {})
        self.versions = versions
        #: Views whose definition here is a pinned version: the layout in force, which
        #: wrote their tables (empty in the catalog of the versions in force).
        self.tables = dict(tables or {})
        self._online_plans: dict[tuple[tuple[str, ...], bool], OnlinePlan] = {}
        self._pinned: dict[frozenset[tuple[str, str]], Catalog] = {}

    def with_services(self, services: Mapping[str, FeatureService]) -> Catalog:
        """The same definitions with other feature services."""
        return Catalog(
            self.layouts, self.odfvs, self.bindings, self.broken, services, self.versions, tables=self.tables
        )

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

    # -- versions and pins -------------------------------------------------------------

    def version_of(self, name: str) -> str | None:
        """The version of feature view or on-demand view ``name`` in this catalog."""
        layout = self.layouts.get(name)
        if layout is not None:
            return layout.view.version
        odfv = self.odfvs.get(name)
        return None if odfv is None else odfv.version

    def _stored_versions(self, name: str) -> list[tuple[str, str]]:
        found = [] if self.versions is None else [
            (kind, v) for kind, v in self.versions.versions_of(name) if kind != "feature_service"
        ]
        current = self.version_of(name)
        if current is not None and all(v != current for _, v in found):
            kind = "feature_view" if name in self.layouts else "on_demand_feature_view"
            found.append((kind, current))  # applied with this very request (apply pins it)
        return found

    def resolve_version(self, name: str, prefix: str) -> str:
        """The full version of ``name`` that ``prefix`` starts, among every version ever
        applied; UnknownVersionError lists the candidates when none or several match."""
        known = [v for _, v in self._stored_versions(name)]
        if not known:
            self.schema_of(name)  # raises: not a view at all
        matches = [v for v in known if v.startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownVersionError(
                f"{name!r} has no version starting with {prefix!r} (versions, oldest first: {', '.join(known)}); "
                f"see `featurelite list-versions STORE {name}`",
                name=name, candidates=known,
            )
        raise UnknownVersionError(
            f"version prefix {prefix!r} of {name!r} is ambiguous: it starts {', '.join(matches)}; give more digits",
            name=name, candidates=matches,
        )

    def _kind_at(self, name: str, version: str) -> str:
        for kind, v in self._stored_versions(name):
            if v == version:
                return kind
        raise UnknownVersionError(
            f"{name!r} has no version {version!r} in this store (versions: "
            f"{', '.join(v for _, v in self._stored_versions(name)) or 'none'}); was the manifest or service "
            "made with another store?",
            name=name, candidates=[v for _, v in self._stored_versions(name)],
        )

    def pins_for(self, refs: Sequence[FeatureRef]) -> dict[str, str]:
        """The version of every definition ``refs`` read: the one a reference names, else
        the one in force; an on-demand view's source views at the version in force unless
        a reference pins them too. Two versions of one definition in one request is an
        InputError."""
        pins: dict[str, str] = {}
        for ref in refs:
            if ref.version is None:
                version = self.version_of(ref.view)
                if version is None:
                    self.schema_of(ref.view)  # raises: unknown, or an on-demand view that cannot be built
                    raise self.unknown(ref.view)  # pragma: no cover (schema_of raised)
            else:
                version = self.resolve_version(ref.view, ref.version)
            other = pins.setdefault(ref.view, version)
            if other != version:
                raise InputError(
                    f"features name two versions of {ref.view!r} ({other} and {version}); a request reads one "
                    "version of each definition: pin one of them in every reference",
                    name=ref.view,
                )
        for name, version in list(pins.items()):
            if self._kind_at(name, version) != "on_demand_feature_view":
                continue
            odfv = self.odfvs[name] if self.version_of(name) == version else self._versions().odfv_at(name, version)
            for source in odfv.view_sources:
                if source not in pins:
                    current = self.layouts.get(source)
                    if current is None:
                        raise PinnedVersionError(
                            f"on-demand view {name!r} at version {version} reads feature view {source!r}, which "
                            "is not registered any more; apply the view again or read the current version",
                            view=name, pinned=version,
                        )
                    pins[source] = current.view.version
        return pins

    def _versions(self) -> Versions:
        if self.versions is None:  # pragma: no cover (the store's catalogs always have them)
            raise RuntimeError("this catalog has no stored versions to pin")
        return self.versions

    def pinned(self, pins: Mapping[str, str]) -> Catalog:
        """This catalog with the definitions in ``pins`` (``{name: full version}``) at those
        versions (cached per distinct set; ``self`` when every pin is in force)."""
        changed = {n: v for n, v in pins.items() if self.version_of(n) != v}
        if not changed:
            return self
        key = frozenset(changed.items())
        found = self._pinned.get(key)
        if found is not None:
            return found
        versions = self._versions()
        layouts, odfvs, tables = dict(self.layouts), dict(self.odfvs), dict(self.tables)
        for name, version in sorted(changed.items()):
            if self._kind_at(name, version) == "feature_view":
                table = self.tables.get(name, self.layouts.get(name))
                if table is None:
                    raise PinnedVersionError(
                        f"feature view {name!r} is pinned at version {version}, but the view is not registered "
                        "any more (its stored data went with it); pin a version of a view that exists",
                        view=name, pinned=version,
                    )
                layouts[name] = ViewLayout(versions.view_at(name, version), table.keys, table.derived)
                tables[name] = table
                odfvs.pop(name, None)
            else:
                odfvs[name] = versions.odfv_at(name, version)
        views = {n: layout.view for n, layout in layouts.items()}
        bindings, broken = dict(self.bindings), dict(self.broken)
        for name, odfv in list(odfvs.items()):
            if name in changed or any(source in changed for source in odfv.view_sources):
                try:
                    bindings[name] = versions.bind(odfv, views)
                except DefinitionError as exc:
                    if name in changed:
                        raise  # a pinned on-demand view must bind to the versions pinned with it
                    # An on-demand view in force that reads what a pinned source view lacks (a
                    # feature added since): this catalog cannot serve it, and a request that
                    # asks for it says so; every other read goes on.
                    del odfvs[name]
                    bindings.pop(name, None)
                    broken[name] = exc
        catalog = Catalog(layouts, odfvs, bindings, broken, self.services, versions, tables=tables)
        if len(self._pinned) >= PLAN_CACHE_SIZE:
            self._pinned.clear()
        self._pinned[key] = catalog
        return catalog

    def _check_stored(self, view: str, columns: Sequence[str]) -> None:
        """Refuse to read ``columns`` of a view pinned at a version whose storage the
        tables no longer have (PinnedVersionError naming both versions and the fix)."""
        table = self.tables.get(view)
        if table is None:
            return
        pinned = self.layouts[view].view
        if pinned.entities != table.view.entities:
            problem: str | None = f"its entities change from {list(pinned.entities)} to {list(table.view.entities)}"
        else:
            problem = storage_difference(pinned, table.view, table.keys, table.keys, columns)
        if problem is not None:
            raise PinnedVersionError(
                f"feature view {view!r} is pinned at version {pinned.version}, but its stored data is now that of "
                f"version {table.view.version}, in which {problem}; pin the current version (re-apply the feature "
                "service, or build a new training set and model)",
                view=view, pinned=pinned.version, current=table.view.version,
            )

    def service(self, name: str) -> FeatureService:
        """A registered feature service; UnknownFeatureServiceError names the registered ones."""
        found = self.services.get(name) if isinstance(name, str) else None
        if found is None:
            raise UnknownFeatureServiceError(
                f"feature service {name!r} is not registered (registered: "
                f"{', '.join(sorted(self.services)) or 'none'}); apply it first",
                name=str(name),
            )
        return found

    def _resolve(
        self, features: Sequence[str] | str | None, service: str | None, pins: Mapping[str, str] | None,
    ) -> tuple[Catalog, list[FeatureRef], dict[str, str], FeatureService | None]:
        """What a request reads: the catalog to plan it in, its references without versions
        (resolved into that catalog), every pin, and the service asked for. ``pins`` (from a
        manifest) fix the versions of every definition read."""
        found = None
        if service is not None:
            if features is not None:
                raise InputError("pass either features or service=, not both")
            found = self.service(service)
            features = list(found.features)
        if features is None:
            raise InputError("no features requested; pass references like 'view:feature', or service=")
        refs = parse_references(features)
        if pins is not None:
            for ref in refs:
                if ref.view not in pins:
                    raise InputError(f"feature {ref.text!r} reads {ref.view!r}, which the manifest does not pin")
            chosen = dict(pins)
        else:
            chosen = dict(found.pins) if found is not None else self.pins_for(refs)
        catalog = self.pinned(chosen)
        return catalog, [FeatureRef(r.view, None, r.feature, r.text) for r in refs], chosen, found

    def _groups(
        self, refs: Sequence[FeatureRef], full_feature_names: bool
    ) -> tuple[list[FeatureGroup], list[str]]:
        groups, order = resolve_features(refs, full_feature_names, self.schema_of)
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

    def historical_plan(
        self, features: Sequence[str] | str | None, full_feature_names: bool, *, service: str | None = None,
        pins: Mapping[str, str] | None = None,
    ) -> HistoricalPlan:
        """What a training set of ``features`` (or of feature service ``service``) joins and
        computes, at the versions the references, the service or ``pins`` name."""
        catalog, refs, chosen, found = self._resolve(features, service, pins)
        return catalog._historical(refs, _full_names(full_feature_names, found), chosen, found)

    def _historical(
        self, refs: Sequence[FeatureRef], full_feature_names: bool, pins: dict[str, str],
        service: FeatureService | None,
    ) -> HistoricalPlan:
        groups, order = self._groups(refs, full_feature_names)
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
        self._check_reads(joins, windows)
        return HistoricalPlan(
            tuple(groups), tuple(order), {v: tuple(f) for v, f in joins.items()}, on_demand,
            {v: tuple(a) for v, a in windows.items()}, dict(sorted(pins.items())), tuple(r.text for r in refs),
            service, self,
        )

    def _check_reads(self, stored: Mapping[str, Sequence[str]], windows: Mapping[str, Sequence[Aggregation]]) -> None:
        """Every stored column a plan reads exists as the pinned versions expect."""
        for view in {*stored, *windows}:
            columns = [*stored.get(view, ()), *(a.column for a in windows.get(view, ()))]
            self._check_stored(view, list(dict.fromkeys(columns)))

    def online_plan(self, features: Sequence[str] | str | None, full_feature_names: bool) -> OnlinePlan:
        """How to serve ``features`` online, cached per distinct list."""
        if isinstance(features, str):
            features = [features]
        key: tuple[tuple[str, ...], bool] | None
        try:
            key = (tuple(features), full_feature_names)  # type: ignore[arg-type]  # (None: TypeError, said below)
            plan = self._online_plans.get(key)
        except TypeError:  # not a list of strings: resolve_features says what is wrong
            key, plan = None, None
        if plan is None:
            catalog, refs, pins, _ = self._resolve(features, None, None)
            plan = catalog._plan_online(refs, full_feature_names, pins)
            self._remember(key, plan)
        return plan

    def service_plan(self, service: str, full_feature_names: bool) -> OnlinePlan:
        """How to serve feature service ``service`` online (at its pinned versions), cached."""
        key = ((_SERVICE, service), full_feature_names)
        plan = self._online_plans.get(key)
        if plan is None:
            catalog, refs, pins, found = self._resolve(None, service, None)
            plan = catalog._plan_online(refs, _full_names(full_feature_names, found), pins)
            self._remember(key, plan)
        return plan

    def pinned_plan(
        self, features: Sequence[str], pins: Mapping[str, str], full_feature_names: bool, key: str
    ) -> OnlinePlan:
        """How to serve ``features`` at exactly the versions ``pins`` names (a manifest's),
        cached under ``key`` (the manifest's identity)."""
        cache_key = ((_SERVICE, key), full_feature_names)
        plan = self._online_plans.get(cache_key)
        if plan is None:
            catalog, refs, chosen, _ = self._resolve(features, None, pins)
            plan = catalog._plan_online(refs, full_feature_names, chosen)
            self._remember(cache_key, plan)
        return plan

    def _remember(self, key: tuple[tuple[str, ...], bool] | None, plan: OnlinePlan) -> None:
        if key is not None:
            if len(self._online_plans) >= PLAN_CACHE_SIZE:
                self._online_plans.clear()  # callers with endless distinct lists: start over
            self._online_plans[key] = plan

    def _read(self, view: str, features: tuple[str, ...], outputs: tuple[str, ...]) -> ViewRead:
        layout = self.layout(view)
        return ViewRead(view, features, outputs, layout.ttl_us, layout)

    def _plan_online(self, refs: Sequence[FeatureRef], full_feature_names: bool, pins: dict[str, str]) -> OnlinePlan:
        groups, order = self._groups(refs, full_feature_names)
        reads: list[ViewRead] = []
        windows: list[WindowRead] = []
        for group in groups:
            if group.view not in self.odfvs:
                stored, window = self.split(group)
                if stored.features or window is None:
                    reads.append(self._read(stored.view, stored.features, stored.outputs))
                if window is not None:
                    windows.append(window)
        runs: list[FeaturizerRun] = []
        for group in groups:
            if group.view in self.odfvs:
                runs.extend(self._online_runs(group, reads, windows))
        self._check_reads({r.view: r.features for r in reads}, {w.view: w.aggregations for w in windows})
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
        sources = {out: (g.view, f) for g in groups for f, out in zip(g.features, g.outputs, strict=True)}
        return OnlinePlan(
            tuple(reads), tuple(runs), tuple(order) if natural != order else None, {**key_types, **types},
            tuple(key_types), tuple(windows), dict(sorted(pins.items())), {out: sources[out] for out in order},
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
                at = _find(reads, view, self._read(view, (), ()))  # appended if read only for featurizers
                read = reads[at]
                extra = tuple(f for f in stored.features if f not in read.features)
                reads[at] = read._replace(features=read.features + extra)
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



def _full_names(asked: bool, service: FeatureService | None) -> bool:
    """Whether columns are named ``view__feature``: as asked, or as the service declares.
    (A value that is not a bool passes through: resolve_features names the mistake.)"""
    if service is None or asked is not False:
        return asked
    return service.full_feature_names


_Read = TypeVar("_Read", ViewRead, WindowRead)


def _find(found: list[_Read], view: str, empty: _Read) -> int:
    """Position of ``view``'s read in ``found``; appends ``empty`` when there is none."""
    at = next((i for i, read in enumerate(found) if read.view == view), None)
    if at is None:
        found.append(empty)
        at = len(found) - 1
    return at
