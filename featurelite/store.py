"""Store: the one object users hold. Composes registry, offline history and online values.

No printing, no CLI, no HTTP here: every user operation is a method.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import arguments, offline, online
from ._version import __version__
from .arrays import int64_array
from .conform import check_columns, conform_table, normalize_timestamps
from .db import checkpoint as fold_wal
from .db import (
    claim_path,
    connect,
    damaged,
    fetch_arrow,
    invalidated,
    quote,
    release_path,
    run,
    transaction,
    translating,
    untold,
)
from .definitions import RESERVED_PREFIX, Entity, FeatureView, OnDemandFeatureView
from .errors import (
    DefinitionError,
    FeatureliteError,
    FeaturizerError,
    InputError,
    ReadOnlyError,
    SchemaError,
    StoreClosedError,
    StoreError,
    UnknownFeatureViewError,
)
from .featurizer import Featurizer
from .layout import SEQ, ViewLayout
from .online import Status
from .registry import ApplyResult, Binding, Registry, init_or_check, pending_online, set_pending
from .results import IngestResult, MaterializeResult, OnlineResponse, VerifyResult
from .retrieval import entity_columns, key_column, keys_for, pick_timestamp, resolve_features
from .sources import DataSource, read_batches, to_reader, to_table
from .types import arrow_type, as_utc, storable_micros, utc_naive

__all__ = ["Store", "open"]

Definition = Entity | FeatureView | OnDemandFeatureView
#: The kinds of definition the registry keeps versions of.
_KINDS = ("entity", "feature_view", "on_demand_feature_view")
#: A stored view's part of an online request: (view, fields read, output names of the
#: first fields; the rest are read for featurizers only).
_ViewRead = tuple[str, tuple[str, ...], list[str]]
#: One featurizer run per request: (on-demand view, featurizer, per input either (read
#: number, field number) or a request field name, (output name, output index) pairs).
_Compute = tuple[str, Featurizer, tuple[Any, ...], tuple[tuple[str, int], ...]]
#: An online request resolved: stored-view reads, featurizer runs, output names in
#: request order when several groups are asked (else None), Arrow type of every column.
_OnlinePlan = tuple[list[_ViewRead], list[_Compute], list[str] | None, dict[str, pa.DataType]]
_PRESENT = Status.PRESENT
_NULL = Status.NULL_VALUE
#: Distinct feature lists whose resolution is cached for online reads.
_PLAN_CACHE_SIZE = 1024
#: Rows per batch while the online index is loaded from the file.
_INDEX_BUILD_BATCH = 1 << 17
#: Rows handed to DuckDB per INSERT during ingest.
INGEST_BATCH_ROWS = 1 << 20
#: An ingest this small into a view whose online index is loaded leaves the online table
#: to catch up later: the index decides the winners, so a push costs a history append
#: instead of a join against every online row.
DEFERRED_ONLINE_ROWS = 1 << 16
#: History rows an online table may lag by before an ingest brings it up to date.
CATCH_UP_ROWS = 2_000_000
#: A point-in-time join narrows the history to the probe's keys first when the history
#: has this many times more rows than the probe.
NARROW_RATIO = 20


def open(path: str | os.PathLike[str] = ":memory:", *, read_only: bool = False) -> Store:
    """Open the featurelite store in ``path``, creating the file if it is missing.

    ``":memory:"`` gives a store that lives only in this process. ``read_only=True``
    opens an existing store for reading; several processes may do so at once, but not
    while another process has it open for writing.
    """
    return Store(path, read_only=read_only)


def _unique_keys(layout: ViewLayout, batch: pa.Table) -> bool:
    """Whether no entity key repeats within ``batch``."""
    if len(layout.key_names) == 1:
        return pc.count_distinct(batch.column(layout.key_names[0]), mode="all").as_py() == batch.num_rows
    return batch.select(layout.key_names).group_by(layout.key_names).aggregate([]).num_rows == batch.num_rows


def _reaches_back(layout: ViewLayout, batch: pa.Table, last_event_us: int | None) -> bool:
    """Whether some event of ``batch`` is not after the latest stored event (so it could
    tie with a stored row). The usual push of fresh data does not, and then, with one row
    per key, the tie check in SQL is skipped."""
    if last_event_us is None:
        return False
    earliest = pc.min(batch.column(layout.ts)).cast(pa.int64()).as_py()
    return earliest is None or earliest <= last_event_us


def _moment_us(moment: datetime, name: str) -> int:
    """A caller's point in time (``now=``, ``end_date=``) in microseconds, checked."""
    try:
        us = storable_micros(moment)
    except TypeError:
        raise InputError(f"{name} must be a datetime.datetime, got {type(moment).__name__}: {moment!r}", name=name) from None
    if us is None:
        raise InputError(f"{name} {moment!r} lies outside years 1-9999 in UTC; pass a time within them", name=name)
    return us


def _request_column(view: str, field: str, request_data: Mapping[str, Sequence[Any]] | None, n: int | None) -> list[Any]:
    if not request_data or field not in request_data:
        raise InputError(
            f"on-demand view {view!r} needs request field {field!r}; pass request_data={{{field!r}: [...]}}",
            view=view, column=field,
        )
    column = request_data[field]
    if isinstance(column, (str, bytes)) or not isinstance(column, Sequence):
        raise InputError(f"request_data[{field!r}] must be a list with one value per entity", column=field)
    if n is not None and len(column) != n:
        raise InputError(f"request_data[{field!r}] has {len(column)} values for {n} entities", column=field)
    return list(column)


