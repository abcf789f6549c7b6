"""Exporting a store for another engine: every feature view's history as Parquet, the
registry as JSON (``Store.export`` / ``featurelite export``).

The layout of an export directory (format version :data:`FORMAT_VERSION`)::

    DIR/registry.json                      what the store defines, with versions
    DIR/views/VIEW/fl_event_date=YYYY-MM-DD/data_0.parquet
                                           the view's history rows of that UTC day

Each history file holds the view's join keys, its stored features (write-time featurizers'
outputs included), its event time (and created time, if it has one) as UTC timestamps,
and :data:`INGEST_ORDER`, the store's ingest sequence number: the last term of the winner
order (event time, created time, ingest order), so that an engine reading the export picks
the same winner the store picks. Rows that lost a tie are exported too (they lose again
by that order). ``featurelite.spark`` reads exports.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from .db import quote, run
from .definitions import spec_version
from .errors import InputError, SchemaError
from .layout import ViewLayout
from .rules import SEQ

if TYPE_CHECKING:
    from .registry import Registry

__all__ = ["FORMAT", "FORMAT_VERSION", "INGEST_ORDER", "PARTITION", "ExportResult", "read_registry", "registry_of",
           "write_export"]

#: What ``registry.json`` says it is, and the version of the layout above.
FORMAT = "featurelite-export"
FORMAT_VERSION = 2
#: The history files' ingest order column (the store's sequence number).
INGEST_ORDER = SEQ
#: The partition column: the UTC date of the event time.
PARTITION = "fl_event_date"


@dataclass(frozen=True)
class ExportResult:
    """What ``Store.export`` wrote: the directory, the history rows per view, and the
    store's ingest position the export reflects."""

    path: str
    rows: Mapping[str, int]
    ingest_position: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "rows": dict(self.rows), "ingest_position": self.ingest_position}


def registry_document(
    store_id: str, position: int, registry: Registry,
) -> dict[str, Any]:
    """The JSON document of an export's registry: every current definition's spec and
    version (a service's pins among them; an on-demand view whose featurizer this process
    cannot compile too, as the store keeps it), and every version ever applied
    (``versions``, oldest first per name), which pinned reads and services plan with. A
    stored version whose spec does not parse is carried as its text (``spec_text``):
    reading that version fails as it does in the store, nothing else does."""
    odfvs = [{"version": o.version, "spec": o.spec()} for o in registry.odfvs.values()]
    for text in registry.broken_specs.values():
        spec = json.loads(text)  # it parsed when the store read it; its featurizer did not compile
        odfvs.append({"version": spec_version(spec), "spec": spec})
    versions = []
    for kind, name, version, text in registry.stored_versions():
        try:
            versions.append({"kind": kind, "name": name, "version": version, "spec": json.loads(text)})
        except ValueError:
            versions.append({"kind": kind, "name": name, "version": version, "spec_text": text})
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "store_id": store_id, "ingest_position": position,
        "exported_at": datetime.now(timezone.utc).isoformat(),
        "entities": [{"version": e.version, "spec": e.spec()} for e in registry.entities.values()],
        "feature_views": [{"version": v.version, "spec": v.spec()} for v in registry.views.values()],
        "on_demand_feature_views": odfvs,
        "feature_services": [{"version": s.version, "pins": dict(s.pins), "spec": s.spec()}
                             for s in registry.services.values()],
        "versions": versions,
    }


#: The document's list of current definitions of each kind (the store's kind names).
_CURRENT = {"entity": "entities", "feature_view": "feature_views", "on_demand_feature_view": "on_demand_feature_views",
            "feature_service": "feature_services"}


def registry_of(document: Mapping[str, Any], where: str) -> Registry:
    """The registry an export's document describes, as the store holds it in memory
    (definitions in force, every stored version); InputError names ``where`` when the
    document is not one an export wrote (a missing or mistyped entry, a spec that is not
    the version it is filed under)."""
    from .registry import Registry

    def damaged(part: str, what: str) -> InputError:
        return InputError(f"{where} is damaged ({what}); export the store again")

    current, every = [], []
    for kind, key in _CURRENT.items():
        items = document.get(key)
        if not isinstance(items, list):
            raise damaged(key, f"{key!r} is not a list")
        for item in items:
            spec = _checked_spec(item, damaged, f"an entry of {key!r}")
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise damaged(key, f"an entry of {key!r} has no spec with a name")
            current.append((kind, spec["name"], json.dumps(spec, sort_keys=True)))
    items = document.get("versions")
    if not isinstance(items, list):
        raise damaged("versions", "'versions' is not a list")
    for item in items:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("kind", "name", "version")):
            raise damaged("versions", f"a stored version is not kind, name and version strings: {item!r:.200}")
        if "spec_text" in item and isinstance(item["spec_text"], str):
            every.append((item["kind"], item["name"], item["version"], item["spec_text"]))
            continue
        spec = _checked_spec(item, damaged, f"{item['kind']} {item['name']!r} at version {item['version']}")
        every.append((item["kind"], item["name"], item["version"], json.dumps(spec, sort_keys=True)))
    registry = Registry()
    registry.install(current, every, damaged)
    return registry


