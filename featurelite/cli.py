"""The ``featurelite`` command line: one command per Store method, the store path first.

A command opens the store (read-only when it only reads), calls one method and renders the
result: JSON on stdout by default, ``--format table`` for people, ``csv`` / ``parquet``
where rows come back. A ``FeatureliteError`` becomes one line on stderr and exit code 1;
usage errors exit 2. This is the only module that prints.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import runpy
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import pyarrow as pa

from ._version import __version__
from .definitions import Entity, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, StoreLockedError
from .serving_lock import server_holding
from .store import Store

__all__ = ["main"]

FORMATS = ("json", "table", "csv", "parquet")


# -- rendering -----------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as JSON can carry it: datetimes as ISO-8601 text, non-finite floats as
    the strings "NaN", "Infinity", "-Infinity" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    """Strict JSON text of a command's result."""
    return json.dumps(_plain(value), ensure_ascii=False, allow_nan=False)


def _table_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(no rows)"
    header = list(rows[0])
    cells = [[_cell(r.get(h)) for h in header] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return to_json(value)
    return str(value)


def emit(result: Any, fmt: str, output: str | None = None) -> None:
    """Write a result: a pyarrow Table in any format, other results as JSON or a table."""
    if isinstance(result, pa.Table):
        _emit_table(result, fmt, output)
        return
    if fmt in ("csv", "parquet"):
        raise click.UsageError(f"--format {fmt} is for commands that return rows; use json or table")
    if fmt == "table":
        rows = result if isinstance(result, list) else [result]
        text = _table_text([r if isinstance(r, dict) else {"value": r} for r in rows])
    else:
        text = to_json(result)
    _write_text(text, output)


def _emit_table(table: pa.Table, fmt: str, output: str | None) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        if output is None:
            if sys.stdout.isatty():
                raise click.UsageError("--format parquet writes binary; give --output FILE or redirect stdout")
            pq.write_table(table, sys.stdout.buffer)
        else:
            pq.write_table(table, output)
        return
    if fmt == "csv":
        import pyarrow.csv as pcsv

        if output is None:
            pcsv.write_csv(table, sys.stdout.buffer)
        else:
            pcsv.write_csv(table, output)
        return
    rows = table.to_pylist()
    _write_text(_table_text(rows) if fmt == "table" else to_json(rows), output)


def _write_text(text: str, output: str | None) -> None:
    if output is None:
        click.echo(text)
    else:
        Path(output).write_text(text + "\n", encoding="utf-8")


# -- errors and the store ------------------------------------------------------------


class _Failure(click.ClickException):
    """A featurelite error as one line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"Error: {self.message}", err=True)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except FeatureliteError as exc:
        raise _Failure(str(exc)) from None


@contextlib.contextmanager
def opened(path: str, *, read_only: bool) -> Iterator[Store]:
    """The store at ``path``; a store held by ``featurelite serve`` is reported as such."""
    if read_only and not os.path.exists(path):
        raise _Failure(f"no store at {path!r}; create one with `featurelite init {path}`")
    with _errors():
        try:
            store = Store(path, read_only=read_only)
        except StoreLockedError as exc:
            server = server_holding(path)
            if server is None:
                raise
            raise _Failure(
                f"store {path!r} is held by `featurelite serve` (pid {server['pid']}, {server['url']}); "
                f"{'read it through the server' if read_only else 'push rows through POST ' + server['url'] + '/push'}, "
                "or stop the server first"
            ) from exc
        with store:
            yield store


def _progress(label: str, quiet: bool) -> Callable[..., Any]:
    """A progress bar on stderr when it is a terminal, and nothing in pipes or with --quiet."""
    show = not quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def bar(items: Sequence[Any] | None = None, length: int | None = None) -> Iterator[Any]:
        if not show:
            yield _NoBar(items)
            return
        with click.progressbar(items, length=length, label=label, file=sys.stderr) as progress:  # type: ignore[arg-type]
            yield progress

    return bar


class _NoBar:
    def __init__(self, items: Sequence[Any] | None) -> None:
        self._items = items or []

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def update(self, n: int) -> None:
        pass


# -- shared options ------------------------------------------------------------------

_store_arg = click.argument("store", type=click.Path(dir_okay=False))


def _format_option(default: str = "json", choices: Sequence[str] = ("json", "table")) -> Callable[..., Any]:
    return click.option(
        "--format", "fmt", type=click.Choice(list(choices)), default=default, show_default=True,
        help="Output format.",
    )


_quiet = click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
_output = click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to FILE instead of stdout.")


def _moment(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 time like 2026-01-31T12:00:00", param_hint=what) from None


# -- commands --------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="featurelite")
def main() -> None:
    """featurelite: an embedded feature store in one DuckDB file.

    Every command takes the store file first and mirrors a Store method of the Python API
    (`featurelite get-online-features STORE` is `store.get_online_features(...)`). Results
    go to stdout as JSON unless --format says otherwise; errors go to stderr as one line
    with exit code 1.
    """


@main.command()
@_store_arg
@click.option("--example", is_flag=True, help="Also apply the demo definitions and ingest its example data.")
def init(store: str, example: bool) -> None:
    """Create a new, empty store (fails if STORE exists and is not a featurelite store).

    In Python: featurelite.open(STORE)."""
    existed = os.path.exists(store)
    with opened(store, read_only=False) as s, _errors():
        if example:
            from . import demo

            s.apply(demo.definitions())
            s.ingest("user_stats", demo.example_events())
        emit({"store": os.path.abspath(store), "created": not existed, "example": example}, "json")


@main.command()
@_store_arg
@click.argument("definitions", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Only show the plan; change nothing.")
@_format_option()
def apply(store: str, definitions: str, dry_run: bool, fmt: str) -> None:
    """Apply the entities, feature views and on-demand views defined in a Python file.

    Every Entity, FeatureView and OnDemandFeatureView at the top level of DEFINITIONS is
    applied. Shows the plan: added, changed, unchanged (a refused change is an error).

    In Python: store.apply([...], dry_run=...)."""
    objects = load_definitions(definitions)
    exists = os.path.exists(store)
    # A dry run against a store that does not exist yet plans against an empty one, in
    # memory: it must not create the file.
    target = store if exists or not dry_run else ":memory:"
    with opened(target, read_only=dry_run and exists) as s, _errors():
        result = s.apply(objects, dry_run=dry_run)
    rows = [
        {"action": action, "kind": c.kind, "name": c.name, "version": c.version, "previous_version": c.previous_version}
        for action, changes in (("added", result.added), ("changed", result.changed), ("unchanged", result.unchanged))
        for c in changes
    ]
    emit(rows if fmt == "table" else {"dry_run": dry_run, "plan": rows}, fmt)


def load_definitions(path: str) -> list[Entity | FeatureView | OnDemandFeatureView]:
    """The definitions a Python file creates at its top level, in definition order."""
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        namespace = runpy.run_path(path, run_name="featurelite_definitions")
    except FeatureliteError as exc:
        raise _Failure(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's file failed to run: say where
        raise _Failure(f"{path} failed to run: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    found = [v for v in namespace.values() if isinstance(v, (Entity, FeatureView, OnDemandFeatureView))]
    if not found:
        raise _Failure(f"{path} defines no Entity, FeatureView or OnDemandFeatureView at its top level")
    return found


@main.command()
@_store_arg
@click.argument("view")
@click.argument("files", nargs=-1, required=True)
@_quiet
def ingest(store: str, view: str, files: tuple[str, ...], quiet: bool) -> None:
    """Append Parquet or CSV FILES (paths or globs) to VIEW's history and update its
    online values. Each file is one atomic ingest.

    In Python: store.ingest(VIEW, FILE)."""
    paths: list[str] = []
    for pattern in files:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise _Failure(f"no file matches {pattern!r}")
        paths.extend(matched)
    for path in paths:
        if not os.path.isfile(path):
            raise _Failure(f"no file {path!r}")
    results = []
    with opened(store, read_only=False) as s, _errors(), _progress(f"ingest {view}", quiet)(paths) as bar:
        for path in bar:
            result = s.ingest(view, path)
            results.append({"file": path, "view": result.view, "rows": result.rows})
    emit({"view": view, "rows": sum(r["rows"] for r in results), "files": results}, "json")


@main.command()
@_store_arg
@click.argument("views", nargs=-1)
@click.option("--end-date", help="Count only events at or before this ISO-8601 time.")
@_quiet
def materialize(store: str, views: tuple[str, ...], end_date: str | None, quiet: bool) -> None:
    """Rebuild the online values of VIEWS (default: all) from their history.

    In Python: store.materialize(VIEWS, end_date=...)."""
    end = _moment(end_date, "--end-date")
    with opened(store, read_only=False) as s, _errors():
        names = list(views) or [v.name for v in s.list_feature_views()]
        results = []
        with _progress("materialize", quiet)(names) as bar:
            for name in bar:
                results += s.materialize(name, end_date=end)
    emit([{"view": r.view, "online_rows": r.online_rows} for r in results], "json")


def _parse_pairs(pairs: Sequence[str], what: str) -> dict[str, list[Any]]:
    """``key=value`` pairs (repeatable) as columns; values are JSON when they parse as JSON."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        key, text = pair.split("=", 1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        columns.setdefault(key, []).append(value)
    return columns


def _json_option(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (json.JSONDecodeError, OSError) as exc:
        raise click.BadParameter(f"not JSON (or @file of JSON): {exc}", param_hint=what) from None


@main.command("get-online-features")
@_store_arg
@click.option("--feature", "-f", "features", multiple=True, required=True, help="A view:feature reference (repeatable).")
@click.option("--entity", "-e", "entity_pairs", multiple=True, help="A join key value, KEY=VALUE (repeat per entity).")
@click.option("--entities", "entities_json", help="Entities as JSON: [{key: value}, ...] or {key: [values]}; @FILE reads a file.")
@click.option("--request", "-r", "request_pairs", multiple=True, help="A request field value, FIELD=VALUE (repeat per entity).")
@click.option("--request-data", "request_json", help="Request data as JSON {field: [values]}; @FILE reads a file.")
@click.option("--now", help="Serve as of this ISO-8601 time (default: now).")
@click.option("--statuses", is_flag=True, help="Also return each value's status.")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(choices=FORMATS)
@_output
def get_online_features(
    store: str, features: tuple[str, ...], entity_pairs: tuple[str, ...], entities_json: str | None,
    request_pairs: tuple[str, ...], request_json: str | None, now: str | None, statuses: bool,
    full_feature_names: bool, fmt: str, output: str | None,
) -> None:
    """Latest feature values for some entities.

    Example: featurelite get-online-features shop.duckdb -f user_stats:spend_7d -e user_id=42

    In Python: store.get_online_features(entities, features, request_data=..., now=...)."""
    if entities_json is not None and entity_pairs:
        raise click.UsageError("give entities with --entity or --entities, not both")
    entities = _json_option(entities_json, "--entities") if entities_json is not None else _parse_pairs(entity_pairs, "--entity")
    if not entities:
        raise click.UsageError("give at least one entity: --entity KEY=VALUE or --entities JSON")
    request = _json_option(request_json, "--request-data") if request_json is not None else _parse_pairs(request_pairs, "--request")
    with opened(store, read_only=True) as s, _errors():
        response = s.get_online_features(
            entities, list(features), request_data=request or None, full_feature_names=full_feature_names,
            now=_moment(now, "--now"),
        )
        if fmt in ("csv", "parquet") or (fmt == "table" and not statuses):
            emit(response.to_arrow(), fmt, output)
            return
        result: dict[str, Any] = response.to_dict()
        if statuses:
            result = {"values": result, "statuses": response.statuses}
    emit(result if fmt == "json" else [{"feature": k, "status": v} for k, v in response.statuses.items()], fmt, output)


@main.command("get-historical-features")
@_store_arg
@click.argument("entity_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--feature", "-f", "features", multiple=True, required=True, help="A view:feature reference (repeatable).")
@click.option("--timestamp-field", help="The entity file's event time column (default: event_timestamp or the only timestamp).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(default="parquet", choices=FORMATS)
@_output
def get_historical_features(
    store: str, entity_file: str, features: tuple[str, ...], timestamp_field: str | None,
    full_feature_names: bool, fmt: str, output: str | None,
) -> None:
    """A point-in-time correct training set for the rows of ENTITY_FILE (Parquet or CSV).

    Example: featurelite get-historical-features shop.duckdb spine.parquet -f user_stats:spend_7d -o train.parquet

    In Python: store.get_historical_features(entity_df, features)."""
    with opened(store, read_only=True) as s, _errors():
        table = s.get_historical_features(
            entity_file, list(features), timestamp_field=timestamp_field, full_feature_names=full_feature_names
        )
    emit(table, fmt, output)


@main.command("list")
@_store_arg
@_format_option()
def list_(store: str, fmt: str) -> None:
    """Entities, feature views (with row counts and last event time), on-demand views and
    their featurizers, with their versions.

    In Python: store.list_entities(), store.list_feature_views(), store.list_on_demand_feature_views()."""
    with opened(store, read_only=True) as s, _errors():
        rows: list[dict[str, Any]] = []
        for ent in s.list_entities():
            rows.append({"kind": "entity", "name": ent.name, "version": ent.version, "details": ", ".join(ent.join_keys)})
        for view in s.list_feature_views():
            info = s.describe(view.name)
            rows.append({
                "kind": "feature_view", "name": view.name, "version": view.version,
                "details": f"{info['history_rows']} rows, {info['online_rows']} entities, last event {info['last_event']}",
                "history_rows": info["history_rows"], "online_rows": info["online_rows"], "last_event": info["last_event"],
                "features": view.features,
            })
            rows += _featurizer_rows(view.name, view.featurizers)
        for odfv in s.list_on_demand_feature_views():
            rows.append({"kind": "on_demand_feature_view", "name": odfv.name, "version": odfv.version,
                         "details": ", ".join(odfv.features), "features": odfv.features})
            rows += _featurizer_rows(odfv.name, odfv.featurizers)
    if fmt == "table":
        rows = [{k: r.get(k) for k in ("kind", "name", "version", "details")} for r in rows]
    emit(rows, fmt)


def _featurizer_rows(owner: str, featurizers: Any) -> list[dict[str, Any]]:
    rows = []
    for key, fz in featurizers.items():
        names = [key] if isinstance(key, str) else list(key)
        signature = ", ".join(f"{p}: {d}" for p, d in fz.inputs) + " -> " + ", ".join(fz.outputs)
        rows.append({"kind": "featurizer", "name": f"{owner}:{fz.name}", "version": fz.version,
                     "details": f"({signature}) computes {', '.join(names)}", "features": names})
    return rows


@main.command()
@_store_arg
@click.argument("name")
@_format_option()
def describe(store: str, name: str, fmt: str) -> None:
    """A feature view's definition, version, row counts and event time range, or an
    on-demand view's definition.

    In Python: store.describe(NAME)."""
    with opened(store, read_only=True) as s, _errors():
        odfvs = {o.name: o for o in s.list_on_demand_feature_views()}
        if name in odfvs:
            odfv = odfvs[name]
            info: dict[str, Any] = {"name": name, "kind": "on_demand_feature_view", "version": odfv.version, "spec": odfv.spec()}
        else:
            info = s.describe(name)
    emit(info if fmt == "json" else [{"field": k, "value": v} for k, v in info.items()], fmt)


@main.command("list-versions")
@_store_arg
@click.argument("name")
@_format_option()
def list_versions(store: str, name: str, fmt: str) -> None:
    """Every version of a definition ever applied, oldest first.

    In Python: store.list_versions(NAME)."""
    with opened(store, read_only=True) as s, _errors():
        versions = s.list_versions(name)
    if fmt == "table":
        versions = [{k: v for k, v in row.items() if k != "spec"} for row in versions]
    emit(versions, fmt)


@main.command("delete-feature-view")
@_store_arg
@click.argument("name")
def delete_feature_view(store: str, name: str) -> None:
    """Remove a feature view and all its data, or an on-demand view.

    In Python: store.delete_feature_view(NAME)."""
    with opened(store, read_only=False) as s, _errors():
        s.delete_feature_view(name)
    emit({"deleted": name}, "json")


@main.command()
@_store_arg
@click.argument("name", required=False)
@click.option("--examples", default=1000, show_default=True, help="Generated rows per featurizer.")
@click.option("--seed", default=0, show_default=True, help="Seed of the generated inputs.")
@_format_option()
def verify(store: str, name: str | None, examples: int, seed: int, fmt: str) -> None:
    """Check every featurizer (or those of view NAME) gives the same bits in the batch and
    per-request paths. Exit code 1 when one does not.

    In Python: store.verify(NAME, examples=..., seed=...)."""
    with opened(store, read_only=True) as s, _errors():
        results = s.verify(name, examples=examples, seed=seed)
    rows = [
        {"view": r.view, "features": list(r.features), "featurizer": r.featurizer, "examples": r.examples, "ok": r.ok,
         "mismatch": None if r.ok else str(r.mismatch)}
        for r in results
    ]
    emit(rows, fmt)
    failed = [r for r in results if not r.ok]
    if failed:
        raise _Failure(f"{len(failed)} featurizer(s) differ between the batch and per-request paths: "
                       + "; ".join(str(r.mismatch) for r in failed))


@main.command()
@_store_arg
def checkpoint(store: str) -> None:
    """Fold the write-ahead log into the store file.

    In Python: store.checkpoint()."""
    with opened(store, read_only=False) as s, _errors():
        s.checkpoint()
    emit({"checkpoint": os.path.abspath(store)}, "json")


@main.command()
@_store_arg
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=6566, show_default=True, help="Port to bind.")
@click.option("--token", envvar="FEATURELITE_TOKEN", help="Bearer token every endpoint but /health requires "
              "(default: $FEATURELITE_TOKEN; none: no auth).")
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, help="Largest request body, in bytes.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(store: str, host: str, port: int, token: str | None, max_body: int, log_level: str) -> None:
    """Serve the store over HTTP: online features, pushes, health and metrics.

    The server holds the store file for writing while it runs. Needs the server extra:
    pip install 'featurelite[server]'."""
    try:
        from . import server
    except ImportError as exc:
        raise _Failure(f"`featurelite serve` needs the server extra ({exc.name} is missing); "
                       "pip install 'featurelite[server]'") from None
    with _errors():
        server.run(store, host=host, port=port, token=token, max_body=max_body, log_level=log_level)


if __name__ == "__main__":  # pragma: no cover
    main()
