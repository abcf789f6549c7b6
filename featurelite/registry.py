"""Definitions and every version of them, stored in the file.

Tables (all prefixed ``fl_``):

- ``fl_meta``: format name and version, the featurelite version that created the file,
  and which views' online tables lag their history. (Files created before this version
  also hold a ``next_seq`` row, a counter nothing advanced; it is ignored. The Store finds
  the next free ingest sequence number at open from the histories.)
- ``fl_versions``: every (kind, name, version) ever applied, with its spec and first apply time.
- ``fl_apply_log``: one row per change an apply made (added / changed / deleted).
- ``fl_current``: the version of each definition in force now.

The registry also binds featurizer inputs to what feeds them (:func:`odfv_bindings`,
:func:`derived_bindings`): which source, by name and type, each input reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import duckdb

from .arguments import shown
from .compatibility import storage_difference
from .db import path_of, run, transaction, translating
from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView, RequestSource
from .errors import (
    BreakingChangeError,
    DefinitionError,
    FeatureliteError,
    FeaturizerError,
    InputError,
    NotFoundError,
    StoreError,
    StoreFormatError,
    UnknownEntityError,
    UnknownFeatureViewError,
    UnknownVersionError,
)
from .featurizer import Featurizer
from .layout import ViewLayout
from .planning import Catalog
from .references import parse_references
from .types import DTYPE_OF

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "ApplyResult", "Binding", "Change", "Registry", "ServiceImpact",
    "derived_bindings", "odfv_bindings", "pending_online", "seq_floor", "set_pending", "set_seq_floor",
    "store_id",
]

FORMAT_NAME = "featurelite"
#: Generated examples each featurizer is checked on when applied (Store.verify does more).
QUICK_VERIFY_EXAMPLES = 300
#: The kinds of definition the registry keeps versions of.
KINDS = ("entity", "feature_view", "on_demand_feature_view", "feature_service")
#: Bump when the file layout changes; a file with a higher number is refused. A file is
#: written with the lowest version that holds what it has, so older featurelite releases
#: keep opening it: 1 until a feature service is applied, 2 from then on (a release that
#: reads only 1 would take the service's registry rows for damage; 2 makes it say "upgrade").
FORMAT_VERSION = 2
#: The format a new file starts at.
_FIRST_FORMAT = 1
#: The format a file needs once it holds a feature service.
_SERVICES_FORMAT = 2

#: What Python raises on rows featurelite did not write (a damaged file, or an edit made
#: with DuckDB directly): a value that does not parse, a missing row or field.
_ROW_ERRORS = (ValueError, KeyError, IndexError, TypeError, AttributeError)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fl_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS fl_versions (
    kind VARCHAR NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
    spec VARCHAR NOT NULL, first_applied_at TIMESTAMP NOT NULL,
    PRIMARY KEY (kind, name, version));
CREATE TABLE IF NOT EXISTS fl_apply_log (
    applied_at TIMESTAMP NOT NULL, kind VARCHAR NOT NULL, name VARCHAR NOT NULL,
    version VARCHAR, change VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS fl_current (
    kind VARCHAR NOT NULL, name VARCHAR NOT NULL, version VARCHAR NOT NULL,
    PRIMARY KEY (kind, name));
"""


@dataclass(frozen=True)
class Change:
    """One definition's fate in an apply."""

    kind: str  #: "entity" or "feature_view"
    name: str
    version: str
    previous_version: str | None = None


@dataclass(frozen=True)
class ServiceImpact:
    """A feature service that pins a version of a definition an apply changes: the service
    keeps reading ``pinned_version`` until it is applied again."""

    service: str
    definition: str
    pinned_version: str
    new_version: str
    #: Why the service can no longer serve its pinned version after the change (the stored
    #: data changed under it), or None when it still serves it.
    problem: str | None = None


@dataclass(frozen=True)
class ApplyResult:
    """What ``Store.apply`` did (or, with ``dry_run=True``, would do)."""

    added: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[Change] = field(default_factory=list)
    dry_run: bool = False
    #: Services (not in this apply) that pin an older version of a definition it changes.
    affected_services: list[ServiceImpact] = field(default_factory=list)

    def __bool__(self) -> bool:
        """True when the apply added or changed anything."""
        return bool(self.added or self.changed)