def _checked_spec(item: object, damaged: Callable[[str, str], InputError], what: str) -> Any:
    """The spec of a document entry, checked to be the version it is filed under."""
    if not isinstance(item, dict) or not isinstance(item.get("spec"), dict) or not isinstance(item.get("version"),
                                                                                               str):
        raise damaged("registry", f"{what} has no spec and version")
    spec = item["spec"]
    if spec_version(spec) != item["version"]:
        raise damaged("registry", f"{what}: its spec is not version {item['version']} (it was edited?)")
    return spec


def write_export(
    con: duckdb.DuckDBPyConnection, layouts: Mapping[str, ViewLayout], directory: str | os.PathLike[str],
    registry: Mapping[str, Any],
) -> dict[str, int]:
    """Write every view's history under ``directory``/views (one transaction's snapshot:
    the caller holds one) and the registry; returns the rows written per view. The
    directory must not exist: it is written as ``DIRECTORY.partial`` and renamed when
    complete, so a directory of that name is always a whole export."""
    final = Path(directory)
    if final.exists():
        raise InputError(f"{str(final)!r} exists; export into a new directory (an export is never merged)")
    if not final.parent.is_dir():
        raise InputError(f"{str(final.parent)!r} is not a directory; create it first or give another path")
    root = final.with_name(final.name + ".partial")
    if root.exists():
        raise InputError(f"{str(root)!r} exists (an export that did not finish?); remove it or give another path")
    (root / "views").mkdir(parents=True)
    try:
        rows = _write(con, layouts, root, registry)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    root.rename(final)
    return rows


def _write(con: duckdb.DuckDBPyConnection, layouts: Mapping[str, ViewLayout], root: Path,
           registry: Mapping[str, Any]) -> dict[str, int]:
    rows: dict[str, int] = {}
    for name, layout in layouts.items():
        columns = [*layout.key_names, *(f for f, _ in layout.features)]
        times_of = {f for f, dtype in layout.features if dtype == "timestamp"}
        if PARTITION in columns:
            raise SchemaError(
                f"view {name!r} has a column named {PARTITION!r}, the export's partition column; rename it to export",
                view=name, column=PARTITION,
            )
        times = [layout.ts, *([layout.created] if layout.created else [])]
        selected = [f"timezone('UTC', {quote(c)}) AS {quote(c)}" if c in times_of else quote(c) for c in columns]
        # Naive UTC in the file -> UTC-adjusted timestamps in Parquet (Spark's TimestampType).
        selected += [f"timezone('UTC', {quote(t)}) AS {quote(t)}" for t in times]
        selected += [f"{SEQ} AS {INGEST_ORDER}", f"CAST({quote(layout.ts)} AS DATE) AS {PARTITION}"]
        target = root / "views" / name
        count = run(con, f"SELECT count(*) FROM {layout.history_table}")[0][0]
        rows[name] = int(count)
        if not count:
            target.mkdir(parents=True, exist_ok=True)  # a view with no rows: an empty folder
            continue
        run(con, f"COPY (SELECT {', '.join(selected)} FROM {layout.history_table} ORDER BY {SEQ}) TO "
                 f"'{_sql_text(target)}' (FORMAT parquet, PARTITION_BY ({PARTITION}))")
    (root / "registry.json").write_text(json.dumps({**registry, "rows": rows}, indent=1), encoding="utf-8")
    return rows


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def read_registry(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The registry of an export directory, checked: its format and version."""
    path = Path(directory) / "registry.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{str(directory)!r} holds no registry.json: give a directory `featurelite export` "
                         "wrote") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{str(path)!r} cannot be read as an export's registry ({exc}); export the store "
                         "again") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is not a featurelite export's registry; give a directory "
                         "`featurelite export` wrote")
    if document.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{str(path)!r} is export format version {document.get('format_version')!r}; this featurelite reads "
            f"version {FORMAT_VERSION}: export the store again with this version (featurelite export STORE DIR)"
        )
    position, store = document.get("ingest_position"), document.get("store_id")
    if isinstance(position, bool) or not isinstance(position, int) or not isinstance(store, str):
        raise InputError(f"{str(path)!r} is damaged (its ingest_position or store_id is not what an export "
                         "writes); export the store again")
    return document