class Store:
    """A feature store in one DuckDB file: registry, offline history and online values.

    Use :func:`featurelite.open` to get one. A Store is a context manager; ``close()``
    releases the file. Methods are safe to call from several threads.
    """

    def __init__(self, path: str | os.PathLike[str] = ":memory:", *, read_only: bool = False) -> None:
        self.path = os.fspath(path)
        self.read_only = read_only
        self._con: duckdb.DuckDBPyConnection | None = None
        #: Why the Store closed itself (a fatal DuckDB error), or None.
        self._closed_reason: str | None = None
        self._lock = threading.RLock()
        self._indexes: dict[str, online.OnlineIndex] = {}
        self._file_key = claim_path(self.path, self)
        try:
            self._con = connect(self.path, read_only=read_only)
        except BaseException:
            release_path(self._file_key, self)
            raise
        try:
            init_or_check(self._con, self.path, read_only=read_only, version=__version__)
            self._registry = Registry()
            self._registry.load(self._con)
            #: Views whose online table lags history: first sequence not applied.
            self._pending: dict[str, int] = pending_online(self._con)
            #: The next ingest sequence number (this Store is the file's only writer): past
            #: every sequence number in the file, so none is ever reused.
            self._next_seq = self._first_free_seq()
            #: Latest event time per view's history, in microseconds (filled on demand).
            self._last_event: dict[str, int | None] = {}
            self._generation = 0
            self._layouts: dict[str, ViewLayout] = {}
            self._online_plans: dict[tuple[tuple[str, ...], bool], _OnlinePlan] = {}
            self._refresh_layouts()
            #: Views with history rows that lost a tie on key and event time.
            self._ties: set[str] = {name for name, layout in self._layouts.items() if offline.has_tie_losers(self._con, layout)}
        except BaseException as exc:
            self._shut(None)
            cause = untold(exc)
            if cause is not None:
                # The file opened, but its tables cannot be read as a store's: the header
                # was fine and the blocks behind it are truncated, fail their checksums, or
                # are missing (a table dropped outside featurelite).
                raise damaged(self.path, cause) from cause
            raise

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        """Release the file. Further calls raise StoreClosedError. Never raises: a
        failure while bringing the online tables up to date leaves the lag recorded in
        the file (the next open serves it right), and the file is released regardless."""
        with self._lock:
            con = self._con
            if con is None:
                return
            try:
                if not self.read_only and invalidated(con) is None:
                    try:
                        self._catch_up(con)
                    except FeatureliteError:
                        pass  # the lag stays recorded in the file; the next open serves it right
            finally:
                self._shut(invalidated(con))

    def _shut(self, reason: str | None) -> None:
        """Close the connection and release the file, whatever state DuckDB is in;
        ``reason`` (a fatal DuckDB error) is kept to say why the Store is closed."""
        con, self._con = self._con, None
        self._indexes.clear()
        if reason is not None:
            self._closed_reason = reason
        try:
            if con is not None:
                con.close()
        except duckdb.Error:
            pass  # an invalidated database may fail to close; its handles are released all the same
        finally:
            release_path(self._file_key, self)

    @contextmanager
    def _closing_if_fatal(self) -> Iterator[None]:
        """Around a write: if it failed because DuckDB invalidated the connection, close
        the Store (see :meth:`_shut_if_invalidated`) before the error propagates."""
        try:
            yield
        except StoreError:
            self._shut_if_invalidated()
            raise

    def _shut_if_invalidated(self) -> None:
        """Close the Store if a fatal DuckDB error invalidated its connection (after
        which every statement fails): later calls then raise StoreClosedError, and the
        file is released so it can be opened again."""
        con = self._con
        if con is not None:
            reason = invalidated(con)
            if reason is not None:
                self._shut(reason)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._con is None

    def checkpoint(self) -> None:
        """Bring every online table up to date with its history and fold DuckDB's
        write-ahead log into the store file, so the file alone holds every committed write
        in its final form (``close()`` does this too)."""
        with self._lock:
            con = self._writable()
            try:
                self._catch_up(con)
                # committed=True: whatever the checkpoint could not fold in stays committed
                # in the write-ahead log and is replayed on the next open.
                fold_wal(con, f"checkpoint of store {self.path!r}", committed=True)
            except StoreError:
                self._shut_if_invalidated()
                raise

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._con is None else ("read-only" if self.read_only else "open")
        return f"<featurelite.Store {self.path!r} {state}>"

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The underlying DuckDB connection (for inspection; writes bypass featurelite's checks)."""
        self._check_open()
        assert self._con is not None
        return self._con

    def _check_open(self) -> None:
        con = self._con
        if con is not None and invalidated(con) is not None:  # a fatal DuckDB error in another call
            self._shut_if_invalidated()
        if self._con is None:
            why = f" after a fatal DuckDB error ({self._closed_reason})" if self._closed_reason else ""
            raise StoreClosedError(f"store {self.path!r} was closed{why}; open it again with featurelite.open", path=self.path)

    def _writable(self) -> duckdb.DuckDBPyConnection:
        con = self.con
        if self.read_only:
            raise ReadOnlyError(
                f"store {self.path!r} is open read-only; open it with read_only=False to write",
                path=self.path,
            )
        return con

    def _refresh_layouts(self) -> None:
        """Rebuild the resolved views from the registry. Readers do not take the lock, so
        the new mapping is swapped in whole and cached plans are invalidated by bumping
        the generation (a plan resolved against the old views is then never cached)."""
        entities = self._registry.entities
        self._layouts = {name: ViewLayout.resolve(view, entities) for name, view in self._registry.views.items()}
        self._generation += 1
        self._online_plans = {}

    def _layout(self, view: str) -> ViewLayout:
        layouts = self._layouts
        layout = layouts.get(view)
        if layout is None:
            raise UnknownFeatureViewError(
                f"feature view {view!r} is not registered (registered: {', '.join(sorted(layouts)) or 'none'}); "
                "apply it first",
                name=view,
            )
        return layout

    def _schema_of(self, name: str) -> Mapping[str, str]:
        """Features and dtypes of a feature view or an on-demand feature view."""
        layout = self._layouts.get(name)
        if layout is not None:
            return layout.view.schema
        odfv = self._registry.odfvs.get(name)
        if odfv is not None:
            return odfv.schema
        if name in self._registry.broken:
            raise self._registry.broken[name]
        return self._layout(name).view.schema  # raises UnknownFeatureViewError

    # -- definitions ----------------------------------------------------------------

    def apply(self, objects: Iterable[Definition] | Definition, *, dry_run: bool = False) -> ApplyResult:
        """Register entities and feature views, creating their tables.

        Idempotent: applying the same definitions again changes nothing. Returns which
        definitions were added, changed and unchanged. A change that would break stored
        data (a dtype change, a removed feature or key) raises BreakingChangeError and
        changes nothing. With ``dry_run=True`` nothing is written.
        """
        dry_run = arguments.flag(dry_run, "dry_run")  # (what objects may be: registry.plan checks)
        with self._lock:
            con = self.con if dry_run else self._writable()
            if isinstance(objects, (Entity, FeatureView, OnDemandFeatureView)):
                objects = [objects]
            result, entities, views, odfvs = self._registry.plan(objects, self._rows_stored)
            if dry_run:
                return replace(result, dry_run=True)
            if not result:
                return result
            objects_by_key: dict[tuple[str, str], Definition] = {}
            for ent in entities.values():
                objects_by_key[("entity", ent.name)] = ent
            for view in views.values():
                objects_by_key[("feature_view", view.name)] = view
            for odfv in odfvs.values():
                objects_by_key[("on_demand_feature_view", odfv.name)] = odfv
            new_layouts = {name: ViewLayout.resolve(view, entities) for name, view in views.items()}
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            try:
                with translating("apply (nothing was changed)", committed=False), transaction(con):
                    self._registry.record(con, result, objects_by_key, now)
                    for name, layout in new_layouts.items():
                        self._sync_tables(con, self._layouts.get(name), layout)
                for name, layout in new_layouts.items():
                    if self._layouts.get(name) != layout:
                        self._indexes.pop(name, None)
                self._registry.adopt(entities, views, odfvs)
                self._refresh_layouts()
                # Definitions change rarely: fold them into the file at once. The change is
                # committed by now, and the error (a full disk) says so.
                fold_wal(con, "apply", committed=True)
            except StoreError:
                self._shut_if_invalidated()
                raise
            return result

    @staticmethod
    def _sync_tables(con: duckdb.DuckDBPyConnection, old: ViewLayout | None, new: ViewLayout) -> None:
        """Create or adapt a view's tables (inside the apply transaction)."""
        if old == new:
            return
        if old is not None:
            compatible = (
                old.keys == new.keys
                and old.ts == new.ts
                and old.created == new.created
                and all(new.view.schema.get(f) == d for f, d in old.features)
            )
            if compatible:
                added = [(f, d) for f, d in new.features if f not in old.view.schema]
                offline.add_feature_columns(con, old, added)
                online.add_feature_columns(con, old, added)
                return
            # The registry's plan only lets an incompatible change through for an empty view.
            offline.drop_history(con, old)
            online.drop_online(con, old)
        offline.create_history(con, new)
        online.create_online(con, new)

    def _rows_stored(self, view: str) -> int:
        layout = self._layouts.get(view)
        return 0 if layout is None else offline.row_count(self.con, layout)

    def delete_feature_view(self, name: str) -> None:
        """Remove a feature view and all its stored data (history and online), or an
        on-demand feature view. A view that an on-demand view reads cannot be removed first."""
        arguments.name(name, "the view to delete")
        with self._lock, self._closing_if_fatal():
            con = self._writable()
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            if name in self._registry.odfvs:
                with translating(f"deleting view {name!r} (nothing was changed)", view=name, committed=False), transaction(con):
                    self._registry.record_delete(con, "on_demand_feature_view", name, now)
                self._registry.remove("on_demand_feature_view", name)
                self._refresh_layouts()
                return
            layout = self._layout(name)
            users = sorted(o.name for o in self._registry.odfvs.values() if name in o.view_sources)
            if users:
                raise DefinitionError(
                    f"feature view {name!r} is a source of on-demand feature view(s) {', '.join(users)}; "
                    "delete those first",
                    name=name,
                )
            with translating(f"deleting view {name!r} (nothing was changed)", view=name, committed=False), transaction(con):
                offline.drop_history(con, layout)
                online.drop_online(con, layout)
                set_pending(con, name, None)
                self._registry.record_delete(con, "feature_view", name, now)
            self._registry.remove("feature_view", name)
            self._pending.pop(name, None)
            self._last_event.pop(name, None)
            self._indexes.pop(name, None)
            self._ties.discard(name)
            self._refresh_layouts()

    def list_entities(self) -> list[Entity]:
        """Registered entities, by name."""
        self._check_open()
        return [self._registry.entities[n] for n in sorted(self._registry.entities)]

    def list_feature_views(self) -> list[FeatureView]:
        """Registered feature views, by name."""
        self._check_open()
        return [self._registry.views[n] for n in sorted(self._registry.views)]

    def list_on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        """Registered on-demand feature views, by name."""
        self._check_open()
        return [self._registry.odfvs[n] for n in sorted(self._registry.odfvs)]

    def get_entity(self, name: str) -> Entity:
        """The registered entity ``name``."""
        self._check_open()
        return self._registry.entity(arguments.name(name, "the entity"))

    def get_feature_view(self, name: str) -> FeatureView:
        """The registered feature view ``name``."""
        self._check_open()
        return self._registry.view(arguments.name(name, "the feature view"))

    def list_versions(self, name: str, *, kind: str | None = None) -> list[dict[str, Any]]:
        """Every version of definition ``name`` ever applied (oldest first), with its spec
        and when it was first applied."""
        arguments.name(name, "the definition")
        if kind is not None and kind not in _KINDS:
            raise InputError(f"kind must be one of {', '.join(_KINDS)} or None, not {kind!r}")
        with self._lock, translating("reading the registry"):
            return Registry.versions(self.con, name, kind)

    def describe(self, name: str) -> dict[str, Any]:
        """A feature view's definition, version and data statistics, or an on-demand
        feature view's definition and version (``kind`` tells which)."""
        arguments.name(name, "the view to describe")
        with self._lock, translating(f"describing view {name!r}", view=name):
            self._check_open()
            odfv = self._registry.odfvs.get(name)
            if odfv is not None:
                return {"name": name, "kind": "on_demand_feature_view", "version": odfv.version, "spec": odfv.spec()}
            layout = self._layout(name)
            rows, first, last = offline.stats(self.con, layout)
            if name in self._pending:  # entities online = those in the table plus those only in its lag
                keys = ", ".join(quote(k) for k in layout.key_names)
                online_rows = run(self.con, (
                    f"SELECT count(*) FROM (SELECT {keys} FROM {layout.online_table} UNION "
                    f"SELECT {keys} FROM {layout.history_table} WHERE {SEQ} >= ?)"
                ), [self._pending[name]])[0][0]
            else:
                online_rows = run(self.con, f"SELECT count(*) FROM {layout.online_table}")[0][0]
            return {
                "name": name,
                "kind": "feature_view",
                "version": layout.view.version,
                "spec": layout.view.spec(),
                "join_keys": dict(layout.keys),
                "history_rows": rows,
                "online_rows": int(online_rows),
                "first_event": as_utc(first),
                "last_event": as_utc(last),
            }

    # -- ingest ---------------------------------------------------------------------

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
        arguments.name(view, "the view to ingest into")
        batch_rows = arguments.whole_number(batch_rows, "batch_rows")
        with self._lock:
            con = self._writable()
            layout = self._layout(view)
            expected = layout.input_columns()
            reader = to_reader(data, text_columns=[name for name, _, _ in expected])
            computed = [name for name in reader.schema.names if name in layout.view.derived]
            if computed:
                raise SchemaError(
                    f"view {view!r}: input has column(s) {', '.join(computed)}, which the view computes at ingest "
                    "with its featurizers; drop them from the input",
                    view=view, column=computed[0],
                )
            check_columns(view, reader.schema, expected)
            names = layout.stored_columns()
            index = self._indexes.get(view)
            pending = self._pending.get(view)
            rows = 0
            ties = False
            changed: pa.Table | None = None
            fresh: pa.Table | None = None
            done = False
            outcome = None
            try:
                with translating(f"ingest into view {view!r} (nothing was written)", view=view):
                    with transaction(con) as outcome:
                        first_seq: int | None = None
                        seq_after = self._next_seq
                        batches: list[pa.Table] = []
                        for table in read_batches(view, reader, batch_rows):
                            arrays = layout.with_derived(conform_table(view, table, expected, rows))
                            seq = seq_after  # this Store is the file's only writer: no counter to update
                            seq_after = seq + table.num_rows
                            first_seq = seq if first_seq is None else first_seq
                            arrays.append(int64_array(np.arange(seq, seq + table.num_rows, dtype=np.int64)))
                            stored = pa.Table.from_arrays(arrays, names=names)
                            offline.append(con, layout, stored)
                            batches = [stored] if not batches else batches[:1] + [stored]
                            rows += table.num_rows
                        if first_seq is not None:
                            last_event = self._last_event_us(layout)
                            unique = len(batches) == 1 and _unique_keys(layout, batches[0])
                            if unique and not _reaches_back(layout, batches[0], last_event):
                                ties = False  # one row per key, all after the stored events: no tie possible
                            else:
                                ties = offline.mark_tie_losers(con, layout, first_seq) > 0
                            if index is not None and rows <= DEFERRED_ONLINE_ROWS:
                                # A small write while the index serves reads: the index decides
                                # the winners; the online table catches up in bulk later.
                                wanted = online.index_columns(layout)
                                if unique:
                                    fresh = batches[0].select(wanted)  # one row per key: each is its key's winner
                                else:
                                    columns = ", ".join(quote(c) for c in wanted)
                                    fresh = fetch_arrow(
                                        con, f"SELECT {columns} FROM ({offline.latest_per_key_sql(layout, min_seq=True)})",
                                        params={offline.MIN_SEQ_PARAM: first_seq},
                                    )
                                pending = first_seq if pending is None else pending
                                if first_seq + rows - pending > CATCH_UP_ROWS:
                                    online.upsert(con, layout, offline.latest_per_key_sql(layout, min_seq=True), returning=False,
                                                  params={offline.MIN_SEQ_PARAM: pending})
                                    pending = None
                            else:
                                changed = online.upsert(
                                    con, layout, offline.latest_per_key_sql(layout, min_seq=True), returning=index is not None,
                                    params={offline.MIN_SEQ_PARAM: first_seq if pending is None else pending},
                                )
                                pending = None
                            if pending != self._pending.get(view):
                                set_pending(con, view, pending)
                if first_seq is not None:
                    self._set_pending(view, pending)
                    self._next_seq = seq_after
                    newest = max(int(pc.max(b.column(layout.ts)).cast(pa.int64()).as_py()) for b in batches)
                    self._last_event[view] = max(newest, last_event) if last_event is not None else newest
                if ties:
                    self._ties.add(view)
                if index is not None and fresh is not None:
                    index.merge(fresh)
                elif index is not None and changed is not None:
                    index.upsert(changed)
                done = True
            finally:
                if not done and index is not None and (outcome is None or outcome.committed is not False):
                    # Something failed after the write may have committed: never serve from an
                    # index that may have missed it. It is rebuilt on the next read.
                    self._indexes.pop(view, None)
                    self._last_event.pop(view, None)
                    if invalidated(con) is not None:
                        self._shut_if_invalidated()  # nothing more can be read: the error below says why
                    else:
                        self._pending = pending_online(con)
                        self._next_seq = self._first_free_seq()
            return IngestResult(view, rows)

    def _first_free_seq(self) -> int:
        """One past the largest ingest sequence number stored (0 when nothing is)."""
        assert self._con is not None
        found = 0
        for view in self._registry.views.values():
            table = quote(f"fl_history__{view.name}")
            top = run(self._con, f"SELECT max({SEQ}) FROM {table}")[0][0]
            if top is not None:
                found = max(found, int(top) + 1)
        return found

    def _history_rows(self, layout: ViewLayout) -> int:
        return offline.row_count(self.con, layout)

    def _last_event_us(self, layout: ViewLayout) -> int | None:
        """The latest event time in a view's history (microseconds), cached per view."""
        if layout.name not in self._last_event:
            found = run(self.con, f"SELECT epoch_us(max({quote(layout.ts)})) FROM {layout.history_table}")[0][0]
            self._last_event[layout.name] = None if found is None else int(found)
        return self._last_event[layout.name]

    def _set_pending(self, view: str, seq: int | None) -> None:
        if seq is None:
            self._pending.pop(view, None)
        else:
            self._pending[view] = seq

    def _catch_up(self, con: duckdb.DuckDBPyConnection, views: Iterable[str] | None = None) -> None:
        """Bring the online tables that lag their history (after small ingests while the
        index served reads) up to date, in one transaction."""
        lagging = {v: s for v, s in self._pending.items() if views is None or v in views}
        if not lagging:
            return
        with translating("bringing the online tables up to date (nothing was changed)"), transaction(con):
            for view, seq in lagging.items():
                layout = self._layout(view)
                online.upsert(con, layout, offline.latest_per_key_sql(layout, min_seq=True), returning=False,
                              params={offline.MIN_SEQ_PARAM: seq})
                set_pending(con, view, None)
        for view in lagging:
            self._pending.pop(view, None)

    # -- online ---------------------------------------------------------------------

    def _index(self, view: str) -> online.OnlineIndex:
        index = self._indexes.get(view)
        if index is None:
            with self._lock:
                index = self._indexes.get(view)
                if index is None:
                    layout = self._layout(view)
                    columns = ", ".join(quote(c) for c in online.index_columns(layout))
                    with translating(f"loading the online values of view {view!r}", view=view):
                        rows = run(self.con, f"SELECT count(*) FROM {layout.online_table}")[0][0]
                        relation = self.con.sql(f"SELECT {columns} FROM {layout.online_table}")
                        assert relation is not None
                        batches = relation.to_arrow_reader(batch_size=_INDEX_BUILD_BATCH)
                        index = online.OnlineIndex.build(layout, rows, batches)
                        if view in self._pending:  # history the online table has not caught up with
                            tail = offline.latest_per_key_sql(layout, min_seq=True)
                            index.merge(fetch_arrow(self.con, f"SELECT {columns} FROM ({tail})",
                                                    params={offline.MIN_SEQ_PARAM: self._pending[view]}))
                    self._indexes[view] = index
        return index

    def warm(self, views: str | Sequence[str] | None = None) -> None:
        """Load the in-memory online index of each view (default: every feature view) now,
        so the first read of a view does not pay for loading it."""
        names = sorted(self._layouts) if views is None else arguments.names(views, "views")
        for name in names:
            self._index(name)

    def prepare_to_serve(self) -> None:
        """Get ready to serve a long run of reads and small pushes: load every online index
        (:meth:`warm`) and let DuckDB's write-ahead log grow to 256 MB before it is folded
        into the file (16 MB by default), so a push rarely pays for a checkpoint. Closing
        the store checkpoints anyway."""
        with self._lock, translating("preparing to serve"):
            run(self.con, "SET checkpoint_threshold = '256MB'")
        self.warm()

    def _online_plan(self, features: Sequence[str], full_feature_names: bool) -> _OnlinePlan:
        """How to serve a feature list online (cached per list): one index read per stored
        view, which also fetches what on-demand views need from it, then the featurizers."""
        if isinstance(features, str):
            features = [features]
        plans = self._online_plans
        key: tuple[tuple[str, ...], bool] | None = None
        plan: _OnlinePlan | None = None
        try:
            key = (tuple(features), full_feature_names)
            plan = plans.get(key)
        except TypeError:  # not a list of strings: resolve_features says what is wrong
            key = None
        if plan is None:
            generation = self._generation
            groups, order = resolve_features(features, full_feature_names, self._schema_of)
            reads: list[_ViewRead] = []
            position: dict[str, int] = {}
            types: dict[str, pa.DataType] = {}
            odfv_groups = []
            for view, feats, outs in groups:
                schema = self._schema_of(view)
                types.update((out, arrow_type(schema[f])) for f, out in zip(feats, outs))
                if view in self._registry.odfvs:
                    odfv_groups.append((view, tuple(feats), outs))
                else:
                    position[view] = len(reads)
                    reads.append((view, tuple(feats), outs))
            computes: list[_Compute] = []
            for odfv, odfv_feats, outs in odfv_groups:
                needed, featurizers = self._compute_plan(odfv, odfv_feats)
                for view, fields in needed.items():
                    if view not in position:  # a view read only for the featurizers
                        position[view] = len(reads)
                        reads.append((view, (), []))
                    read_view, read_feats, read_outs = reads[position[view]]
                    extra = tuple(f for f in fields if f not in read_feats)
                    reads[position[view]] = (read_view, read_feats + extra, read_outs)
                for fz, bound, places in featurizers:
                    args: list[tuple[int, int] | str] = []
                    for kind, source, field in bound:
                        if kind == "view":
                            args.append((position[source], reads[position[source]][1].index(field)))
                        else:
                            args.append(field)
                    computes.append((odfv, fz, tuple(args), tuple((outs[p], output) for p, output in places)))
            key_types: dict[str, pa.DataType] = {}
            for view, *_ in reads:
                key_types.update(self._layout(view).keys_arrow_types())
            # Values are filled read by read, then featurizer by featurizer: only when that is
            # not already the order asked does the response need slots laid out in advance.
            natural = [o for *_, outs in reads for o in outs] + [out for *_, outputs in computes for out, _ in outputs]
            plan = (reads, computes, order if natural != order else None, {**key_types, **types})
            if generation == self._generation and key is not None:  # views unchanged while resolving
                if len(plans) >= _PLAN_CACHE_SIZE:
                    plans.clear()  # callers with endless distinct lists: start over
                plans[key] = plan
        return plan

    def get_online_features(
        self,
        entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        features: Sequence[str],
        *,
        request_data: Mapping[str, Sequence[Any]] | None = None,
        full_feature_names: bool = False,
        now: datetime | None = None,
    ) -> OnlineResponse:
        """Latest feature values for each entity, from the in-memory online index.

        ``entity_rows`` is a list of ``{join key: value}`` dicts, or one dict of
        ``{join key: [values]}``. ``features`` are ``"view:feature"`` references. A value
        is the one a point-in-time lookup at ``now`` (default: the current time) returns;
        a value older than its view's ttl is ``None`` with status ``OUTSIDE_MAX_AGE``.
        Features of on-demand views are computed per entity by their featurizers, from
        those values and ``request_data`` (``{field: [value per entity]}``).
        """
        self._check_open()
        reads, computes, order, types = self._online_plan(features, full_feature_names)
        if request_data is not None and not isinstance(request_data, Mapping):
            raise InputError(f"request_data must be a dict of {{field: [value per entity]}}, not {type(request_data).__name__}")
        columns = entity_columns(entity_rows)
        if not columns:  # no entities: an empty response with the right columns
            columns = {k: [] for view, *_ in reads for k in self._layout(view).key_names}
        now_us = time.time_ns() // 1000 if now is None else _moment_us(now, "now")
        key_out: dict[str, list[Any]] = {}
        # Several groups: slots in the order asked, filled as the groups are served.
        values: dict[str, Any] = {} if order is None else dict.fromkeys(order)
        statuses: dict[str, Any] = {} if order is None else dict.fromkeys(order)
        stored: list[list[list[Any]]] = []
        for view, feats, outs in reads:
            index = self._indexes.get(view) or self._index(view)
            keys = keys_for(view, index.layout.keys, columns)
            for k in index.key_names:
                if k not in key_out:
                    key_out[k] = columns[k]
            vals, stats, future = index.read(keys, feats, now_us)
            if future:
                self._resolve_future(view, list(feats), keys, future, now_us, vals, stats)
            stored.append(vals)
            if outs:
                values.update(zip(outs, vals))
                statuses.update(zip(outs, stats))
        if computes:
            n = len(next(iter(columns.values()))) if columns else 0
            for odfv, fz, args, outputs in computes:
                # The per-request path: the featurizer's compiled kernel, entity by entity.
                run = fz.run_args
                try:
                    if n == 1:  # the common single-entity request: one row, no columns to zip
                        computed = [run([
                            stored[a[0]][a[1]][0] if type(a) is tuple else _request_column(odfv, a, request_data, 1)[0]
                            for a in args
                        ])]
                    else:
                        cols = [
                            stored[a[0]][a[1]] if type(a) is tuple else _request_column(odfv, a, request_data, n)
                            for a in args
                        ]
                        computed = [run(row) for row in zip(*cols)]
                except TypeError as exc:
                    raise InputError(f"on-demand view {odfv!r}, featurizer {fz.name!r}: {exc}", view=odfv) from None
                for out, output in outputs:
                    column = computed if len(fz.outputs) == 1 else [row[output] for row in computed]
                    values[out] = column
                    statuses[out] = [_NULL if v is None else _PRESENT for v in column]
        return OnlineResponse(key_out, values, statuses, types)

    def _compute_plan(
        self, name: str, feats: tuple[str, ...]
    ) -> tuple[dict[str, tuple[str, ...]], list[tuple[Featurizer, list[Binding], list[tuple[int, int]]]]]:
        """What an on-demand view needs for ``feats``: stored fields per source view, and
        per featurizer its input bindings in order and where its outputs go (position in
        ``feats``, output index)."""
        odfv = self._registry.odfvs[name]
        bindings = self._registry.bindings[name]
        needed: dict[str, list[str]] = {}
        plans: dict[int, tuple[Featurizer, list[Binding], list[tuple[int, int]]]] = {}
        for position, feat in enumerate(feats):
            fz, output = odfv.outputs[feat]
            if id(fz) in plans:  # another output of a featurizer already planned
                plans[id(fz)][2].append((position, output))
                continue
            bound = [bindings[feat][param] for param, _ in fz.inputs]
            plans[id(fz)] = (fz, bound, [(position, output)])
            for kind, source, field in bound:
                if kind == "view" and field not in needed.setdefault(source, []):
                    needed[source].append(field)
        return {view: tuple(fields) for view, fields in needed.items()}, list(plans.values())

    def _resolve_future(
        self, view: str, feats: list[str], keys: list[Any], future: list[int], now_us: int,
        vals: list[list[Any]], stats: list[list[str]],
    ) -> None:
        """Entities whose latest event is dated after ``now``: serve the point-in-time
        value at ``now`` from history (rare; costs one SQL query per call)."""
        layout = self._layout(view)
        probe_cols: dict[str, list[Any]] = {}
        for j, k in enumerate(layout.key_names):
            probe_cols[k] = [keys[i] if len(layout.key_names) == 1 else keys[i][j] for i in future]
        probe = pa.table({
            **{k: pa.array(v, type=arrow_type(d)) for (k, d), v in zip(layout.keys, probe_cols.values())},
            offline.PROBE_TS: pa.array([now_us] * len(future), type=pa.int64()).cast(pa.timestamp("us")),
            offline.PROBE_ROW: pa.array(range(len(future)), type=pa.int64()),
        })
        with self._lock:
            result = self._point_in_time(layout, feats, probe, event_time=True)
        matched = result.column(offline.EVENT_TS).cast(pa.int64()).to_pylist()
        ttl_us = self._index(view).ttl_us
        for f, feat in enumerate(feats):
            column = online.to_python(result.column(feat), layout.view.schema[feat])
            for j, i in enumerate(future):
                vals[f][i] = column[j]
                if matched[j] is None:
                    stats[f][i] = online.Status.NOT_FOUND
                elif ttl_us is not None and matched[j] < now_us - ttl_us:
                    stats[f][i] = online.Status.OUTSIDE_MAX_AGE
                else:
                    stats[f][i] = online.Status.PRESENT if column[j] is not None else online.Status.NULL_VALUE

    def _point_in_time(self, layout: ViewLayout, feats: list[str], probe: pa.Table, *, event_time: bool = False) -> pa.Table:
        """Run the point-in-time join of ``probe`` against one view, rows in probe order."""
        # A probe far smaller than the history (a small training set, a future-dated online
        # read) narrows the history to its keys first: the join then sorts a sliver of it.
        narrow = probe.num_rows * NARROW_RATIO < self._history_rows(layout)
        query = offline.point_in_time_sql(
            layout, feats, event_time=event_time, losers=layout.name in self._ties, narrow=narrow
        )
        result = fetch_arrow(self.con, query, over=probe, name=offline.PROBE)
        order = np.empty(result.num_rows, dtype=np.int64)
        order[result.column(offline.PROBE_ROW).to_numpy()] = np.arange(result.num_rows)
        result = result.take(order)
        for i, name in enumerate(result.column_names):
            if layout.view.schema.get(name) == "float32":  # widened for the join (see point_in_time_sql)
                result = result.set_column(i, name, result.column(i).cast(pa.float32()))
        return result

    # -- offline --------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: DataSource,
        features: Sequence[str],
        *,
        timestamp_field: str | None = None,
        full_feature_names: bool = False,
    ) -> pa.Table:
        """A point-in-time correct training set.

        ``entity_df`` (a pyarrow Table, pandas / polars DataFrame or file path) has the
        join keys of every requested view and an event timestamp column
        (``timestamp_field``, default ``event_timestamp`` or the only timestamp column).
        For every row, in input order and with duplicates kept, each feature is taken
        from the latest history row of the same entity whose event time is at or before
        the row's timestamp (and within the view's ttl); ties go to the latest created
        timestamp, then to the row ingested last. No match gives null; no row is dropped.
        Other columns of ``entity_df`` are carried through unchanged.
        """
        if timestamp_field is not None:
            arguments.name(timestamp_field, "timestamp_field")
        with self._lock:
            self._check_open()
            groups, order = resolve_features(features, full_feature_names, self._schema_of)
            entity = to_table(entity_df)
            repeated = sorted({c for c in entity.column_names if entity.column_names.count(c) > 1})
            if repeated:
                raise SchemaError(f"entity_df has column {repeated[0]!r} more than once; keep one", column=repeated[0])
            ts_name = pick_timestamp(entity, timestamp_field)
            for name in entity.column_names:
                if name.lower().startswith(RESERVED_PREFIX):
                    raise SchemaError(f"entity_df column {name!r} uses the reserved prefix {RESERVED_PREFIX!r}; rename it", column=name)
            for out in order:
                if out in entity.column_names:
                    hint = "" if full_feature_names else " or pass full_feature_names=True"
                    raise SchemaError(
                        f"entity_df already has a column {out!r}, the name of a requested feature; rename it{hint}",
                        column=out,
                    )
            # Stored features to join: those asked for, plus the inputs of on-demand views.
            needed: dict[str, list[str]] = {}
            for view, feats, _ in groups:
                if view in self._registry.odfvs:
                    for feat in feats:
                        for kind, source, field in self._registry.bindings[view][feat].values():
                            if kind == "view" and field not in needed.setdefault(source, []):
                                needed[source].append(field)
                else:
                    for feat in feats:
                        if feat not in needed.setdefault(view, []):
                            needed[view].append(feat)
            probe_cols: dict[str, pa.Array] = {}
            for view in needed:
                for key, dtype in self._layout(view).keys:
                    if key not in entity.column_names:
                        raise SchemaError(
                            f"entity_df has no column {key!r}, the join key of view {view!r}; add it",
                            column=key, view=view,
                        )
                    probe_cols[key] = key_column(entity.column(key), key, dtype)
            n = entity.num_rows
            probe_cols[offline.PROBE_TS] = normalize_timestamps(entity.column(ts_name), f"entity_df column {ts_name!r}")
            probe_cols[offline.PROBE_ROW] = pa.array(np.arange(n, dtype=np.int64))
            probe = pa.table(probe_cols)
            joined: dict[tuple[str, str], pa.ChunkedArray] = {}
            for view, feats in needed.items():
                layout = self._layout(view)
                with translating(f"the point-in-time join with view {view!r}", view=view):
                    table = self._point_in_time(layout, feats, probe)
                for feat in feats:
                    joined[(view, feat)] = table.column(feat).cast(arrow_type(layout.view.schema[feat]))
            out_columns: dict[str, pa.ChunkedArray | pa.Array] = {}
            for view, feats, outs in groups:
                if view in self._registry.odfvs:
                    out_columns.update(zip(outs, self._compute_batch(view, feats, joined, entity)))
                else:
                    out_columns.update((out, joined[(view, feat)]) for feat, out in zip(feats, outs))
            result = entity
            for out in order:  # features in the order asked, after the entity_df columns
                result = result.append_column(out, out_columns[out])
            return result

    def _compute_batch(
        self, name: str, feats: Sequence[str], joined: dict[tuple[str, str], pa.ChunkedArray], entity: pa.Table
    ) -> list[pa.Array]:
        """The batch path of an on-demand view: each featurizer's compiled loop over the
        point-in-time joined inputs and the entity_df's request columns, once per
        featurizer however many of its outputs are asked for."""
        odfv = self._registry.odfvs[name]
        computed: dict[int, list[pa.Array]] = {}
        result = []
        for feat in feats:
            fz, output = odfv.outputs[feat]
            if id(fz) not in computed:
                inputs: dict[str, pa.ChunkedArray] = {}
                for param, _ in fz.inputs:
                    kind, source, field = self._registry.bindings[name][feat][param]
                    if kind == "view":
                        inputs[param] = joined[(source, field)]
                    elif field in entity.column_names:
                        inputs[param] = entity.column(field)
                    else:
                        raise SchemaError(
                            f"entity_df has no column {field!r}, a request field of on-demand view {name!r}; add it",
                            column=field, view=name,
                        )
                try:
                    computed[id(fz)] = fz.run_batch(inputs)
                except FeaturizerError as exc:  # the same class the per-request path and ingest raise
                    raise FeaturizerError(f"on-demand view {name!r}: {exc.message}", view=name, featurizer=fz.name) from exc
                except SchemaError as exc:  # a request column of the wrong type
                    raise SchemaError(f"on-demand view {name!r}: {exc.message}", view=name, column=exc.column) from exc
            result.append(computed[id(fz)][output])
        return result

    # -- featurizers -----------------------------------------------------------------

    def verify(self, name: str | None = None, *, examples: int = 1000, seed: int = 0) -> list[VerifyResult]:
        """Check that each featurizer of view ``name`` (default: every on-demand view and
        every feature view with write-time featurizers) gives the same bits in the batch
        path and the per-request path.

        Inputs are generated from the declared types (special values, random values over
        each type's range, nulls), plus a sample of the stored history of the columns
        they are bound to, and then searched and shrunk with Hypothesis. A mismatch is
        reported with the simplest input row that shows it."""
        examples = arguments.whole_number(examples, "examples")
        seed = arguments.whole_number(seed, "seed", minimum=0)
        if name is not None:
            arguments.name(name, "the view to verify")
        with self._lock:
            self._check_open()
            if name is None:
                names = sorted([*self._registry.odfvs, *(v for v, fv in self._registry.views.items() if fv.featurizers)])
            else:
                names = [name]
            results = []
            for view in names:
                for fz, features, sources in self._featurizer_sources(view):
                    samples = {param: self._history_sample(source, field, examples) for param, (source, field) in sources.items()}
                    mismatch = fz.verify(examples=examples, seed=seed, samples=samples)
                    results.append(VerifyResult(view, features, fz.name, examples, mismatch))
            return results

    def _featurizer_sources(self, view: str) -> list[tuple[Featurizer, tuple[str, ...], dict[str, tuple[str, str]]]]:
        """Each featurizer of a view: (featurizer, its features, {input: (stored view, column)}
        for the inputs read from stored history)."""
        odfv = self._registry.odfvs.get(view)
        if odfv is not None:
            bindings = self._registry.bindings[view]
            found = []
            for key, fz in odfv.featurizers.items():
                features = (key,) if isinstance(key, str) else key
                sources = {p: (src, f) for p, (kind, src, f) in bindings[features[0]].items() if kind == "view"}
                found.append((fz, features, sources))
            return found
        layout = self._layouts.get(view)
        if layout is None:
            self._schema_of(view)  # raises for an unknown or broken view
        assert layout is not None
        if not layout.derived:
            raise InputError(f"feature view {view!r} has no featurizers to verify")
        return [(fz, names, {p: (view, column) for p, column in inputs.items()}) for fz, names, inputs in layout.derived]

    def _history_sample(self, view: str, field: str, rows: int) -> list[Any]:
        layout = self._layout(view)
        with translating(f"sampling the history of view {view!r}", view=view):
            table = fetch_arrow(
                self.con,
                f"SELECT {quote(field)} FROM {layout.history_table} WHERE {quote(field)} IS NOT NULL "
                f"USING SAMPLE {int(rows)} ROWS",  # DuckDB's grammar takes no parameter here; an int
            )
        column = table.column(0)
        if pa.types.is_timestamp(column.type):
            column = column.cast(pa.timestamp("us", tz="UTC"))
        return column.to_pylist()

    # -- materialize ----------------------------------------------------------------

    def materialize(
        self, views: str | Sequence[str] | None = None, *, end_date: datetime | None = None
    ) -> list[MaterializeResult]:
        """Rebuild online values from history, for recovery or after a definition change.

        For each view (default: all), the online table becomes exactly what ingest-time
        maintenance produces from the history, counting only events at or before
        ``end_date`` if given.
        """
        with self._lock, self._closing_if_fatal():
            con = self._writable()
            names = sorted(self._layouts) if views is None else arguments.names(views, "views")
            layouts = [self._layout(name) for name in names]
            # end_date is bound as a parameter, never pasted into the SQL text.
            params: dict[str, Any] | None = None
            if end_date is not None:
                _moment_us(end_date, "end_date")
                params = {offline.END_PARAM: utc_naive(end_date)}
            results = []
            with translating("materialize (nothing was changed)", committed=False), transaction(con):
                for layout in layouts:
                    winners = offline.latest_per_key_sql(layout, end=params is not None)
                    clear, fill = online.replace_sql(layout, winners)
                    run(con, clear)
                    run(con, fill, params)
                    set_pending(con, layout.name, None)
                    count = run(con, f"SELECT count(*) FROM {layout.online_table}")[0][0]
                    results.append(MaterializeResult(layout.name, int(count)))
            for layout in layouts:
                self._indexes.pop(layout.name, None)
                self._pending.pop(layout.name, None)
            # The rebuilt online tables are committed by now; fold them into the file.
            fold_wal(con, "materialize", committed=True)
            return results