def init_or_check(con: duckdb.DuckDBPyConnection, path: str, *, read_only: bool, version: str) -> None:
    """Create the registry tables in a new file, or check an existing file is ours."""
    listed = "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views() WHERE NOT internal"
    tables = {row[0] for row in run(con, listed)}
    if "fl_meta" not in tables:
        if tables or read_only:
            raise StoreFormatError(
                f"file {path!r} is a DuckDB database but not a featurelite store; "
                "open a featurelite store or pass a new path",
                path=path,
            )
        with translating(f"creating the store tables in {path!r} (nothing was written)", path=path), transaction(con):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    run(con, statement)
            for key, value in (
                ("format", FORMAT_NAME),
                ("format_version", str(_FIRST_FORMAT)),
                ("created_by", version),
                (_STORE_ID, uuid.uuid4().hex),
            ):
                run(con, "INSERT INTO fl_meta VALUES (?, ?)", [key, value])
        return
    meta = dict(run(con, "SELECT key, value FROM fl_meta"))
    if meta.get("format") != FORMAT_NAME:
        raise StoreFormatError(f"file {path!r} is not a featurelite store", path=path)
    try:
        found = int(meta["format_version"])  # every featurelite store file has had the row
    except (KeyError, ValueError) as exc:
        raise _damaged_row(con, "fl_meta", f"format_version {meta.get('format_version')!r}") from exc
    if found > FORMAT_VERSION:
        raise StoreFormatError(
            f"store file {path!r} has format version {found}, newer than this featurelite "
            f"({version}) reads (up to {FORMAT_VERSION}); upgrade featurelite",
            path=path,
            format_version=found,
        )


#: fl_meta key prefix marking a view whose online table lags its history: the value is the
#: first ingest sequence number not yet applied to the online table.
_PENDING = "online_pending:"


