"""Store: the one object users hold. Composes the registry, offline history, online
values and read planning; it decides nothing itself (see docs/architecture.md).

No printing, no CLI, no HTTP here: every user operation is a method.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import duckdb
import pyarrow as pa

from . import arguments, export, model_records, offline, statistics, writes
from ._version import __version__
from .connection import StoreConnection
from .consistency import read_log, replay
from .db import checkpoint as fold_wal
from .db import fold_copy, run, transaction, translating
from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from .errors import (
    FeatureliteError,
    InputError,
    ManifestError,
    NotFoundError,
    StoreError,
    StoreLockedError,
    UnknownFeatureViewError,
)
from .export import ExportResult
from .freshness import ServingStats, freshness_report
from .historical import check_entity_df, manifest_for, training_set
from .layout import ViewLayout
from .lineage import Lineage, ModelRecord, build_lineage, check_model_name
from .lookup import StateWindows, read_online, resolve_future
from .manifest import Manifest
from .online import END_PARAM, OnlineState
from .onlineindex import OnlineIndex
from .planning import Catalog, OnlinePlan
from .references import parse_references
from .registry import ApplyResult, Registry, init_or_check, layout_of, pending_online, set_seq_floor, store_id
from .reports import ConsistencyReport, FreshnessReport
from .results import IngestResult, MaterializeResult, OnlineResponse, VerifyResult
from .search import KINDS as SEARCH_KINDS
from .search import SearchHit
from .search import search as search_definitions
from .serving_lock import server_holding
from .servinglog import Observer, ServingLog, log_table, observer_for
from .sources import DataSource, to_table
from .statistics import PERIODS as STATS_PERIODS
from .statistics import StatsQuestion, ViewStats
from .types import as_utc, utc_naive
from .verifying import verify_view

__all__ = ["Store", "open"]

Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService
INGEST_BATCH_ROWS = writes.INGEST_BATCH_ROWS


def open(path: str | os.PathLike[str] = ":memory:", *, read_only: bool = False) -> Store:
    """Open the featurelite store in ``path``, creating the file if it is missing.

    ``":memory:"`` gives a store that lives only in this process. ``read_only=True``
    opens an existing store for reading; several processes may do so at once, but not
    while another process has it open for writing.
    """
    return Store(path, read_only=read_only)


class Store:
    """A feature store in one DuckDB file: registry, offline history and online values.

    Use :func:`featurelite.open` to get one. A Store is a context manager; ``close()``
    releases the file. Methods are safe to call from several threads.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self.read_only = read_only
        #: Per stored view: its online state (index, lag, caches).
        self._states: dict[str, OnlineState] = {}
        #: What online reads of each plan record (serving logs, value ages), by id(plan).
        self._observers: dict[int, tuple[OnlinePlan, Observer | None]] = {}
        self._observing = False
        #: Served value ages and push-to-visible latencies since the store was opened.
        self.serving_stats = ServingStats()
        #: Statistics computed or read from the file, by (view, version, question): the
        #: file's cache parsed once (and a read-only store's only cache).
        self._stats_memo: dict[tuple[str, str, str], ViewStats] = {}
        #: Statistics being computed now (each in a read transaction of its own cursor, which
        #: DuckDB's CHECKPOINT cannot run beside), and each view's generation: bumped when
        #: the view is deleted, so a computation that began before is never cached after.
        self._stats_running = 0
        self._stats_done: threading.Condition | None = None
        self._generations: dict[str, int] = {}
        try:
            self._conn = StoreConnection(
                self.path, self, read_only=read_only, on_shut=lambda: OnlineState.drop_indexes(self._states)
            )
        except StoreLockedError as exc:
            server = server_holding(self.path)
            if server is None:
                raise
            raise StoreLockedError(
                f"store {self.path!r} is served by `featurelite serve` (pid {server['pid']}) at {server['url']}; "
                f"use featurelite.connect({server['url']!r}) to read, push and build training sets through it "
                "(or its snapshot() for a local read-only copy), or stop the server first",
                path=self.path,
            ) from exc
        with self._conn.opening():
            con = self._conn.get()
            init_or_check(con, self.path, read_only=read_only, version=__version__)
            #: The store's identity, recorded in the manifests of its training sets.
            self.store_id = store_id(con, read_only=read_only)
            self._registry = Registry()
            self._registry.load(con)
            self._refresh()
            pending = pending_online(con)
            for name, state in self._states.items():
                state.pending, state.ties = pending.get(name), offline.has_tie_losers(con, state.layout)
            self._seq = writes.SequenceCounter(con, self._catalog.layouts.values())
        self._windows = StateWindows(self._states, self._conn.lock, self._conn.get)
        #: The serving log's queue and writer (a read-only store logs nothing).
        self._log: ServingLog | None = None if read_only else ServingLog(self._write_log, self.serving_stats)

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Release the file. Further calls raise StoreClosedError. Never raises: a
        failure while bringing the online tables up to date leaves the lag recorded in
        the file (the next open serves it right), and the file is released regardless.
        Reads still queued for a serving log are written first."""
        log = getattr(self, "_log", None)
        if log is not None:  # (also after a fatal error closed the file: the writer stops)
            log.close()
        self._conn.close(lambda con: writes.catch_up(con, self._states.values()))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        conn = getattr(self, "_conn", None)
        return conn is None or conn.closed

    def checkpoint(self) -> None:
        """Bring every online table up to date with its history and fold DuckDB's
        write-ahead log into the store file, so the file alone holds every committed write
        in its final form (``close()`` does this too)."""
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            writes.catch_up(con, self._states.values())
            # A CHECKPOINT cannot run beside a transaction: wait for statistics being
            # computed (seconds at most) to finish.
            self._stats_condition().wait_for(lambda: self._stats_running == 0)
            # committed=True: whatever the checkpoint could not fold in stays committed in
            # the write-ahead log and is replayed on the next open.
            fold_wal(con, f"checkpoint of store {self.path!r}", committed=True)

    def _stats_condition(self) -> threading.Condition:
        """Signalled when a statistics computation ends (over the connection's lock)."""
        if self._stats_done is None:
            self._stats_done = threading.Condition(self._conn.lock)
        return self._stats_done

    def _fold_after(self, con: duckdb.DuckDBPyConnection, what: str) -> None:
        """Fold the write-ahead log into the file after ``what`` committed, unless
        statistics are being computed (a CHECKPOINT cannot run beside their transaction):
        then a later checkpoint (or close) folds it."""
        if self._stats_running == 0:
            fold_wal(con, what, committed=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("read-only" if self.read_only else "open")
        return f"<featurelite.Store {self.path!r} {state}>"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (for inspection; writes bypass featurelite's checks)."""
        return self._conn.get()

    def _refresh(self) -> None:
        """Rebuild the catalog from the registry. Readers do not take the lock: the new
        catalog (and with it an empty plan cache) is swapped in whole."""
        registry = self._registry
        catalog = registry.catalog()
        layouts = catalog.layouts
        OnlineState.follow(self._states, layouts)  # a new view has its state before a plan can name it
        self._catalog = catalog
        OnlineState.prune(self._states, layouts)
        self._observers = {}
        self._observing = any(v.log is not None or v.freshness is not None for v in registry.views.values()) or \
            any(s.log is not None for s in registry.services.values())

    def _state(self, view: str) -> OnlineState:
        state = self._states.get(view)
        if state is None:
            raise self._catalog.unknown(view)
        return state

    # -- definitions ----------------------------------------------------------------

    def apply(self, objects: Iterable[Definition] | Definition, *, dry_run: bool = False) -> ApplyResult:
        """Register entities, feature views, on-demand views and feature services, creating
        their tables.

        Idempotent: applying the same definitions again changes nothing. Returns which
        definitions were added, changed and unchanged, and which feature services (not in
        this apply) pin an older version of a definition it changes. A change that would
        break stored data (a dtype change, a removed feature or key) raises
        BreakingChangeError and changes nothing. A feature service is pinned to the version
        of every definition it reads as they are after this apply. With ``dry_run=True``
        nothing is written.
        """
        dry_run = arguments.flag(dry_run, "dry_run")  # (what objects may be: registry.plan checks)
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.get() if dry_run else self._conn.writable()
            if isinstance(objects, (Entity, FeatureView, OnDemandFeatureView, FeatureService)):
                objects = [objects]
            old = self._catalog.layouts
            stored = lambda view: offline.row_count(con, old[view]) if view in old else 0  # noqa: E731 (rows a change would break)
            result, new = self._registry.plan(objects, stored)
            if dry_run or not result:
                return replace(result, dry_run=True) if dry_run else result
            with translating("apply (nothing was changed)", committed=False), transaction(con):
                self._registry.record(con, result, new, _now())
                for name, view in new.views.items():
                    writes.sync_tables(con, old.get(name), layout_of(view, new.entities))
            self._registry.adopt(*new)
            self._refresh()
            # Definitions change rarely: fold them into the file at once. The change is
            # committed by now, and the error (a full disk) says so.
            self._fold_after(con, "apply")
            return result

    def delete_feature_view(self, name: str) -> None:
        """Remove a feature view and all its stored data (history and online), or an
        on-demand feature view. A view that an on-demand view reads cannot be removed first."""
        arguments.name(name, "the view to delete")
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            on_demand = name in self._registry.odfvs
            layout = None if on_demand else self._catalog.layout(name)
            self._registry.check_deletable(name)
            kind = "on_demand_feature_view" if on_demand else "feature_view"
            what = f"deleting view {name!r} (nothing was changed)"
            with translating(what, view=name, committed=False), transaction(con):
                if layout is not None:
                    writes.drop_tables(con, layout)
                    set_seq_floor(con, self._seq.next)  # its sequence numbers stay used (manifests cite them)
                    statistics.forget(con, name)  # a view created again under the name starts afresh
                self._registry.record_delete(con, kind, name, _now())
            self._registry.remove(kind, name)
            self._stats_memo = {k: v for k, v in self._stats_memo.items() if k[0] != name}
            self._generations[name] = self._generations.get(name, 0) + 1
            self._refresh()

    def delete_feature_service(self, name: str) -> None:
        """Remove a feature service (its versions stay in the registry's history)."""
        arguments.name(name, "the feature service to delete")
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            self._catalog.service(name)  # raises for an unknown service
            with translating(f"deleting feature service {name!r} (nothing was changed)", committed=False), \
                    transaction(con):
                self._registry.record_delete(con, "feature_service", name, _now())
            self._registry.remove("feature_service", name)
            self._refresh()

    def list_feature_services(self) -> list[FeatureService]:
        """Registered feature services (with their pinned versions), by name."""
        self._conn.get()
        return [self._registry.services[n] for n in sorted(self._registry.services)]

    def get_feature_service(self, name: str) -> FeatureService:
        """The registered feature service ``name``, with its pinned versions."""
        self._conn.get()
        return self._catalog.service(arguments.name(name, "the feature service"))

    def list_entities(self) -> list[Entity]:
        """Registered entities, by name."""
        self._conn.get()
        return [self._registry.entities[n] for n in sorted(self._registry.entities)]

    def list_feature_views(self) -> list[FeatureView]:
        """Registered feature views, by name."""
        self._conn.get()
        return [self._registry.views[n] for n in sorted(self._registry.views)]

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        """Registered on-demand feature views, by name."""
        self._conn.get()
        return [self._registry.odfvs[n] for n in sorted(self._registry.odfvs)]

    def get_entity(self, name: str) -> Entity:
        """The registered entity ``name``."""
        self._conn.get()
        return self._registry.entity(arguments.name(name, "the entity"))

    def get_feature_view(self, name: str) -> FeatureView:
        """The registered feature view ``name``."""
        self._conn.get()
        return self._registry.view(arguments.name(name, "the feature view"))

    def search(
        self, text: str = "", *, tags: Mapping[str, str] | None = None, kinds: Sequence[str] | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Entities, feature views, features, on-demand views, feature services and
        featurizers matching every word of ``text`` in their name, description, tags or
        owner (any, for blank text), with every tag in ``tags`` (a feature has its view's
        tags and its own), best first: a word in the name scores most. ``kinds`` narrows to
        some of ``featurelite.search.KINDS``."""
        if not isinstance(text, str):
            raise InputError(f"text must be a string of words to search for, not {type(text).__name__}")
        if tags is not None and (not isinstance(tags, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
            raise InputError("tags must map tag names to values, both strings: tags={'team': 'growth'}")
        if kinds is not None:
            unknown = sorted(set(arguments.names(kinds, "kinds")) - set(SEARCH_KINDS))
            if unknown:
                raise InputError(f"kinds {unknown} are not searchable; use some of {', '.join(SEARCH_KINDS)}")
        limit = arguments.whole_number(limit, "limit")
        self._conn.get()
        registry = self._registry
        return search_definitions(
            text, registry.entities.values(), registry.views.values(), registry.odfvs.values(),
            registry.services.values(), tags=tags, kinds=None if kinds is None else arguments.names(kinds, "kinds"),
            limit=limit,
        )

    def lineage(self, name: str | None = None) -> Lineage:
        """How definitions and recorded models depend on each other: entities key views,
        featurizers compute features, views feed on-demand views, services read views at
        the versions they pin, models were trained on services (or views). With ``name`` (a
        definition, featurizer or model name, or a node id such as ``"feature_service:fraud"``),
        only what is upstream and downstream of it."""
        if name is not None:
            arguments.name(name, "the definition to trace")
        with self._conn.lock, translating("reading the store's lineage"):
            registry = self._registry
            graph = build_lineage(registry.entities.values(), registry.views.values(), registry.odfvs.values(),
                                  registry.services.values(), model_records.read(self._conn.get()))
        if name is None:
            return graph
        ids = [n.id for n in graph.nodes]
        root = name if name in ids else next(
            (f"{kind}:{name}" for kind in _LINEAGE_LOOKUP if f"{kind}:{name}" in ids), None)
        if root is None:
            models = [n for n in graph.nodes if n.kind == "model" and n.name.partition("#")[0] == name]
            root = f"model:{max(models, key=lambda n: int(n.version or 0)).name}" if models else None
        if root is None:
            raise NotFoundError(
                f"nothing in the store is named {name!r}; give a feature view, on-demand view, feature service, "
                "entity, featurizer or model name (store.search finds names)"
            )
        return replace(graph, root=root, nodes=tuple(n for n in graph.nodes if n.id in _kept(graph, root)),
                       edges=tuple(e for e in graph.edges if {e.source, e.target} <= _kept(graph, root)))

    def record_model(
        self, name: str, training_set: pa.Table | pa.Schema | Manifest, *, uri: str | None = None,
        description: str = "", tags: Mapping[str, str] | None = None,
    ) -> ModelRecord:
        """Record that model ``name`` was trained on ``training_set`` (the table
        ``get_historical_features`` returned, its schema or its :class:`Manifest`), living at
        ``uri`` (an MLflow model URI, a path), so lineage shows which service and versions
        it was trained on. Each record of a name gets the next number; records are never
        changed. The training set must come from this store."""
        arguments.name(name, "the model")
        check_model_name(name)
        if uri is not None and not isinstance(uri, str):
            raise InputError(f"uri must be text (where the model lives), not {type(uri).__name__}")
        if not isinstance(description, str):
            raise InputError(f"description must be text, not {type(description).__name__}")
        if tags is not None and (not isinstance(tags, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
            raise InputError("tags must map tag names to values, both strings: tags={'team': 'growth'}")
        manifest = training_set if isinstance(training_set, Manifest) else Manifest.from_table(training_set)
        try:  # what lineage will read of it, read now: a record is never changed
            parse_references(list(manifest.references))
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in manifest.pins.items()):
                raise InputError("its pins are not all 'definition': 'version' text")
        except FeatureliteError as exc:
            raise ManifestError(
                f"the training set of model {name!r} does not say which features it read ({exc.message}); record "
                "a training set (or its manifest) as get_historical_features built it"
            ) from None
        if manifest.store_id != self.store_id:
            raise ManifestError(
                f"the training set of model {name!r} was built from another store ({manifest.store_id}), not "
                f"{self.path!r} ({self.store_id}); record it in the store it was built from"
            )
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            with translating(f"recording model {name!r} (nothing was changed)", committed=False), transaction(con):
                return model_records.insert(con, name, manifest, uri=uri, description=description, tags=tags or {})

    def list_models(self, name: str | None = None) -> list[ModelRecord]:
        """Recorded models (every record of ``name``), by name then number."""
        if name is not None:
            arguments.name(name, "the model")
        with self._conn.lock, translating("reading the recorded models"):
            return model_records.read(self._conn.get(), name)

    def stats(
        self, view: str, *, since: datetime | None = None, until: datetime | None = None, period: str | None = None,
        refresh: bool | None = None,
    ) -> ViewStats:
        """Statistics of feature view ``view``'s stored features: per feature, over its
        history rows with ``since <= event time < until`` and over its online values, the
        count, null rate, distinct estimate, min, max, mean, std, quantiles, a histogram (the
        most frequent values for text and booleans), and the same per ``period`` ("day" or
        "week"; default: days over up to 120 days of history, else weeks) for drift.

        Cached in the store file: a cached result is returned (``.cached``) until the rows
        ingested after it number a tenth of those it covered; ``refresh=True`` computes
        now, ``refresh=False`` returns any cached result however old. Computing runs beside
        ingests and reads (on its own cursor, outside the store's lock): it never holds
        them up. A read-only store caches in memory only."""
        arguments.name(view, "the feature view")
        if period is not None and period not in STATS_PERIODS:
            raise InputError(f"period {period!r} is not one of {', '.join(STATS_PERIODS)}; leave it out to choose "
                             "by the history's span")
        if refresh is not None and not isinstance(refresh, bool):
            raise InputError(f"refresh must be True, False or None (recompute when stale), not {refresh!r}")
        start = None if since is None else _utc(arguments.moment_us(since, "since"))
        end = None if until is None else _utc(arguments.moment_us(until, "until"))
        if start is not None and end is not None and start >= end:
            raise InputError(f"since ({start.isoformat()}) must be before until ({end.isoformat()})")
        question = StatsQuestion(start, end, period)
        with self._conn.lock, translating(f"reading the statistics of view {view!r}", view=view):
            con = self._conn.get()
            layout = self._stats_layout(view)
            key = (view, layout.view.version, question.key)
            found = None if refresh else self._stats_memo.get(key) or statistics.cached(con, layout, question)
            if found is not None and (refresh is False or not statistics.is_stale(con, layout, found)):
                self._stats_memo[key] = found
                return replace(found, cached=True)
            cursor = con.cursor()
            generation = self._generations.get(view, 0)
            self._stats_running += 1
        try:
            with translating(f"computing the statistics of view {view!r}", view=view):
                run(cursor, "BEGIN TRANSACTION")  # one snapshot: every number describes the same rows
                computed = statistics.compute(cursor, layout, question, datetime.now(timezone.utc))
                run(cursor, "COMMIT")
        finally:
            cursor.close()
            with self._conn.lock:
                self._stats_running -= 1
                self._stats_condition().notify_all()
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.get()
            current = self._catalog.layouts.get(view)
            if current is None or current.view.version != layout.view.version or \
                    self._generations.get(view, 0) != generation:
                return computed  # the view changed (or was deleted) meanwhile: nothing to cache
            if not self.read_only:
                with translating(f"caching the statistics of view {view!r}", view=view), transaction(con):
                    statistics.store(con, layout, question, computed)
            self._stats_memo[key] = computed
        return computed

    def _stats_layout(self, view: str) -> ViewLayout:
        if view in self._registry.services and view not in self._registry.views:
            reads = ", ".join(sorted(self._registry.services[view].pins)) or "none"
            raise InputError(
                f"{view!r} is a feature service: statistics describe a feature view's stored values; ask for "
                f"those of the views it reads ({reads})", view=view,
            )
        if view in self._registry.odfvs:
            sources = ", ".join(self._registry.odfvs[view].view_sources) or "none"
            raise InputError(
                f"{view!r} is an on-demand view: it stores no values to describe (its features are computed per "
                f"request); ask for the statistics of the feature views it reads ({sources})", view=view,
            )
        return self._catalog.layout(view)

    def recent_rows(self, view: str, limit: int = 10) -> pa.Table:
        """The ``limit`` rows most recently ingested into feature view ``view``'s history
        (newest first), as stored: join keys, features, event time."""
        arguments.name(view, "the feature view")
        limit = arguments.whole_number(limit, "limit")
        with self._conn.lock, translating(f"reading the recent rows of view {view!r}", view=view):
            layout = self._stats_layout(view)
            return offline.recent_rows(self._conn.get(), layout, limit)

    def list_versions(self, name: str, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every version of definition ``name`` ever applied (oldest first), with its spec
        and when it was first applied."""
        arguments.name(name, "the definition")
        with self._conn.lock, translating("reading the registry"):
            return self._registry.versions(self.con, name, kind)

    def describe(self, name: str) -> dict[str, Any]:
        """A feature view's definition, version and data statistics, an on-demand feature
        view's definition and version, or a feature service's features and pinned versions
        (``kind`` tells which)."""
        arguments.name(name, "the view to describe")
        with self._conn.lock, translating(f"describing view {name!r}", view=name):
            con = self._conn.get()
            service = self._registry.services.get(name)
            if service is not None and name not in self._catalog.layouts and name not in self._registry.odfvs:
                return {
                    "name": name, "kind": "feature_service", "version": service.version, "spec": service.spec(),
                    "pins": dict(service.pins),
                }
            odfv = self._registry.odfvs.get(name)
            if odfv is not None:
                return {"name": name, "kind": "on_demand_feature_view", "version": odfv.version, "spec": odfv.spec()}
            layout = self._catalog.layout(name)
            rows, first, last = offline.stats(con, layout)
            return {
                "name": name, "kind": "feature_view", "version": layout.view.version, "spec": layout.view.spec(),
                "join_keys": dict(layout.keys), "history_rows": rows, "online_rows": self._state(name).online_rows(con),
                "first_event": as_utc(first), "last_event": as_utc(last),
            }

    # -- writes ---------------------------------------------------------------------

    def ingest(self, view: str, data: DataSource, *, batch_rows: int = INGEST_BATCH_ROWS) -> IngestResult:
        """Append ``data`` to ``view``'s history and update its online values, atomically.

        ``data``: a pyarrow Table / RecordBatch / RecordBatchReader, a pandas or polars
        DataFrame (anything with the Arrow C stream interface), or the path of a Parquet
        or CSV file. Columns: the view's join keys, features, ``timestamp_field`` and, if
        declared, ``created_timestamp_field``; no others. Timestamps with a zone are
        converted to UTC; naive timestamps are taken as UTC.

        The input streams through in batches of ``batch_rows``; either all of it lands
        (history and online together) or, on any error, none of it does.
        """
        started = time.perf_counter()
        arguments.name(view, "the view to ingest into")
        batch_rows = arguments.whole_number(batch_rows, "batch_rows")
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            catalog = self._catalog
            reader = writes.open_input(catalog.layout(view), data)
            rows = writes.ingest(con, self._state(view), reader, batch_rows, self._seq, catalog.layouts.values())
        if rows:  # readable online from here on: the push-to-visible latency
            self.serving_stats.observe_push(view, time.perf_counter() - started)
        return IngestResult(view, rows)

    def materialize(
        self, views: str | Sequence[str] | None = None, *, end_date: datetime | None = None
    ) -> list[MaterializeResult]:
        """Rebuild online values from history, for recovery or after a definition change.

        For each view (default: all), the online table becomes exactly what ingest-time
        maintenance produces from the history, counting only events at or before
        ``end_date`` if given.
        """
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            names = sorted(self._catalog.layouts) if views is None else arguments.names(views, "views")
            states = [self._state(name) for name in names]
            params: dict[str, Any] | None = None  # end_date is bound, never pasted into the SQL text
            if end_date is not None:
                arguments.moment_us(end_date, "end_date")
                params = {END_PARAM: utc_naive(end_date)}
            counts = writes.materialize(con, states, params)
            # The rebuilt online tables are committed by now; fold them into the file.
            self._fold_after(con, "materialize")
            return [MaterializeResult(name, count) for name, count in counts]

    # -- reads ----------------------------------------------------------------------

    def warm(self, views: str | Sequence[str] | None = None) -> None:
        """Load the in-memory online index of each view (default: every feature view) now,
        so the first read of a view does not pay for loading it."""
        names = sorted(self._catalog.layouts) if views is None else arguments.names(views, "views")
        for name in names:
            self._index(name)

    def prepare_to_serve(self) -> None:
        """Get ready to serve a long run of reads and small pushes: load every online index
        (:meth:`warm`) and let DuckDB's write-ahead log grow to 256 MB before it is folded
        into the file (16 MB by default), so a push rarely pays for a checkpoint. Closing
        the store checkpoints anyway."""
        with self._conn.lock, translating("preparing to serve"):
            run(self.con, "SET checkpoint_threshold = '256MB'")
        self.warm()

    def _index(self, view: str) -> OnlineIndex:
        state = self._states.get(view)
        index = None if state is None else state.index
        if index is not None:  # the hot path: loaded
            return index
        with self._conn.lock, translating(f"loading the online values of view {view!r}", view=view):
            return self._state(view).load_index(self.con)  # the view as it is now, under the lock

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        manifest: Manifest | None = None,
        request_data: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """Latest feature values for each entity, from the in-memory online index.

        ``entity_rows`` is a list of ``{join key: value}`` dicts, or one dict of
        ``{join key: [values]}``. ``features`` are ``"view:feature"`` references (or
        ``"view@version:feature"``); or pass ``service=`` to read a feature service at its
        pinned versions. A value is the one a point-in-time lookup at ``now`` (default: the
        current time) returns; a value older than its view's ttl is ``None`` with status
        ``OUTSIDE_MAX_AGE``. Features of on-demand views are computed per entity by their
        featurizers, from those values and ``request_data`` (``{field: [value per entity]}``).

        ``manifest`` (a training set's :class:`Manifest`) serves exactly the features and
        versions the set was built with, and refuses (ManifestError) when ``features`` or
        ``service`` would serve anything else, or the manifest is from another store.
        """
        self._conn.get()
        catalog = self._catalog
        if manifest is not None:
            plan = self._manifest_plan(catalog, manifest, features, service, full_feature_names)
        elif service is not None:
            if features is not None:
                raise InputError("pass either features or service=, not both")
            plan = catalog.service_plan(service, full_feature_names)
        else:
            plan = catalog.online_plan(features, full_feature_names)
        now_us = time.time_ns() // 1000 if now is None else arguments.moment_us(now, "now")
        log = self._log
        observer: Observer | None = None
        draw: float | None = None
        times: dict[str, list[int | None]] | None = None
        # What the read can see: rows ingested after this position are late for it.
        position = self._seq.next - 1
        if self._observing and log is not None:  # a serving log or value ages: is this read sampled?
            entry = self._observers.get(id(plan))
            if entry is None or entry[0] is not plan:  # (an id can be reused once a plan is gone)
                entry = self._observe(plan, service if manifest is None else None)
            observer = entry[1]
            if observer is not None:
                draw = log.sample(observer)
                if draw is not None:
                    times = {}
        response = read_online(
            plan, self._states, self._index, entity_rows, request_data, now_us, self._resolve_future, self._windows,
            times,
        )
        if times is not None and log is not None and observer is not None and draw is not None:
            log.capture(observer, draw, times, response, request_data, now_us, position)
        return response

    def _observe(self, plan: OnlinePlan, service: str | None) -> tuple[OnlinePlan, Observer | None]:
        """What reads of ``plan`` record, by the definitions in force (remembered per plan)."""
        registry = self._registry
        entry = (plan, observer_for(
            plan, service, registry.views, registry.services, registry.odfvs, self._catalog.layouts
        ))
        observers = self._observers
        if len(observers) >= 4096:
            observers.clear()
        observers[id(plan)] = entry
        return entry

    def _write_log(self, write: Callable[[duckdb.DuckDBPyConnection], None]) -> None:
        with self._conn.lock, self._conn.closing_if_fatal():
            con = self._conn.writable()
            with translating("writing the serving log (nothing was written)", committed=False), transaction(con):
                write(con)

    def _manifest_plan(
        self, catalog: Catalog, manifest: Manifest, features: Sequence[str] | None, service: str | None,
        full_feature_names: bool,
    ) -> OnlinePlan:
        """The plan that serves ``manifest``'s features at its versions, after checking that
        what the caller asked for (if anything) is what the manifest pinned."""
        self._check_manifest(manifest)
        if features is not None or service is not None:
            asked = catalog.online_plan(features, full_feature_names) if service is None else \
                catalog.service_plan(service, full_feature_names)
            if features is not None and service is not None:
                raise InputError("pass either features or service=, not both")
            _refuse_other_request(manifest, self._asked(catalog, features, service), asked.pins, "serving")
        return catalog.pinned_plan(list(manifest.references), manifest.pins, manifest.full_feature_names, manifest.key)

    @staticmethod
    def _asked(catalog: Catalog, features: Sequence[str] | str | None, service: str | None) -> set[str]:
        """The features a request names (``view:feature``, versions aside)."""
        refs = catalog.service(service).features if service is not None else features
        return {ref.plain for ref in parse_references(refs)}

    def _check_manifest(self, manifest: object) -> None:
        if not isinstance(manifest, Manifest):
            raise ManifestError(
                f"manifest must be a featurelite.Manifest (Manifest.from_table(training_set)), "
                f"not {type(manifest).__name__}"
            )
        if manifest.store_id != self.store_id:
            raise ManifestError(
                f"the manifest is from another store ({manifest.store_id}), not this one ({self.store_id}, "
                f"{self.path!r}); open the store the training set was built from"
            )

    def _resolve_future(
        self, layout: ViewLayout, features: list[str], keys: list[Any], future: list[int], now_us: int,
        values: list[list[Any]], statuses: list[list[str]], times: list[int | None] | None,
    ) -> None:
        with self._conn.lock:
            state = self._state(layout.name)
            resolve_future(
                self.con, layout, features, keys, future, now_us, values, statuses, ties=state.ties, times=times
            )

    def get_historical_features(
        self,
        entity_df: DataSource,
        features: Sequence[str] | None = None,
        *,
        service: str | None = None,
        as_of: Manifest | None = None,
        timestamp_field: str | None = None,
        full_feature_names: bool = False,
    ) -> pa.Table:
        """A point-in-time correct training set, carrying its :class:`Manifest`.

        ``entity_df`` (a pyarrow Table, pandas / polars DataFrame or file path) has the
        join keys of every requested view and an event timestamp column
        (``timestamp_field``, default ``event_timestamp`` or the only timestamp column).
        For every row, in input order and with duplicates kept, each feature is taken
        from the latest history row of the same entity whose event time is at or before
        the row's timestamp (and within the view's ttl); ties go to the latest created
        timestamp, then to the row ingested last. No match gives null; no row is dropped.
        Other columns of ``entity_df`` are carried through unchanged.

        ``features`` are ``"view:feature"`` (or ``"view@version:feature"``) references; or
        pass ``service=`` to read a feature service at its pinned versions. ``as_of`` (a
        manifest) rebuilds that training set: its features at its versions, from the rows
        ingested up to its ingest position only (late events and backfills since are left
        out), so the same ``entity_df`` gives the same digest. The result's schema metadata
        holds the manifest (``Manifest.from_table(result)``).
        """
        if timestamp_field is not None:
            arguments.name(timestamp_field, "timestamp_field")
        with self._conn.lock:
            con = self._conn.get()
            catalog = self._catalog
            up_to: int | None = None
            if as_of is not None:
                self._check_manifest(as_of)
                if features is not None or service is not None:
                    asked = catalog.historical_plan(features, full_feature_names, service=service)
                    _refuse_other_request(as_of, self._asked(catalog, features, service), asked.pins, "rebuilding")
                plan = catalog.historical_plan(list(as_of.references), as_of.full_feature_names, pins=as_of.pins)
                up_to = as_of.ingest_position
                named = (as_of.service, as_of.service_version or "") if as_of.service else None
            else:
                plan = catalog.historical_plan(features, full_feature_names, service=service)
                named = None if plan.service is None else (plan.service.name, plan.service.version)
            entity = to_table(entity_df)
            ts_name = check_entity_df(entity, plan.order, timestamp_field, full_feature_names)
            table = training_set(con, plan, entity, ts_name, lambda view: self._state(view).ties, up_to=up_to)
            position = self._seq.next - 1 if up_to is None else up_to
            manifest = manifest_for(
                plan, table, entity, ts_name, store_id=self.store_id, position=position, version=__version__,
                service=named,
            )
            return manifest.attach(table)

    # -- production: the serving log, freshness, consistency, snapshots ---------------

    def flush_log(self) -> int:
        """Write the reads queued for serving logs now (a writer thread does so every
        second anyway); the number of log rows written."""
        self._conn.get()
        return 0 if self._log is None else self._log.flush()

    def freshness(self, *, now: datetime | None = None) -> FreshnessReport:
        """How fresh every feature view is at ``now`` (default: the current time): its
        newest event, the age of that value against the view's ``freshness=`` SLO
        (``report.breaches``), and, since the store was opened, the ages of the values
        sampled reads served and how long ingests took to become readable online."""
        moment = datetime.now(timezone.utc) if now is None else _utc(arguments.moment_us(now, "now"))
        if self._log is not None:
            self._log.flush_quietly()  # the ages of the reads still queued
        with self._conn.lock, translating("reading the views' freshness"):
            con = self._conn.get()
            views = [self._registry.views[n] for n in sorted(self._registry.views)]
            return freshness_report(con, self._catalog.layouts, views, self.serving_stats, moment)

    def consistency(
        self, target: str, *, since: datetime | None = None, until: datetime | None = None, examples: int = 5
    ) -> ConsistencyReport:
        """Replay the serving log of feature view or service ``target``: every logged row
        (with ``since <= request time < until``) is asked of the training-set path at its
        logged request time, and each feature's served value is compared with the
        training value bit for bit. Differences are counted per feature, with the first
        ``examples`` shown and why they differ when that is known (a late event, a changed
        definition; see :mod:`featurelite.consistency`)."""
        arguments.name(target, "the feature view or service to replay")
        examples = arguments.whole_number(examples, "examples", minimum=0)
        since = None if since is None else _utc(arguments.moment_us(since, "since"))
        until = None if until is None else _utc(arguments.moment_us(until, "until"))
        if since is not None and until is not None and since >= until:
            raise InputError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
        self.flush_log()
        with self._conn.lock, translating(f"replaying the serving log of {target!r}"):
            con = self._conn.get()
            kind, keys, features, sources = self._replayed(target)
            table = log_table(kind, target)
            if run(con, "SELECT 1 FROM duckdb_tables() WHERE table_name = ?", [table]):
                log = read_log(con, table, since, until)
            elif self._logs(kind, target):
                log = pa.table({})  # declared, nothing served yet
            else:
                what = "feature service" if kind == "service" else "feature view"
                raise InputError(
                    f"{what} {target!r} has no serving log; declare it with log=True (or "
                    f"log=featurelite.ServingLog(sample_rate=...)), apply it, and serve reads to replay"
                )
            pins = dict(self._catalog.historical_plan(list(features.values()), True).pins)

            def build(entity: pa.Table, refs: list[str], ts: str) -> pa.Table:
                return self.get_historical_features(entity, refs, timestamp_field=ts, full_feature_names=True)

            return replay(
                con, log, target=target, kind="feature_" + kind, keys=keys,
                features=features, pins=pins, sources=sources, layouts=self._catalog.layouts, training_set=build,
                since=since, until=until, examples=examples,
            )

    def _logs(self, kind: str, name: str) -> bool:
        """Whether the feature view or service ``name`` declares a serving log."""
        found = (self._registry.services if kind == "service" else self._registry.views).get(name)
        return found is not None and found.log is not None

    def _replayed(self, target: str) -> tuple[str, dict[str, pa.DataType], dict[str, str], dict[str, list[str]]]:
        """(kind, join keys, {log column: reference to train with}, {definition: stored
        views behind it}) of the logged ``target``: a service (its features at the versions
        it pins now) or a feature view (its features now). A name that is both is the
        service if it logs, else the view."""
        registry = self._registry
        service = registry.services.get(target)
        view = registry.views.get(target)
        if service is not None and (service.log is not None or view is None):
            refs = parse_references(list(service.features))
            kind = "service"
            features = {f"{r.view}:{r.feature}": f"{r.view}@{service.pins[r.view]}:{r.feature}" for r in refs}
            plan = self._catalog.service_plan(target, False)
            keys = {k: plan.types[k] for k in plan.key_names}
        elif view is not None:
            kind = "view"
            features = {f"{target}:{f}": f"{target}:{f}" for f in [*view.schema, *view.aggregation_schema]}
            keys = self._catalog.layouts[target].keys_arrow_types()
        elif target in registry.odfvs:
            serving = sorted(n for n, s in registry.services.items() if any(
                r.view == target for r in parse_references(list(s.features))))
            raise InputError(
                f"{target!r} is an on-demand view: its reads are logged by the feature services that serve it "
                f"({', '.join(serving) or 'none yet'}); replay one of those (declared with log=True)",
                view=target,
            )
        else:
            views = ", ".join(sorted(registry.views)) or "none"
            services = ", ".join(sorted(registry.services)) or "none"
            raise UnknownFeatureViewError(
                f"no feature view or feature service is named {target!r} (views: {views}; services: {services})",
                view=target,
            )
        sources = {name: [name] for name in registry.views}
        sources.update({name: list(odfv.view_sources) for name, odfv in registry.odfvs.items()})
        return kind, keys, features, sources

    def snapshot(self, path: str | os.PathLike[str]) -> str:
        """Write a consistent copy of the store file to ``path`` (which must not exist),
        complete on its own (no write-ahead log): open it read-only anywhere, for example
        while this store serves. It has this store's identity, so training sets built from
        it carry manifests this store accepts. Returns the path written."""
        target = os.fspath(path)
        if self.path == ":memory:":
            raise StoreError("an in-memory store has no file to snapshot; open a store file to take snapshots")
        if os.path.exists(target):
            raise InputError(f"{target!r} exists; give a new path for the snapshot (it is never overwritten)")
        if os.path.realpath(target) in {os.path.realpath(self.path), os.path.realpath(self.path + ".wal")}:
            raise InputError(f"{target!r} is the store itself; give another path for the snapshot")
        if os.path.exists(target + ".wal"):
            raise InputError(f"{target + '.wal'!r} exists (a write-ahead log of another file); remove it or give "
                             "another path for the snapshot")
        partial = f"{target}.partial"
        if os.path.exists(partial):
            raise InputError(f"{partial!r} exists (a snapshot that did not finish?); remove it or give another path")
        if self._log is not None:
            self._log.flush_quietly()  # the reads served so far are in the copy
        with self._conn.lock:
            if not self.read_only:
                self.checkpoint()  # the file alone then holds every committed write
            try:
                # Never shutil.copyfile(self.path, ...): closing a descriptor of the store file
                # would drop DuckDB's lock on it (POSIX), letting another process open it.
                self._conn.copy_file(partial)
                if self.read_only and os.path.exists(self.path + ".wal"):
                    # A read-only store cannot checkpoint its own file: fold the copy's.
                    shutil.copyfile(self.path + ".wal", partial + ".wal")
                    fold_copy(partial)
                os.replace(partial, target)
            except OSError as exc:
                for leftover in (partial, partial + ".wal"):
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
                raise StoreError(f"could not write the snapshot {target!r}: {exc.strerror or exc}", path=target) \
                    from None
        return target

    # -- featurizers -----------------------------------------------------------------

    def export(self, path: str | os.PathLike[str]) -> ExportResult:
        """Write every feature view's history as Parquet (one folder per view, partitioned
        by the event time's UTC date, with the ingest order the winner order ends with)
        and the registry as JSON into the new directory ``path``, for another engine
        (``featurelite.spark``) to read: the same rows and definitions as of one moment.
        Raises InputError when ``path`` exists (it is written as ``PATH.partial`` and
        renamed when whole)."""
        target = os.fspath(path)
        registry = self._registry
        with self._conn.lock, translating(f"exporting the store to {target!r}", committed=False):
            con = self._conn.get()
            position = self._seq.next - 1
            document = export.registry_document(self.store_id or "", position, registry)
            layouts = {name: self._catalog.layout(name) for name in sorted(registry.views)}
            cursor = con.cursor()
            try:
                run(cursor, "BEGIN TRANSACTION")  # one snapshot of every view
                rows = export.write_export(cursor, layouts, target, document)
                run(cursor, "COMMIT")
            finally:
                cursor.close()
        return ExportResult(target, rows, position)

    def verify(self, name: str | None = None, *, examples: int = 1000, seed: int = 0) -> list[VerifyResult]:
        """Check that each featurizer of view ``name`` (default: every on-demand view and
        every feature view with write-time featurizers or windowed aggregates) gives the
        same bits in the batch path and the per-request path, and that each windowed
        aggregate does in the training-set path and the online path.

        Featurizer inputs are generated from the declared types (special values, random
        values over each type's range, nulls), plus a sample of the stored history of the
        columns they are bound to, and then searched and shrunk with Hypothesis. Aggregates
        are compared at up to ``examples`` (key, time) pairs around sampled events' window
        edges. A mismatch is reported with the simplest input that shows it."""
        examples = arguments.whole_number(examples, "examples")
        seed = arguments.whole_number(seed, "seed", minimum=0)
        if name is not None:
            arguments.name(name, "the view to verify")
        with self._conn.lock:
            con = self._conn.get()
            catalog = self._catalog
            online = self._windows.aggregates
            return [
                result
                for view in ([name] if name is not None else catalog.verified_views())
                for result in verify_view(con, catalog, view, online, examples=examples, seed=seed)
            ]

def _refuse_other_request(manifest: Manifest, asked: set[str], pins: Mapping[str, str], doing: str) -> None:
    """ManifestError unless a request names the manifest's features (``asked``: as
    ``view:feature``) and every definition it reads (``pins``) is at the manifest's version."""
    held = {f"{f.view}:{f.feature}" for f in manifest.features}
    if asked != held:
        extra, missing = sorted(asked - held), sorted(held - asked)
        shown = "; ".join(
            part for part in (
                f"not in the manifest: {', '.join(extra)}" if extra else "",
                f"in the manifest but not asked: {', '.join(missing)}" if missing else "",
            ) if part
        )
        raise ManifestError(
            f"{doing} would read other features than the manifest holds ({shown}); pass the manifest alone to "
            "use its features, or build a new training set (and model) on these",
            features=extra + missing,
        )
    _refuse_other_versions(manifest, pins, doing)


def _refuse_other_versions(manifest: Manifest, pins: Mapping[str, str], doing: str) -> None:
    """ManifestError unless every definition ``pins`` reads is at the manifest's version."""
    moved = sorted(
        (name, manifest.pins.get(name), version) for name, version in pins.items() if manifest.pins.get(name) != version
    )
    if moved:
        shown = "; ".join(f"{name}: manifest {was or 'does not read it'}, now {now}" for name, was, now in moved)
        raise ManifestError(
            f"{doing} would read other versions than the manifest pins ({shown}); pass the manifest alone to "
            "use its versions, or build a new training set (and model) on the current ones",
        )


#: Which kind a bare name given to ``Store.lineage`` is looked up as, first to last.
_LINEAGE_LOOKUP = ("feature_view", "on_demand_feature_view", "feature_service", "entity", "featurizer", "model")


def _kept(graph: Lineage, root: str) -> set[str]:
    return {root} | {n.id for n in graph.upstream(root)} | {n.id for n in graph.downstream(root)}


def _utc(micros: int) -> datetime:
    """A moment (Unix microseconds) as a zone-aware UTC datetime."""
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)