def pending_online(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Views whose online tables lag their history, with the first sequence not applied."""
    rows = run(con, "SELECT key, value FROM fl_meta WHERE starts_with(key, ?)", [_PENDING])
    try:
        return {key[len(_PENDING):]: int(value) for key, value in rows}
    except ValueError as exc:
        raise _damaged_row(con, "fl_meta", "an online_pending value") from exc


def _damaged_row(con: duckdb.DuckDBPyConnection, table: str, what: str) -> StoreFormatError:
    """The error for a registry row featurelite cannot have written."""
    return _damaged_file(path_of(con), table, what)


def _damaged_file(path: str, table: str, what: str) -> StoreFormatError:
    """The error for a registry row of the store file at ``path`` featurelite cannot have written."""
    return StoreFormatError(
        f"store file {path!r} is damaged: table {table} has an unreadable row ({what}); "
        "restore the file from a copy or a backup",
        path=path,
    )


#: fl_meta key of the store's identity (a random hex id given when the file is created,
#: or when a file from before it is first opened for writing).
_STORE_ID = "store_id"
#: fl_meta key of the lowest sequence number the next ingest may use: recorded when a
#: view's history is deleted, so a number a manifest's ingest position covers is never reused.
_SEQ_FLOOR = "seq_floor"


def store_id(con: duckdb.DuckDBPyConnection, *, read_only: bool) -> str | None:
    """The store's identity; given now to a writable store from before identities (None
    for such a store opened read-only)."""
    rows = run(con, "SELECT value FROM fl_meta WHERE key = ?", [_STORE_ID])
    if rows:
        return str(rows[0][0])
    if read_only:
        return None
    made = uuid.uuid4().hex
    with translating("giving the store its identity (nothing was written)", committed=False), transaction(con):
        run(con, "INSERT INTO fl_meta VALUES (?, ?)", [_STORE_ID, made])
    return made


def seq_floor(con: duckdb.DuckDBPyConnection) -> int:
    """The lowest sequence number the next ingest may use (0 if none was recorded)."""
    rows = run(con, "SELECT value FROM fl_meta WHERE key = ?", [_SEQ_FLOOR])
    try:
        return int(rows[0][0]) if rows else 0
    except ValueError as exc:
        raise _damaged_row(con, "fl_meta", "the seq_floor value") from exc


def set_seq_floor(con: duckdb.DuckDBPyConnection, seq: int) -> None:
    """Record (inside the caller's transaction) that sequence numbers below ``seq`` are used."""
    run(con, "DELETE FROM fl_meta WHERE key = ?", [_SEQ_FLOOR])
    run(con, "INSERT INTO fl_meta VALUES (?, ?)", [_SEQ_FLOOR, str(int(seq))])


def set_pending(con: duckdb.DuckDBPyConnection, view: str, seq: int | None) -> None:
    """Record (inside the caller's transaction) that ``view``'s online table lags from
    ``seq`` on, or (``None``) that it is up to date."""
    run(con, "DELETE FROM fl_meta WHERE key = ?", [_PENDING + view])
    if seq is not None:
        run(con, "INSERT INTO fl_meta VALUES (?, ?)", [_PENDING + view, str(int(seq))])


class Registry:
    """The current entities and feature views, mirrored in memory from the file."""

    def __init__(self) -> None:
        self.entities: dict[str, Entity] = {}
        self.views: dict[str, FeatureView] = {}
        self.odfvs: dict[str, OnDemandFeatureView] = {}
        #: on-demand views whose featurizers could not be rebuilt from the file, with why
        self.broken: dict[str, FeaturizerError] = {}
        #: the spec JSON of each on-demand view in ``broken`` (an export carries it on)
        self.broken_specs: dict[str, str] = {}
        #: makes the error for a stored row that does not parse (see :meth:`install`)
        self._damaged: Callable[[str, str], Exception] = lambda table, what: StoreError(f"{table}: {what}")
        #: per on-demand view: {output: {input: Binding}}
        self.bindings: dict[str, dict[str, dict[str, Binding]]] = {}
        #: feature services, with their pins
        self.services: dict[str, FeatureService] = {}
        #: (kind, name) -> {version: spec JSON}, every version ever applied, oldest first.
        #: Replaced whole, never changed in place: plans read it without the store's lock.
        self._specs: dict[tuple[str, str], dict[str, str]] = {}
        #: name -> [(kind, version)] of every version ever applied, oldest first (from _specs)
        self._by_name: dict[str, list[tuple[str, str]]] = {}
        #: definitions rebuilt from stored versions (a version never changes: kept for good)
        self._built: dict[tuple[str, str, str], Any] = {}

    def load(self, con: duckdb.DuckDBPyConnection) -> None:
        """Read the definitions in force from the file. Rows that do not parse, or that
        do not fit together (a view whose entity is missing), raise StoreFormatError."""
        current = run(con,
            "SELECT c.kind, c.name, v.spec FROM fl_current c JOIN fl_versions v USING (kind, name, version)"
        )
        every = run(con, "SELECT kind, name, version, spec FROM fl_versions ORDER BY first_applied_at, version")
        path = path_of(con)  # a stored version may be rebuilt (and found damaged) after the connection is gone
        self.install(current, every, lambda table, what: _damaged_file(path, table, what))

    def install(
        self, current: Iterable[Sequence[str]], every: Iterable[Sequence[str]],
        damaged: Callable[[str, str], Exception],
    ) -> None:
        """Take the definitions in force (``current``: rows of kind, name, spec JSON) and
        every version ever applied (``every``: kind, name, version, spec JSON, oldest
        first): from the file's tables, or from an export's registry. A row that does not
        parse, or definitions that do not fit together, raise ``damaged(table, what)``."""
        self.entities = {}
        self.views = {}
        self.odfvs = {}
        self.broken = {}
        self.broken_specs = {}
        self.services = {}
        self._built = {}
        self._damaged = damaged
        specs: dict[tuple[str, str], dict[str, str]] = {}
        for kind, name, version, spec in every:
            specs.setdefault((kind, name), {})[version] = spec
        self._set_specs(specs)
        for kind, name, spec in current:
            try:
                data = json.loads(spec)
                if kind == "entity":
                    self.entities[data["name"]] = Entity.from_spec(data)
                elif kind == "feature_view":
                    self.views[data["name"]] = FeatureView.from_spec(data)
                elif kind == "on_demand_feature_view":
                    try:
                        self.odfvs[data["name"]] = OnDemandFeatureView.from_spec(data)
                    except FeaturizerError as exc:
                        # One unusable featurizer must not lock the whole store: its view's
                        # features raise this error when asked for, everything else works.
                        self.broken[data["name"]] = exc
                        self.broken_specs[data["name"]] = spec
                elif kind == "feature_service":
                    self.services[data["name"]] = FeatureService.from_spec(data)
                else:
                    raise ValueError(f"unknown kind {kind!r}")
            except FeaturizerError:
                raise  # a featurizer this process cannot compile: not damage, and it says why
            except _ROW_ERRORS as exc:  # includes json.JSONDecodeError and DefinitionError
                raise damaged("fl_versions", f"the {kind} {name!r}: {type(exc).__name__}: {exc}") from exc
        for view in self.views.values():
            missing = [e for e in view.entities if e not in self.entities]
            if missing:
                raise damaged(
                    "fl_current", f"feature view {view.name!r} uses entity {missing[0]!r}, which is not there"
                )
        try:
            self.bindings = _all_bindings(self.odfvs, self.views)
        except (FeaturizerError, StoreError):
            raise
        except _ROW_ERRORS as exc:
            raise damaged("fl_current", f"{type(exc).__name__}: {exc}") from exc

    def catalog(self) -> Catalog:
        """The definitions in force, laid out and bound, with every stored version for
        pinned reads: what a store plans its reads in (and an export's reader, the same)."""
        layouts = {name: layout_of(view, self.entities) for name, view in self.views.items()}
        return Catalog(layouts, self.odfvs, self.bindings, self.broken, self.services, self)

    def stored_versions(self) -> list[tuple[str, str, str, str]]:
        """Every version ever applied as (kind, name, version, spec JSON), oldest first per
        name: what :meth:`install` takes back (an export carries them)."""
        return [(kind, name, version, spec) for (kind, name), versions in self._specs.items()
                for version, spec in versions.items()]

    def check_deletable(self, view: str) -> None:
        """Refuse to delete a view that on-demand views read or feature services pin
        (DefinitionError naming them)."""
        users = sorted(o.name for o in self.odfvs.values() if view in o.view_sources)
        if users:
            raise DefinitionError(
                f"feature view {view!r} is a source of on-demand feature view(s) {', '.join(users)}; "
                "delete those first",
                name=view,
            )
        pinning = sorted(s.name for s in self.services.values() if view in s.pins)
        if pinning:
            raise DefinitionError(
                f"view {view!r} is pinned by feature service(s) {', '.join(pinning)}; delete those first "
                "(store.delete_feature_service) or apply them without it",
                name=view,
            )

    def adopt(
        self, entities: dict[str, Entity], views: dict[str, FeatureView], odfvs: dict[str, OnDemandFeatureView],
        services: dict[str, FeatureService],
    ) -> None:
        """Install the definitions an apply put in force (as :meth:`plan` returned them, after
        they were recorded) and bind the on-demand views' inputs again."""
        bindings = _all_bindings(odfvs, views)
        self.entities, self.views, self.odfvs, self.bindings = entities, views, odfvs, bindings
        self.services = services
        specs = {key: dict(versions) for key, versions in self._specs.items()}  # copied, then swapped in
        for kind, current in (
            ("entity", entities), ("feature_view", views), ("on_demand_feature_view", odfvs),
            ("feature_service", services),
        ):
            for name, obj in current.items():
                known = specs.setdefault((kind, name), {})
                if obj.version not in known:
                    known[obj.version] = json.dumps(obj.spec(), sort_keys=True)
        self._set_specs(specs)

    def _set_specs(self, specs: dict[tuple[str, str], dict[str, str]]) -> None:
        by_name: dict[str, list[tuple[str, str]]] = {}
        for (kind, name), versions in specs.items():
            by_name.setdefault(name, []).extend((kind, v) for v in versions)
        self._specs, self._by_name = specs, by_name

    def remove(self, kind: str, name: str) -> None:
        """Drop a deleted feature view (``kind`` "feature_view"), on-demand feature view
        ("on_demand_feature_view") or feature service ("feature_service"), after the
        deletion was recorded."""
        if kind == "feature_view":
            del self.views[name]
        elif kind == "on_demand_feature_view":
            del self.odfvs[name]
            self.bindings.pop(name, None)
        elif kind == "feature_service":
            del self.services[name]
        else:
            raise ValueError(f"cannot remove a definition of kind {kind!r}")

    # -- stored versions (planning.Versions) ----------------------------------------

    def versions_of(self, name: str) -> list[tuple[str, str]]:
        """(kind, version) of every version of ``name`` ever applied, oldest first."""
        return list(self._by_name.get(name, ()))

    def view_at(self, name: str, version: str) -> FeatureView:
        """Feature view ``name`` as it was at ``version``, rebuilt from its stored spec."""
        built: FeatureView = self._at("feature_view", name, version, FeatureView.from_spec)
        return built

    def odfv_at(self, name: str, version: str) -> OnDemandFeatureView:
        """On-demand view ``name`` at ``version``, its featurizers compiled from the stored source."""
        built: OnDemandFeatureView = self._at("on_demand_feature_view", name, version, OnDemandFeatureView.from_spec)
        return built

    def bind(self, odfv: OnDemandFeatureView, views: Mapping[str, FeatureView]) -> dict[str, dict[str, Binding]]:
        """An on-demand view's inputs bound to ``views`` (see :func:`odfv_bindings`)."""
        return odfv_bindings(odfv, views)

    def _at(self, kind: str, name: str, version: str, build: Callable[[Mapping[str, Any]], Any]) -> Any:
        key = (kind, name, version)
        found = self._built.get(key)
        if found is None:
            spec = self._specs.get((kind, name), {}).get(version)
            if spec is None:
                raise UnknownVersionError(
                    f"{kind.replace('_', ' ')} {name!r} has no stored version {version!r}",
                    name=name, candidates=list(self._specs.get((kind, name), {})),
                )
            try:
                found = build(json.loads(spec))
            except FeaturizerError:
                raise  # a featurizer this process cannot compile: not damage, and it says why
            except _ROW_ERRORS as exc:  # includes json.JSONDecodeError and DefinitionError
                raise self._damaged(
                    "fl_versions", f"the {kind.replace('_', ' ')} {name!r} at version {version}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self._built[key] = found
        return found

    def entity(self, name: str) -> Entity:
        try:
            return self.entities[name]
        except KeyError:
            raise UnknownEntityError(
                f"entity {name!r} is not registered (registered: {', '.join(sorted(self.entities)) or 'none'}); "
                "apply it first",
                name=name,
            ) from None

    def view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            raise UnknownFeatureViewError(
                f"feature view {name!r} is not registered (registered: {', '.join(sorted(self.views)) or 'none'}); "
                "apply it first",
                name=name,
            ) from None

    def plan(
        self,
        objects: Iterable[Entity | FeatureView | OnDemandFeatureView | FeatureService],
        rows_stored: Callable[[str], int],
    ) -> tuple[ApplyResult, Definitions]:
        """Validate ``objects`` against the registry and say what applying them changes.

        Returns the result plus the definitions as they would be afterwards (services
        pinned). Raises DefinitionError / UnknownEntityError / BreakingChangeError /
        PinnedVersionError; changes nothing.
        """
        entities, views, odfvs, services = _collect(objects)
        new_entities = {**self.entities, **entities}
        new_views = {**self.views, **views}
        new_odfvs = {**self.odfvs, **odfvs}
        _check_names_and_sources(new_entities, new_views, new_odfvs)
        for view in views.values():
            if view.featurizers:
                keys = {k: d for e in view.entities for k, d in new_entities[e].key_schema.items()}
                derived_bindings(view, keys)  # raises if an input is unbound or mistyped
        _check_featurizers(views, odfvs)
        for name, view in new_views.items():
            old_view = self.views.get(name)
            problem = None if old_view is None else storage_difference(
                old_view, view, _key_schema(old_view, self.entities), _key_schema(view, new_entities)
            )
            if problem:
                _refuse_if_stored(name, problem, rows_stored(name))
        views_by_name = {n.lower() for n in [*new_views, *new_odfvs]}
        for name in sorted({*services, *self.services}):
            if name.lower() in views_by_name:
                raise DefinitionError(
                    f"feature service {name!r} has the name of a view; rename one of them", name=name
                )
        # Services are pinned against the definitions as they will be after this apply.
        catalog = self._catalog(new_entities, new_views, new_odfvs)
        pinned = {name: _pin(catalog, service) for name, service in services.items()}
        result = self._changes(entities, views, odfvs, pinned)
        new_services = {**self.services, **pinned}
        moved = {c.name for c in result.changed if c.kind in ("feature_view", "on_demand_feature_view")}
        result.affected_services.extend(_impacts(catalog, new_services, pinned, moved))
        return result, Definitions(new_entities, new_views, new_odfvs, new_services)

    def _catalog(
        self, entities: Mapping[str, Entity], views: Mapping[str, FeatureView],
        odfvs: Mapping[str, OnDemandFeatureView],
    ) -> Catalog:
        """A catalog of the given definitions (to plan with before they are in force)."""
        layouts = {name: layout_of(view, entities) for name, view in views.items()}
        return Catalog(layouts, odfvs, _all_bindings(odfvs, views), {}, self.services, self)

    def _changes(
        self, entities: dict[str, Entity], views: dict[str, FeatureView], odfvs: dict[str, OnDemandFeatureView],
        services: dict[str, FeatureService],
    ) -> ApplyResult:
        """Which of the given definitions are added, changed or unchanged."""
        result = ApplyResult()
        given_and_current: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = [
            ("entity", entities, self.entities),
            ("feature_view", views, self.views),
            ("on_demand_feature_view", odfvs, self.odfvs),
            ("feature_service", services, self.services),
        ]
        for kind, given, current in given_and_current:
            for name, obj in given.items():
                old = current.get(name)
                if old is None:
                    result.added.append(Change(kind, name, obj.version))
                elif old.version == obj.version:
                    result.unchanged.append(Change(kind, name, obj.version, old.version))
                else:
                    result.changed.append(Change(kind, name, obj.version, old.version))
        return result

    def record(
        self, con: duckdb.DuckDBPyConnection, result: ApplyResult, definitions: Definitions, now: datetime,
    ) -> None:
        """Write an apply's changes inside the caller's transaction (``definitions``: what
        :meth:`plan` returned)."""
        objects: dict[str, Mapping[str, Any]] = {
            "entity": definitions.entities, "feature_view": definitions.views,
            "on_demand_feature_view": definitions.odfvs, "feature_service": definitions.services,
        }
        if any(c.kind == "feature_service" for c in [*result.added, *result.changed]):
            run(con,
                "UPDATE fl_meta SET value = ? WHERE key = 'format_version' AND CAST(value AS INTEGER) < ?",
                [str(_SERVICES_FORMAT), _SERVICES_FORMAT],
            )
        for change in [*result.added, *result.changed]:
            obj = objects[change.kind][change.name]
            spec = json.dumps(obj.spec(), sort_keys=True)
            run(con,
                "INSERT INTO fl_versions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [change.kind, change.name, change.version, spec, now],
            )
            run(con,
                "INSERT INTO fl_apply_log VALUES (?, ?, ?, ?, ?)",
                [now, change.kind, change.name, change.version,
                 "added" if change.previous_version is None else "changed"],
            )
            run(con,
                "INSERT INTO fl_current VALUES (?, ?, ?) "
                "ON CONFLICT (kind, name) DO UPDATE SET version = excluded.version",
                [change.kind, change.name, change.version],
            )

    def record_delete(self, con: duckdb.DuckDBPyConnection, kind: str, name: str, now: datetime) -> None:
        run(con, "DELETE FROM fl_current WHERE kind = ? AND name = ?", [kind, name])
        run(con, "INSERT INTO fl_apply_log VALUES (?, ?, ?, NULL, 'deleted')", [now, kind, name])

    def versions(self, con: duckdb.DuckDBPyConnection, name: str, kind: str | None = None) -> list[dict[str, object]]:
        """Every version of ``name`` ever applied, oldest first, with ``current`` marking
        the one in force and ``pinned_by`` the feature services that read it. Raises
        NotFoundError for a name never applied."""
        query = (
            "SELECT v.kind, v.name, v.version, v.first_applied_at, v.spec, c.version IS NOT NULL "
            "FROM fl_versions v LEFT JOIN fl_current c USING (kind, name, version) WHERE v.name = ?"
        )
        if kind is not None and kind not in KINDS:
            raise InputError(f"kind must be one of {', '.join(KINDS)} or None, not {kind!r}")
        params: list[object] = [name]
        if kind:
            query += " AND v.kind = ?"
            params.append(kind)
        rows = run(con, query + " ORDER BY v.first_applied_at, v.version", params)
        if not rows:
            raise NotFoundError(f"no definition named {name!r} was ever applied", name=name)
        try:
            return [
                {
                    "kind": k, "name": n, "version": v, "applied_at": at.replace(tzinfo=timezone.utc),
                    "current": bool(current),
                    "pinned_by": sorted(svc.name for svc in self.services.values() if svc.pins.get(n) == v),
                    "spec": json.loads(s),
                }
                for k, n, v, at, s, current in rows
            ]
        except ValueError as exc:  # json.JSONDecodeError
            raise _damaged_row(con, "fl_versions", f"a version of {name!r}: {exc}") from exc


def _check_rebuildable(owner_text: str, fz: Featurizer) -> None:
    """Refuse a featurizer the store could not compile again from the file alone."""
    try:
        rebuilt = Featurizer.from_spec(fz.spec())
    except FeaturizerError as exc:
        raise FeaturizerError(
            f"{owner_text}: featurizer {fz.name!r} cannot be stored: its source "
            f"cannot be compiled again on its own ({exc.message}); define it in a file (or notebook "
            "cell), using only its parameters, imported modules and plain constants",
            featurizer=fz.name,
        ) from exc
    if rebuilt.version != fz.version:
        raise FeaturizerError(f"featurizer {fz.name!r} changes when rebuilt from its source", featurizer=fz.name)


def _collect(
    objects: Iterable[Entity | FeatureView | OnDemandFeatureView | FeatureService],
) -> tuple[dict[str, Entity], dict[str, FeatureView], dict[str, OnDemandFeatureView], dict[str, FeatureService]]:
    entities: dict[str, Entity] = {}
    views: dict[str, FeatureView] = {}
    odfvs: dict[str, OnDemandFeatureView] = {}
    services: dict[str, FeatureService] = {}
    kinds: list[tuple[type, dict[str, Any], str]] = [
        (Entity, entities, "entities"),
        (FeatureView, views, "feature views"),
        (OnDemandFeatureView, odfvs, "on-demand feature views"),
        (FeatureService, services, "feature services"),
    ]
    try:
        items = list(objects)
    except TypeError:  # not iterable
        raise DefinitionError(
            "apply takes an Entity, FeatureView, OnDemandFeatureView or FeatureService, or a list of them, "
            f"not {type(objects).__name__}: {shown(objects)}"
        ) from None
    for obj in items:
        for cls, bucket, label in kinds:
            if isinstance(obj, cls):
                if obj.name in bucket and bucket[obj.name] != obj:
                    raise DefinitionError(
                        f"apply got two different {label} named {obj.name!r}; keep one", name=obj.name
                    )
                bucket[obj.name] = obj
                break
        else:
            raise DefinitionError(
                "apply takes Entity, FeatureView, OnDemandFeatureView and FeatureService objects, "
                f"got {type(obj).__name__}: {obj!r}"
            )
    # Definitions a view was built with are applied with it unless given separately.
    for odfv in odfvs.values():
        for view in odfv.view_objects:
            if views.setdefault(view.name, view) != view:
                raise DefinitionError(
                    f"on-demand feature view {odfv.name!r} was built with a different feature view "
                    f"{view.name!r} than the one passed to apply; use one definition",
                    name=view.name,
                )
    for view in views.values():
        for ent in view.entity_objects:
            given = entities.setdefault(ent.name, ent)
            if given != ent:
                raise DefinitionError(
                    f"feature view {view.name!r} was built with a different entity {ent.name!r} "
                    "than the one passed to apply; use one definition",
                    name=ent.name,
                )
    return entities, views, odfvs, services


def _key_schema(view: FeatureView, entities: Mapping[str, Entity]) -> list[tuple[str, str]]:
    return [(k, d) for e in view.entities for k, d in entities[e].key_schema.items()]


class Definitions(NamedTuple):
    """Every definition in force (after an apply)."""

    entities: dict[str, Entity]
    views: dict[str, FeatureView]
    odfvs: dict[str, OnDemandFeatureView]
    services: dict[str, FeatureService]


def _pin(catalog: Catalog, service: FeatureService) -> FeatureService:
    """``service`` with the version of every definition it reads pinned (the one a
    reference names, else the one in force), checked to plan: every feature exists at its
    pinned version and the stored data can serve it."""
    try:
        refs = parse_references(list(service.features))
        pins = catalog.pins_for(refs)
        pinned = service.pinned(pins)
        catalog.with_services({service.name: pinned}).historical_plan(None, False, service=service.name)
    except FeatureliteError as exc:  # name the service in whatever its features got wrong
        raise type(exc)(f"feature service {service.name!r}: {exc.message}", **exc.details) from None
    return pinned


def _impacts(
    catalog: Catalog, services: Mapping[str, FeatureService], applied: Mapping[str, FeatureService],
    changed: set[str],
) -> list[ServiceImpact]:
    """Services not in this apply that pin another version of a definition it changes
    (``changed``) than the one ``catalog`` puts in force."""
    found = []
    for name in sorted(services):
        if name in applied:
            continue
        service = services[name]
        moved = [
            (d, v, catalog.version_of(d)) for d, v in service.pins.items()
            if d in changed and catalog.version_of(d) != v
        ]
        if not moved:
            continue
        try:
            catalog.with_services(services).historical_plan(None, False, service=name)
            problem = None
        except (DefinitionError, LookupError, InputError) as exc:
            problem = str(exc)
        for definition, pinned, new in moved:
            found.append(ServiceImpact(name, definition, pinned, new or "(deleted)", problem))
    return found


def _check_view_against_entities(view: FeatureView, entities: dict[str, Entity]) -> None:
    columns = {c.lower() for c in view.schema} | {view.timestamp_field.lower()}
    if view.created_timestamp_field:
        columns.add(view.created_timestamp_field.lower())
    seen_keys: set[str] = set()
    for name in view.entities:
        if name not in entities:
            raise UnknownEntityError(
                f"feature view {view.name!r} uses entity {name!r}, which is neither registered nor "
                "in this apply; define it with fl.Entity and apply it too",
                name=name,
                view=view.name,
            )
        for key in entities[name].join_keys:
            clash = next((a.name for a in view.aggregations if a.name.lower() == key.lower()), None)
            if clash is not None:
                raise DefinitionError(
                    f"feature view {view.name!r}: aggregation {clash!r} has the name of join key {key!r} "
                    f"of entity {name!r}; pass the Aggregation another name=",
                    view=view.name,
                    name=clash,
                )
            if key.lower() in columns or key.lower() in seen_keys:
                raise DefinitionError(
                    f"feature view {view.name!r}: join key {key!r} of entity {name!r} clashes with "
                    "another column of the view; rename one of them",
                    view=view.name,
                    column=key,
                )
            seen_keys.add(key.lower())


# -- binding featurizer inputs -----------------------------------------------------------


class Binding(NamedTuple):
    """Where a featurizer input comes from."""

    #: "view" (a stored feature or a windowed aggregate of a source view), "request"
    #: (request data) or "column" (a raw column of the view being ingested, for a
    #: write-time featurizer).
    kind: str
    #: The source view's or request source's name (the view itself for "column").
    source: str
    #: The feature, request field or column read (the input's own name).
    field: str


#: What a source offers one name: (binding kind, source name, dtype).
_Offer = tuple[str, str, str]


def odfv_bindings(odfv: OnDemandFeatureView, views: Mapping[str, FeatureView]) -> dict[str, dict[str, Binding]]:
    """For each output feature of ``odfv``: {input: Binding} (kind "view" or "request").
    ``views``: the feature views in force (the on-demand view's sources among them).

    Raises DefinitionError for an input no source provides, one two sources provide,
    or one whose type the source cannot feed."""
    provided: dict[str, list[_Offer]] = {}
    for source in odfv.sources:
        if isinstance(source, RequestSource):
            for f, d in source.schema.items():
                provided.setdefault(f, []).append(("request", source.name, d))
        else:
            # Stored features and windowed aggregates alike (aggregates feed on-demand views).
            for f, d in views[source].feature_schema.items():
                provided.setdefault(f, []).append(("view", source, d))
    return _bind(f"on-demand feature view {odfv.name!r}", odfv.outputs, provided)


def layout_of(view: FeatureView, entities: Mapping[str, Entity]) -> ViewLayout:
    """The view as laid out in the file: its join keys resolved from its entities, and its
    write-time featurizers with their raw input columns. Raises DefinitionError when a
    featurizer input matches no raw column."""
    keys: list[tuple[str, str]] = []
    for name in view.entities:
        keys.extend(entities[name].key_schema.items())
    derived = []
    if view.featurizers:
        bindings = derived_bindings(view, dict(keys))
        for key, fz in view.featurizers.items():
            names = (key,) if isinstance(key, str) else key
            derived.append((fz, names, {param: b.field for param, b in bindings[names[0]].items()}))
    return ViewLayout(view, tuple(keys), tuple(derived))


def derived_bindings(view: FeatureView, key_schema: Mapping[str, str]) -> dict[str, dict[str, Binding]]:
    """For each derived (write-time) feature of ``view``: {input: Binding("column", view,
    raw column)}. ``key_schema``: the view's join keys and dtypes (from its entities).
    Raises DefinitionError for an input that matches no raw column or has the wrong type."""
    columns = {**key_schema, **view.raw_schema, view.timestamp_field: "timestamp"}
    if view.created_timestamp_field:
        columns[view.created_timestamp_field] = "timestamp"
    provided = {column: [("column", view.name, dtype)] for column, dtype in columns.items()}
    return _bind(f"feature view {view.name!r}", view.derived, provided, "raw column of the view")


def _all_bindings(
    odfvs: Mapping[str, OnDemandFeatureView], views: Mapping[str, FeatureView]
) -> dict[str, dict[str, dict[str, Binding]]]:
    return {name: odfv_bindings(odfv, views) for name, odfv in odfvs.items()}


def _bind(
    owner_text: str,
    outputs: Mapping[str, tuple[Featurizer, int]],
    provided: Mapping[str, list[_Offer]],
    where: str = "feature of its sources",
) -> dict[str, dict[str, Binding]]:
    """For each output feature: {input: Binding}.

    ``provided``: field -> [(kind, source name, dtype)] from every source. Raises
    DefinitionError for an input no source provides, one two sources provide, or one
    whose type the source cannot feed (``DType.feeds``: widening is exact)."""
    result: dict[str, dict[str, Binding]] = {}
    for out, (fz, _) in outputs.items():
        bound: dict[str, Binding] = {}
        for param, dtype in fz.inputs:
            options = provided.get(param, [])
            if not options:
                raise DefinitionError(
                    f"{owner_text}: featurizer {fz.name!r} input {param!r} matches no {where} "
                    f"(available: {', '.join(sorted(provided)) or 'none'}); rename the parameter",
                    featurizer=fz.name,
                )
            if len(options) > 1:
                raise DefinitionError(
                    f"{owner_text}: featurizer {fz.name!r} input {param!r} is provided by several sources "
                    f"({', '.join(o[1] for o in options)}); rename one of them",
                    featurizer=fz.name,
                )
            kind, source_name, source_dtype = options[0]
            if DTYPE_OF[source_dtype].feeds != dtype:
                raise DefinitionError(
                    f"{owner_text}: featurizer {fz.name!r} input {param!r} is declared {dtype} but "
                    f"{source_name}:{param} is {source_dtype}; change the type hint",
                    featurizer=fz.name,
                )
            bound[param] = Binding(kind, source_name, param)
        result[out] = bound
    return result


def _check_names_and_sources(
    entities: dict[str, Entity], views: dict[str, FeatureView], odfvs: dict[str, OnDemandFeatureView]
) -> None:
    """The definitions an apply would put in force fit together: views' entities exist, no
    two names differ only in case, on-demand views' sources exist and bind."""
    by_folded_name: dict[str, str] = {}
    for view in views.values():
        _check_view_against_entities(view, entities)
        # A view's tables are named after it, and DuckDB table names ignore case.
        other = by_folded_name.setdefault(view.name.lower(), view.name)
        if other != view.name:
            raise DefinitionError(
                f"feature views {other!r} and {view.name!r} differ only in case, which the "
                "store file cannot tell apart; rename one of them",
                name=view.name,
            )
    for odfv in odfvs.values():
        if odfv.name.lower() in by_folded_name:
            raise DefinitionError(
                f"on-demand feature view {odfv.name!r} has the name of a feature view; rename one of them",
                name=odfv.name,
            )
        for source in odfv.view_sources:
            if source not in views:
                raise UnknownFeatureViewError(
                    f"on-demand feature view {odfv.name!r} uses feature view {source!r}, which is neither "
                    "registered nor in this apply",
                    name=source,
                )
        odfv_bindings(odfv, views)  # raises if an input is unbound or mistyped


def _check_featurizers(views: dict[str, FeatureView], odfvs: dict[str, OnDemandFeatureView]) -> None:
    """Every featurizer an apply brings can be rebuilt from its stored source, and its batch
    and per-request paths agree on a quick seeded sweep (no Hypothesis: see verify)."""
    owned = [(f"on-demand feature view {o.name!r}", o.featurizers) for o in odfvs.values()]
    owned += [(f"feature view {v.name!r}", v.featurizers) for v in views.values() if v.featurizers]
    for owner_text, featurizers in owned:
        for key, fz in featurizers.items():
            _check_rebuildable(owner_text, fz)
            mismatch = fz.verify(examples=QUICK_VERIFY_EXAMPLES, search=False)
            if mismatch is not None:
                raise FeaturizerError(
                    f"{owner_text}: featurizer {fz.name!r} (feature {key!r}) differs between the "
                    f"batch and per-request paths, or fails ({mismatch}); it cannot be applied",
                    featurizer=fz.name,
                    mismatch=mismatch,
                )


def _refuse_if_stored(name: str, problem: str, stored: int) -> None:
    """A breaking change to a view is refused once it holds rows."""
    if stored:
        raise BreakingChangeError(
            f"feature view {name!r}: {problem}, which would break its {stored} stored "
            f"rows; apply it under a new name, or delete the view and its data first "
            f"with store.delete_feature_view({name!r})",
            name=name,
            rows=stored,
        )
