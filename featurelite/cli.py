"""The ``featurelite`` command line: one command per Store method, the store path first.

A command opens the store (read-only when it only reads), calls one method and renders the
result (:mod:`featurelite.cli_output`: JSON on stdout by default, ``--format table`` for
people, ``csv`` / ``parquet`` where rows come back). A ``FeatureliteError`` becomes one
line on stderr and exit code 1; usage errors exit 2 (option values are read by
:mod:`featurelite.cli_input`). The CLI modules are the only ones that print.

The commands that read or push also work on a running server: ``--url URL`` (or
``$FEATURELITE_URL``) in place of the store path, through the remote client
(:mod:`featurelite.http_client`), with ``--token`` (or ``$FEATURELITE_TOKEN``). A store file
held by a running ``featurelite serve`` is used through that server, said in one line on
stderr. ``freshness`` and ``consistency`` exit with code 3 when what they check fails.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import runpy
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._version import __version__
from .cli_input import MOMENT, at_files, entities_option, manifest_file, request_data_option, which_features
from .cli_output import (
    CHECK_FAILED,
    CommandFailure,
    checked_output,
    consistency_text,
    emit,
    emit_text,
    freshness_rows,
    one_line,
    online_rows,
    table_text,
    with_status_columns,
)
from .cli_serve import TOKEN_ENV, URL_ENV, check_bind, check_client_token, check_token
from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, StoreLockedError
from .manifest import Manifest
from .results import OnlineResponse
from .search import KINDS as SEARCH_KINDS
from .serving_lock import server_holding
from .statistics import PERIODS as STATS_PERIODS
from .store import Store

if TYPE_CHECKING:
    from .http_client import RemoteStore

__all__ = ["main"]

FORMATS = ("json", "table", "csv", "parquet")
#: The most examples ``verify`` generates per featurizer: a bound so that a slip of the
#: finger (an extra zero or three) is a usage error, not a run that fills the memory.
MAX_EXAMPLES = 10_000_000


# -- errors and the store ------------------------------------------------------------


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except FeatureliteError as exc:
        raise CommandFailure(str(exc)) from None


@contextlib.contextmanager
def opened(path: str, *, read_only: bool, must_exist: bool = False) -> Iterator[Store]:
    """The store at ``path``; a store held by ``featurelite serve`` is reported as such.
    A command that reads (or that only changes what is there, ``must_exist``) does not
    create a missing store."""
    if (read_only or must_exist) and not os.path.exists(path):
        raise CommandFailure(f"no store at {path!r}; create one with `featurelite init {path}`")
    with _errors():
        try:
            store = Store(path, read_only=read_only)
        except StoreLockedError as exc:
            server = server_holding(path)
            if server is None:
                raise
            instead = "read it through the server" if read_only else "push rows through POST " + server["url"] + "/push"
            raise CommandFailure(
                f"store {path!r} is held by `featurelite serve` (pid {server['pid']}, {server['url']}); "
                f"{instead}, or stop the server first"
            ) from exc
        with store:
            yield store


# -- a store file or a server ----------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """What a command works on: a store file, or the server at ``url``."""

    store: str | None
    url: str | None
    token: str | None
    #: Where the token came from, for its error message ('--token' or '$FEATURELITE_TOKEN').
    token_hint: str = "'--token'"


#: The first bytes of a DuckDB file hold this at offset 8.
_DUCKDB_MAGIC = b"DUCK"


def _is_store_file(path: str) -> bool:
    """Whether ``path`` is a DuckDB file (what a store is), by its header."""
    try:
        with open(path, "rb") as stream:
            return stream.read(12)[8:12] == _DUCKDB_MAGIC
    except (OSError, ValueError):
        return False


def where(ctx: click.Context, store: str | None, given: Sequence[str | None], *, names: Sequence[str],
          required: int, variadic: bool = False) -> tuple[Where, list[str]]:
    """The store file or server a command works on, and its other positional arguments.

    Positional arguments are declared optional and sorted out here, since STORE is left
    out when a server is named: with ``--url``, every positional argument is one of the
    command's own (``names``); with ``$FEATURELITE_URL`` set, too, unless the first one is
    a store file. Then at least ``required`` of them must be given (at most
    ``len(names)`` unless ``variadic``)."""
    url: str | None = ctx.params.get("url")
    token: str | None = ctx.params.get("token")
    given_here = click.core.ParameterSource.COMMANDLINE
    hint = "'--token'" if ctx.get_parameter_source("token") is given_here else f"'${TOKEN_ENV}'"
    values = [v for v in (store, *given) if v is not None]
    explicit = url is not None and ctx.get_parameter_source("url") is given_here
    remote = url is not None and (explicit or not (values and _is_store_file(values[0])))
    if remote:
        found = Where(None, url, token, hint)
        args = values
    else:
        if not values:
            raise click.UsageError(f"give the store file STORE, or a server with --url URL (or ${URL_ENV})")
        if os.path.isdir(values[0]):
            raise click.BadParameter(f"{values[0]!r} is a folder; give a store file", param_hint="'STORE'")
        found = Where(values[0], None, token, hint)
        args = values[1:]
    if len(args) < required:
        raise click.UsageError(f"Missing argument '{names[len(args)]}'.")
    if not variadic and len(args) > len(names):
        leave = f"; with --url (or ${URL_ENV}) leave STORE out" if remote else ""
        raise click.UsageError(f"Got unexpected extra argument ({args[len(names)]}){leave}")
    return found, args


@contextlib.contextmanager
def reached(target: Where, *, read_only: bool, must_exist: bool = False) -> Iterator[Store | RemoteStore]:
    """The store a command works on: the server at ``target.url``, or the store file, or,
    when a running ``featurelite serve`` holds the file, that server (said on stderr)."""
    if target.url is not None:
        with _remote(target.url, target) as remote:
            yield remote
        return
    path = target.store
    assert path is not None
    if (read_only or must_exist) and not os.path.exists(path):
        raise CommandFailure(f"no store at {path!r}; create one with `featurelite init {path}`")
    local: Store | None = None
    served = ""
    with _errors():
        try:
            local = Store(path, read_only=read_only)
        except StoreLockedError:
            server = server_holding(path)
            if server is None:
                raise
            served = str(server["url"])
    if local is None:
        click.echo(f"using the server at {served}, which holds {path}", err=True)
        with _remote(served, target) as remote:
            yield remote
        return
    with local:
        yield local


@contextlib.contextmanager
def _remote(url: str, target: Where) -> Iterator[RemoteStore]:
    from .http_client import connect  # the client (httpx) only when a server is used

    token = check_client_token(target.token, target.token_hint)
    with _errors():
        remote = connect(url, token=token)
    with remote:
        yield remote


class _StoreOrServer(click.Command):
    """A command that works on a store file or a server: its usage line says so."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["[STORE | --url URL]" if piece == "STORE" else piece for piece in super().collect_usage_pieces(ctx)]


def _store_or_url(command: Callable[..., Any]) -> Callable[..., Any]:
    """STORE (optional, sorted out by :func:`where`), ``--url`` and ``--token``."""
    command = click.option(
        "--token", envvar=TOKEN_ENV, metavar="TOKEN",
        help=f"The server's bearer token, with --url or a store a server holds (default: ${TOKEN_ENV}).",
    )(command)
    command = click.option(
        "--url", envvar=URL_ENV, metavar="URL",
        help=f"Use the featurelite server at URL instead of a store file: leave STORE out (default: ${URL_ENV}, "
        "unless STORE is given).",
    )(command)
    return click.argument("store", required=False, metavar="STORE")(command)


def _progress(label: str, quiet: bool) -> Callable[..., Any]:
    """A progress bar on stderr when it is a terminal, and nothing in pipes or with --quiet."""
    show = not quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def bar(items: Sequence[Any] | None = None, length: int | None = None) -> Iterator[Any]:
        if not show:
            yield _NoBar(items)
            return
        with click.progressbar(items, length=length, label=label, file=sys.stderr) as progress:
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


# -- commands --------------------------------------------------------------------------


class _Group(click.Group):
    """click's group, with every error message kept to one line.

    click prints a usage error as a ``Usage:`` line, a ``Try ... --help`` line and one
    ``Error:`` line (exit code 2); its messages can quote an argument verbatim, line breaks
    and all, so the message is folded onto one line before it is shown."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            # `featurelite` alone asks for help: give it, on stdout, as --help does (click
            # would print it to stderr with exit code 2, an error without an Error: line).
            click.echo(exc.ctx.get_help())
            sys.exit(0)
        except click.ClickException as exc:
            # click types ``message`` as Final, but it is a plain attribute its own
            # exceptions set in __init__; folding it in place keeps click's usage display.
            exc.message = one_line(exc.message)  # type: ignore[misc]
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        # Without standalone mode click returns what the command returned (None) or the
        # code of a ctx.exit() (--help, --version).
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="featurelite")
def main() -> None:
    """featurelite: an embedded feature store in one DuckDB file.

    Every command takes the store file first and mirrors a Store method of the Python API
    (`featurelite get-online-features STORE` is `store.get_online_features(...)`). Results
    go to stdout as JSON unless --format says otherwise; errors go to stderr as one line
    with exit code 1.

    The commands that read or push take --url URL (or $FEATURELITE_URL) in place of STORE
    to use a running `featurelite serve`, and use it by themselves when it holds STORE.
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
    """Apply the entities, feature views, on-demand views and feature services defined in
    a Python file.

    Every Entity, FeatureView, OnDemandFeatureView and FeatureService at the top level of
    DEFINITIONS is applied; a feature service is pinned to the versions in force after the
    apply. Shows the plan: added, changed, unchanged (a refused change is an error), and
    the affected services: those not in the file that pin an older version of a
    definition the apply changes (they keep serving it until applied again; `problem` says
    when they no longer can).

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
    affected = [
        {"service": i.service, "definition": i.definition, "pinned_version": i.pinned_version,
         "new_version": i.new_version, "problem": i.problem}
        for i in result.affected_services
    ]
    if fmt != "table":
        emit({"dry_run": dry_run, "plan": rows, "affected_services": affected}, fmt)
        return
    text = table_text(rows)
    if affected:
        text += ("\n\nfeature services that pin an older version (they keep it until applied again):\n"
                 + table_text(affected))
    emit_text(text)


Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService
_DEFINITION_TYPES = (Entity, FeatureView, OnDemandFeatureView, FeatureService)


def load_definitions(path: str) -> list[Definition]:
    """The definitions a Python file creates at its top level, in definition order."""
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # so the file can import its neighbours
    try:
        namespace = runpy.run_path(path, run_name="featurelite_definitions")
    except FeatureliteError as exc:
        raise CommandFailure(f"{path}: {exc}") from None
    except SystemExit as exc:  # the file called sys.exit(): its code is not ours to exit with
        raise CommandFailure(f"{path} exited (sys.exit({exc.code!r})) instead of defining its objects") from None
    except Exception as exc:  # noqa: BLE001 - the user's file failed to run, whatever it raised: say where
        raise CommandFailure(f"{path} failed to run: {type(exc).__name__}: {exc}") from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    found: list[Definition] = [v for v in namespace.values() if isinstance(v, _DEFINITION_TYPES)]
    if not found:
        raise CommandFailure(
            f"{path} defines no Entity, FeatureView, OnDemandFeatureView or FeatureService at its top level"
        )
    return found


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("view", required=False, metavar="VIEW")
@click.argument("files", nargs=-1, metavar="FILES...")
@_quiet
@click.pass_context
def ingest(ctx: click.Context, store: str | None, view: str | None, files: tuple[str, ...], quiet: bool,
           url: str | None, token: str | None) -> None:
    """Append Parquet or CSV FILES (paths or globs) to VIEW's history and update its
    online values. Each file is one atomic ingest.

    With --url (or when a server holds STORE) each file is pushed through the server, one
    atomic ingest there.

    In Python: store.ingest(VIEW, FILE)."""
    target, args = where(ctx, store, [view, *files], names=["VIEW", "FILES..."], required=2, variadic=True)
    view, patterns = args[0], args[1:]
    paths: list[str] = []
    for pattern in patterns:
        matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matched:
            raise CommandFailure(f"no file matches {pattern!r}")
        paths.extend(matched)
    for path in paths:
        if not os.path.isfile(path):
            raise CommandFailure(f"no file {path!r}")
    results: list[dict[str, Any]] = []
    with reached(target, read_only=False) as s, _errors(), _progress(f"ingest {view}", quiet)(paths) as bar:
        for path in bar:
            try:
                result = s.ingest(view, path)
            except FeatureliteError as exc:
                # Each file is its own atomic ingest: say which files landed before this one.
                landed = ", ".join(f"{r['file']} ({r['rows']} rows)" for r in results)
                raise CommandFailure(
                    f"{path}: {exc}" + (f" (already ingested, each whole: {landed})" if landed else "")
                ) from None
            results.append({"file": path, "view": result.view, "rows": result.rows})
    emit({"view": view, "rows": sum(r["rows"] for r in results), "files": results}, "json")


@main.command()
@_store_arg
@click.argument("views", nargs=-1)
@click.option("--end-date", type=MOMENT, help="Count only events at or before this ISO-8601 time.")
@_quiet
def materialize(store: str, views: tuple[str, ...], end_date: datetime | None, quiet: bool) -> None:
    """Rebuild the online values of VIEWS (default: all) from their history, all of them
    or none (an unknown view changes nothing).

    In Python: store.materialize(VIEWS, end_date=...)."""
    # One call for all views: the store rebuilds them in one transaction. A loop of one
    # call per view (as this command once did) left the first views rebuilt when a later
    # name was unknown, with exit code 1.
    with opened(store, read_only=False) as s, _errors(), _progress("materialize", quiet)(length=1) as bar:
        results = s.materialize(list(views) or None, end_date=end_date)
        bar.update(1)
    emit([{"view": r.view, "online_rows": r.online_rows} for r in results], "json")


_service_option = click.option(
    "--service", "-s", metavar="NAME", help="Read feature service NAME at its pinned versions (instead of --feature)."
)


@main.command("get-online-features", cls=_StoreOrServer)
@_store_or_url
@click.option(
    "--feature", "-f", "features", multiple=True,
    help="A view:feature (or view@version:feature) reference (repeatable).",
)
@_service_option
@click.option(
    "--manifest", "manifest_path", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
    help="Serve what the training set FILE (Parquet, or its manifest as JSON) was built with: alone, its features "
    "at its versions; with --feature or --service, refuse if those read other versions.",
)
@click.option("--entity", "-e", "entity_pairs", multiple=True, help="A join key value, KEY=VALUE (repeat per entity).")
@click.option(
    "--entities", "entities_json", help="Entities as JSON: [{key: value}, ...] or {key: [values]}; @FILE reads a file."
)
@click.option(
    "--request", "-r", "request_pairs", multiple=True, help="A request field value, FIELD=VALUE (repeat per entity)."
)
@click.option("--request-data", "request_json", help="Request data as JSON {field: [values]}; @FILE reads a file.")
@click.option("--now", type=MOMENT, help="Serve as of this ISO-8601 time (default: now).")
@click.option("--statuses", is_flag=True, help="Also return each value's status (a FEATURE:status column in tables).")
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(choices=FORMATS)
@_output
@click.pass_context
def get_online_features(
    ctx: click.Context, store: str | None, features: tuple[str, ...], service: str | None,
    manifest_path: str | None, entity_pairs: tuple[str, ...], entities_json: str | None,
    request_pairs: tuple[str, ...], request_json: str | None, now: datetime | None, statuses: bool,
    full_feature_names: bool, fmt: str, output: str | None, url: str | None, token: str | None,
) -> None:
    """Latest feature values for some entities.

    Example: featurelite get-online-features shop.duckdb -f user_stats:spend_7d -e user_id=42

    Name the features with --feature, or read a feature service with --service NAME, or
    serve a training set's features with --manifest FILE.

    With --format table a value that is not PRESENT shows its status, e.g. [NOT_FOUND] or
    [OUTSIDE_MAX_AGE].

    In Python: store.get_online_features(entities, features, service=..., manifest=..., request_data=...,
    now=...)."""
    target, _ = where(ctx, store, [], names=[], required=0)
    which_features(features, service, manifest_path, "--manifest")
    if entities_json is not None and entity_pairs:
        raise click.UsageError("give entities with --entity or --entities, not both")
    if request_json is not None and request_pairs:
        raise click.UsageError("give request data with --request or --request-data, not both")
    entities = entities_option(entity_pairs, entities_json)
    request = request_data_option(request_pairs, request_json)
    inputs = at_files(entities_json, request_json) + ([manifest_path] if manifest_path else [])
    written = checked_output(output, store=target.store, inputs=inputs)
    manifest = None if manifest_path is None else manifest_file(manifest_path, "--manifest")
    with reached(target, read_only=True) as s, _errors():
        response = s.get_online_features(
            entities, list(features) or None, service=service, manifest=manifest, request_data=request or None,
            full_feature_names=full_feature_names, now=now,
        )
        result = _online_result(response, fmt, statuses)
    emit(result, fmt, written)


def _online_result(response: OnlineResponse, fmt: str, statuses: bool) -> Any:
    """What get-online-features shows in ``fmt``: a table of values for csv and parquet
    (with ``FEATURE:status`` columns), rows for a table, ``{column: [values]}`` for JSON
    (under ``values``, next to ``statuses``, with ``--statuses``)."""
    if fmt in ("csv", "parquet"):
        table = response.to_arrow()
        return with_status_columns(table, response) if statuses else table
    if fmt == "table":
        return online_rows(response, statuses)
    result: dict[str, Any] = response.to_dict()
    return {"values": result, "statuses": response.statuses} if statuses else result


@main.command("get-historical-features", cls=_StoreOrServer)
@_store_or_url
@click.argument("entity_file", required=False, metavar="ENTITY_FILE")
@click.option(
    "--feature", "-f", "features", multiple=True,
    help="A view:feature (or view@version:feature) reference (repeatable).",
)
@_service_option
@click.option(
    "--as-of", "as_of_path", type=click.Path(exists=True, dir_okay=False), metavar="FILE",
    help="Rebuild the training set FILE (Parquet, or its manifest as JSON): its features at its versions, from the "
    "rows ingested before it was built.",
)
@click.option(
    "--timestamp-field", help="The entity file's event time column (default: event_timestamp or the only timestamp)."
)
@click.option("--full-feature-names", is_flag=True, help="Name features view__feature.")
@_format_option(default="parquet", choices=FORMATS)
@_output
@click.pass_context
def get_historical_features(
    ctx: click.Context, store: str | None, entity_file: str | None, features: tuple[str, ...], service: str | None,
    as_of_path: str | None, timestamp_field: str | None, full_feature_names: bool, fmt: str, output: str | None,
    url: str | None, token: str | None,
) -> None:
    """A point-in-time correct training set for the rows of ENTITY_FILE (Parquet or CSV).

    Example: featurelite get-historical-features shop.duckdb spine.parquet -f user_stats:spend_7d -o train.parquet

    Name the features with --feature, or read a feature service with --service NAME, or
    rebuild an earlier training set with --as-of FILE. Parquet output carries the
    training set's manifest in its schema metadata (csv, json and table do not).

    --output is written whole or not at all, and may not be the store (or its .wal), ENTITY_FILE
    or the --as-of FILE.

    With --url (or when a server holds STORE) ENTITY_FILE is read here and streamed to the
    server as Arrow, and the training set streams back the same way.

    In Python: store.get_historical_features(entity_df, features, service=..., as_of=...)."""
    target, (entity_file,) = where(ctx, store, [entity_file], names=["ENTITY_FILE"], required=1)
    if not os.path.exists(entity_file):
        raise click.BadParameter(f"File {entity_file!r} does not exist.", param_hint="'ENTITY_FILE'")
    if os.path.isdir(entity_file):
        raise click.BadParameter(f"File {entity_file!r} is a directory.", param_hint="'ENTITY_FILE'")
    which_features(features, service, as_of_path, "--as-of")
    written = checked_output(output, store=target.store, inputs=[entity_file, *([as_of_path] if as_of_path else [])])
    as_of: Manifest | None = None if as_of_path is None else manifest_file(as_of_path, "--as-of")
    with reached(target, read_only=True) as s, _errors():
        table = s.get_historical_features(
            entity_file, list(features) or None, service=service, as_of=as_of, timestamp_field=timestamp_field,
            full_feature_names=full_feature_names,
        )
    emit(table, fmt, written)


@main.command("list", cls=_StoreOrServer)
@_store_or_url
@_format_option()
@click.pass_context
def list_(ctx: click.Context, store: str | None, fmt: str, url: str | None, token: str | None) -> None:
    """Entities, feature views (with row counts and last event time, their featurizers and
    windowed aggregations), on-demand views and their featurizers, and feature services
    (with the version of each definition they pin), with their versions.

    In Python: store.list_entities(), store.list_feature_views(), store.list_on_demand_feature_views(),
    store.list_feature_services()."""
    target, _ = where(ctx, store, [], names=[], required=0)
    with reached(target, read_only=True) as s, _errors():
        rows: list[dict[str, Any]] = []
        for ent in s.list_entities():
            rows.append({"kind": "entity", "name": ent.name, "version": ent.version,
                         "details": ", ".join(ent.join_keys), **_metadata(ent)})
        for view in s.list_feature_views():
            info = s.describe(view.name)
            rows.append({
                "kind": "feature_view", "name": view.name, "version": view.version,
                "details": f"{info['history_rows']} rows, {info['online_rows']} entities, "
                           f"last event {info['last_event']}",
                "history_rows": info["history_rows"], "online_rows": info["online_rows"],
                "last_event": info["last_event"],
                "features": list(view.feature_schema), **_metadata(view),
                "feature_metadata": {
                    feature: {"description": f.description, "owner": f.owner, "tags": dict(f.tags)}
                    for feature, f in view.fields.items() if f.description or f.owner or f.tags
                },
            })
            rows += _featurizer_rows(view.name, view.featurizers)
            rows += _aggregation_rows(view)
        for odfv in s.list_on_demand_feature_views():
            rows.append({"kind": "on_demand_feature_view", "name": odfv.name, "version": odfv.version,
                         "details": ", ".join(odfv.features), "features": odfv.features, **_metadata(odfv)})
            rows += _featurizer_rows(odfv.name, odfv.featurizers)
        for service in s.list_feature_services():
            pins = dict(service.pins)
            rows.append({
                "kind": "feature_service", "name": service.name, "version": service.version,
                "details": f"{len(service.features)} feature(s); pins "
                           + ", ".join(f"{name}@{version}" for name, version in pins.items()),
                "features": list(service.features), "pins": pins, **_metadata(service),
            })
    if fmt == "table":
        rows = [{k: r.get(k) for k in ("kind", "name", "version", "details")} for r in rows]
    emit(rows, fmt)


def _metadata(definition: Any) -> dict[str, Any]:
    """A definition's description, owner and tags, for `list`."""
    return {"description": definition.description, "owner": definition.owner, "tags": dict(definition.tags)}


def _aggregation_rows(view: Any) -> list[dict[str, Any]]:
    return [
        {"kind": "aggregation", "name": f"{view.name}:{a.name}", "version": None,
         "details": f"{a.function} of {a.column} over {a.window_text} -> {dtype}", "features": [a.name]}
        for a, dtype in zip(view.aggregations, view.aggregation_schema.values(), strict=True)
    ]


def _featurizer_rows(owner: str, featurizers: Any) -> list[dict[str, Any]]:
    rows = []
    for key, fz in featurizers.items():
        names = [key] if isinstance(key, str) else list(key)
        signature = ", ".join(f"{p}: {d}" for p, d in fz.inputs) + " -> " + ", ".join(fz.outputs)
        rows.append({"kind": "featurizer", "name": f"{owner}:{fz.name}", "version": fz.version,
                     "details": f"({signature}) computes {', '.join(names)}", "features": names})
    return rows


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("name", required=False, metavar="NAME")
@_format_option()
@click.pass_context
def describe(ctx: click.Context, store: str | None, name: str | None, fmt: str, url: str | None,
             token: str | None) -> None:
    """A feature view's definition, version, row counts and event time range, an on-demand
    view's definition, or a feature service's features and pinned versions.

    In Python: store.describe(NAME)."""
    target, (name,) = where(ctx, store, [name], names=["NAME"], required=1)
    with reached(target, read_only=True) as s, _errors():
        # The Python call, for feature views and on-demand views alike (issue 10 #19: the
        # CLI once described on-demand views itself, and store.describe could not).
        info: dict[str, Any] = s.describe(name)
    emit(info if fmt == "json" else [{"field": k, "value": v} for k, v in info.items()], fmt)


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("text", required=False, metavar="TEXT")
@click.option("--tag", "tag_pairs", multiple=True, metavar="KEY=VALUE", help="Only definitions with this tag "
              "(repeatable; a feature has its view's tags and its own).")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(list(SEARCH_KINDS)),
              help="Only this kind of definition (repeatable).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Hits at most.")
@_format_option()
@click.pass_context
def search(ctx: click.Context, store: str | None, text: str | None, tag_pairs: tuple[str, ...],
           kinds: tuple[str, ...], limit: int, fmt: str, url: str | None, token: str | None) -> None:
    """Entities, views, features, on-demand views, services and featurizers whose name,
    description, tags or owner match every word of TEXT, best first (a word in the name
    scores most). TEXT may be left out to list everything with the --tag given.

    Example: featurelite search shop.duckdb spend --tag team=growth

    In Python: store.search(TEXT, tags={KEY: VALUE}, kinds=[...])."""
    target, args = where(ctx, store, [text], names=["TEXT"], required=0)
    tags: dict[str, str] = {}
    for pair in tag_pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = value
    with reached(target, read_only=True) as s, _errors():
        hits = s.search(args[0] if args else "", tags=tags or None, kinds=list(kinds) or None, limit=limit)
    rows = [hit.to_dict() for hit in hits]
    if fmt == "table":
        rows = [{"kind": h.kind, "name": h.name, "description": h.description, "matched": ", ".join(h.matched)}
                for h in hits]
    emit(rows, fmt)


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("view", required=False, metavar="VIEW")
@click.option("--since", type=MOMENT, help="Only history rows with event times at or after this ISO-8601 time.")
@click.option("--until", type=MOMENT, help="Only history rows with event times before this ISO-8601 time.")
@click.option("--period", type=click.Choice(list(STATS_PERIODS)),
              help="Group values over time by day or week for drift (default: days over up to 120 days of history).")
@click.option("--refresh/--cached", default=None,
              help="Compute now (--refresh), or take any cached result however old (--cached); default: the cached "
              "one unless a tenth more rows arrived since.")
@_format_option()
@click.pass_context
def stats(ctx: click.Context, store: str | None, view: str | None, since: datetime | None, until: datetime | None,
          period: str | None, refresh: bool | None, fmt: str, url: str | None, token: str | None) -> None:
    """Statistics of feature view VIEW's stored features over its history (and online
    values): count, null rate, distinct estimate, min, max, mean, std, quantiles, a
    histogram or the most frequent values, and the same per day or week for drift.
    Cached in the store file (the store is opened for writing to keep them).

    In Python: store.stats(VIEW, since=..., until=..., period=..., refresh=...)."""
    target, (view,) = where(ctx, store, [view], names=["VIEW"], required=1)
    with reached(target, read_only=False, must_exist=True) as s, _errors():
        result = s.stats(view, since=since, until=until, period=period, refresh=refresh)
    if fmt == "json":
        emit(result.to_dict(), fmt)
        return
    rows = []
    for name, f in result.features.items():
        rows.append({
            "feature": name, "dtype": f.dtype, "count": f.count, "null_rate": round(f.null_rate, 4),
            "distinct": f.distinct, "min": f.min, "max": f.max, "mean": f.mean, "std": f.std,
            "p50": f.quantiles.get("0.5"), "top": ", ".join(f"{t.value} ({t.count})" for t in f.top[:3]),
        })
    emit(rows, fmt)


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("name", required=False, metavar="NAME")
@_format_option()
@click.pass_context
def lineage(ctx: click.Context, store: str | None, name: str | None, fmt: str, url: str | None,
            token: str | None) -> None:
    """How definitions and recorded models depend on each other: entities key views,
    featurizers compute features, views feed on-demand views, services read views at the
    versions they pin, models were trained on services. With NAME, only what is upstream
    and downstream of it. The table format lists the edges.

    In Python: store.lineage(NAME)."""
    target, args = where(ctx, store, [name], names=["NAME"], required=0)
    with reached(target, read_only=True) as s, _errors():
        graph = s.lineage(args[0] if args else None)
    if fmt == "json":
        emit(graph.to_dict(), fmt)
    else:
        emit([{"from": e.source, "relation": e.relation, "to": e.target, "version": e.version}
              for e in graph.edges], fmt)


@main.command("list-models", cls=_StoreOrServer)
@_store_or_url
@click.argument("name", required=False, metavar="NAME")
@_format_option()
@click.pass_context
def list_models(ctx: click.Context, store: str | None, name: str | None, fmt: str, url: str | None,
                token: str | None) -> None:
    """Models recorded in the store (every record of NAME): where each lives and the
    service, service version and definition versions it was trained on.

    In Python: store.list_models(NAME)."""
    target, args = where(ctx, store, [name], names=["NAME"], required=0)
    with reached(target, read_only=True) as s, _errors():
        records = s.list_models(args[0] if args else None)
    rows = [r.to_dict() for r in records]
    if fmt == "table":
        rows = [{"model": r.id, "uri": r.uri, "service": r.service, "service_version": r.service_version,
                 "recorded_at": r.recorded_at} for r in records]
    emit(rows, fmt)


@main.command("record-model")
@_store_arg
@click.argument("name")
@click.argument("training_set", metavar="TRAINING_SET")
@click.option("--uri", help="Where the model lives (an MLflow model URI, a path).")
@click.option("--description", default="", help="What the model is for.")
@_format_option()
def record_model(store: str, name: str, training_set: str, uri: str | None, description: str, fmt: str) -> None:
    """Record that model NAME was trained on TRAINING_SET (a Parquet file that
    get-historical-features wrote, or its manifest's JSON: the manifest says what it
    read), so lineage shows it.

    In Python: store.record_model(NAME, training_set, uri=...)."""
    manifest = manifest_file(training_set, "TRAINING_SET")
    with opened(store, read_only=False, must_exist=True) as s, _errors():
        record = s.record_model(name, manifest, uri=uri, description=description)
    emit(record.to_dict() if fmt == "json" else [{"field": k, "value": v} for k, v in record.to_dict().items()], fmt)


@main.command("list-versions", cls=_StoreOrServer)
@_store_or_url
@click.argument("name", required=False, metavar="NAME")
@_format_option()
@click.pass_context
def list_versions(ctx: click.Context, store: str | None, name: str | None, fmt: str, url: str | None,
                  token: str | None) -> None:
    """Every version of a definition ever applied, oldest first, with the feature services
    that pin it (pinned_by).

    In Python: store.list_versions(NAME)."""
    target, (name,) = where(ctx, store, [name], names=["NAME"], required=1)
    with reached(target, read_only=True) as s, _errors():
        versions = s.list_versions(name)
    if fmt == "table":
        versions = [
            {k: ", ".join(v) if k == "pinned_by" else v for k, v in row.items() if k != "spec"} for row in versions
        ]
    emit(versions, fmt)


@main.command("delete-feature-view")
@_store_arg
@click.argument("name")
def delete_feature_view(store: str, name: str) -> None:
    """Remove a feature view and all its data, or an on-demand view.

    In Python: store.delete_feature_view(NAME)."""
    with opened(store, read_only=False, must_exist=True) as s, _errors():
        s.delete_feature_view(name)
    emit({"deleted": name}, "json")


@main.command("delete-feature-service")
@_store_arg
@click.argument("name")
def delete_feature_service(store: str, name: str) -> None:
    """Remove a feature service (its versions stay in the store's history; the views it
    read stay as they are).

    In Python: store.delete_feature_service(NAME)."""
    with opened(store, read_only=False, must_exist=True) as s, _errors():
        s.delete_feature_service(name)
    emit({"deleted": name}, "json")


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("name", required=False, metavar="[NAME]")
@click.option("--examples", default=1000, show_default=True, type=click.IntRange(1, MAX_EXAMPLES),
              help="Generated rows per featurizer.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the generated inputs.")
@_format_option()
@click.pass_context
def verify(ctx: click.Context, store: str | None, name: str | None, examples: int, seed: int, fmt: str,
           url: str | None, token: str | None) -> None:
    """Check every featurizer (or those of view NAME) gives the same bits in the batch and
    per-request paths. Exit code 1 when one does not.

    In Python: store.verify(NAME, examples=..., seed=...)."""
    target, args = where(ctx, store, [name], names=["NAME"], required=0)
    name = args[0] if args else None
    with reached(target, read_only=True) as s, _errors():
        results = s.verify(name, examples=examples, seed=seed)
    rows = [
        {"view": r.view, "features": list(r.features), "featurizer": r.featurizer, "examples": r.examples, "ok": r.ok,
         "mismatch": None if r.ok else str(r.mismatch)}
        for r in results
    ]
    emit(rows, fmt)
    failed = [r for r in results if not r.ok]
    if failed:
        raise CommandFailure(f"{len(failed)} featurizer(s) differ between the batch and per-request paths: "
                       + "; ".join(str(r.mismatch) for r in failed))


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.option("--now", type=MOMENT, help="Judge the ages as of this ISO-8601 time (default: now).")
@_format_option()
@click.pass_context
def freshness(ctx: click.Context, store: str | None, now: datetime | None, fmt: str, url: str | None,
              token: str | None) -> None:
    """How fresh every feature view is: its newest event, that value's age against the
    view's freshness SLO (FeatureView(..., freshness="15m")), and, from a server, the ages
    of the values it served and how long its pushes took to become readable.

    Exit code 3 when a view breaks its SLO (one line on stderr names them), 0 when none
    does, 1 on an error: for cron jobs and CI.

    In Python: store.freshness(now=...)."""
    target, _ = where(ctx, store, [], names=[], required=0)
    with reached(target, read_only=True) as s, _errors():
        report = s.freshness(now=now)
    emit(report.to_dict() if fmt == "json" else freshness_rows(report), fmt)
    if not report.ok:
        shown = ", ".join(f"{v.view} (newest value {_age(v.newest_age)} old, SLO {_age(v.slo)})"
                          for v in report.breaches)
        click.echo(f"SLO breached: {len(report.breaches)} view(s) hold values older than their freshness SLO: "
                   f"{shown}", err=True)
        ctx.exit(CHECK_FAILED)


def _age(value: Any) -> str:
    from .cli_output import duration_text

    return "never" if value is None else duration_text(value.total_seconds())


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("target_name", required=False, metavar="TARGET")
@click.option("--since", type=MOMENT, help="Replay requests at or after this ISO-8601 time.")
@click.option("--until", type=MOMENT, help="Replay requests before this ISO-8601 time.")
@click.option("--examples", default=5, show_default=True, type=click.IntRange(0, 10_000),
              help="Differences shown per feature.")
@click.option("--min-consistency", type=click.FloatRange(0.0, 1.0), metavar="SHARE",
              help="Exit with code 3 when a feature's consistency (equal rows / compared rows) is below SHARE, "
              "e.g. 0.99.")
@_format_option()
@click.pass_context
def consistency(ctx: click.Context, store: str | None, target_name: str | None, since: datetime | None,
                until: datetime | None, examples: int, min_consistency: float | None, fmt: str, url: str | None,
                token: str | None) -> None:
    """Replay the serving log of feature view or service TARGET against the offline
    history: for every logged row and feature, the value served against the value a
    training set gives for the same entity at the logged request time. Reports per feature
    the rows compared and equal bit for bit, and the first differences with their reason
    (a late event, a changed definition) when it is known.

    With --min-consistency SHARE, exit code 3 when a feature falls below it (one line on
    stderr names them); 1 on an error.

    In Python: store.consistency(TARGET, since=..., until=..., examples=...)."""
    where_, (target_name,) = where(ctx, store, [target_name], names=["TARGET"], required=1)
    with reached(where_, read_only=True) as s, _errors():
        report = s.consistency(target_name, since=since, until=until, examples=examples)
    if fmt == "json":
        emit(report.to_dict(), fmt)
    else:
        emit_text(consistency_text(report))
    if min_consistency is not None:
        low = [f for f in report.features if f.consistency < min_consistency]
        if low:
            shown = ", ".join(f"{f.feature} {f.consistency:.4%} ({f.different} of {f.compared} rows differ)"
                              for f in low)
            click.echo(f"consistency below {min_consistency:.4%}: {shown}", err=True)
            ctx.exit(CHECK_FAILED)


@main.command(cls=_StoreOrServer)
@_store_or_url
@click.argument("out", required=False, metavar="OUT")
@click.pass_context
def snapshot(ctx: click.Context, store: str | None, out: str | None, url: str | None, token: str | None) -> None:
    """Write a consistent, complete copy of the store to the new file OUT, also while a
    server holds it (then the server writes the copy and OUT is downloaded): open OUT
    read-only anywhere, for example to build training sets while the server serves.

    In Python: store.snapshot(OUT)."""
    target, (out,) = where(ctx, store, [out], names=["OUT"], required=1)
    checked_output(out, store=target.store)
    if os.path.lexists(out):
        raise CommandFailure(f"{out!r} exists; give a new file for the snapshot (it is never overwritten)")
    with reached(target, read_only=False, must_exist=True) as s, _errors():
        written = s.snapshot(out)
        store_id = s.store_id
    emit({"snapshot": os.path.abspath(written), "store_id": store_id}, "json")


@main.command()
@_store_arg
@click.argument("directory", metavar="DIR")
@_format_option()
def export(store: str, directory: str, fmt: str) -> None:
    """Write every feature view's history as Parquet (partitioned by the event time's UTC
    date, with the ingest order) and the registry as JSON into the new directory DIR, for
    another engine: featurelite.spark joins it with the store's rules.

    In Python: store.export(DIR)."""
    with opened(store, read_only=True) as s, _errors():
        result = s.export(directory)
    emit(result.to_dict() if fmt == "json" else [{"view": v, "rows": n} for v, n in result.rows.items()], fmt)


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
@click.option("--port", default=6566, show_default=True, type=click.IntRange(1, 65535),
              help="Port to bind (1-65535).")
@click.option("--token", envvar=TOKEN_ENV, callback=check_token,
              help="Bearer token every endpoint but /health requires (default: $FEATURELITE_TOKEN; "
              "none: no auth; an empty token is refused).")
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(min=1),
              help="Largest request body, in bytes.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--header-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1, max=3600),
              help="Seconds a request's headers may take to arrive (slow clients are cut off with 408).")
@click.option("--body-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1, max=3600),
              help="Seconds a request's body may take to arrive after its headers.")
@click.option("--max-connections", type=click.IntRange(min=1),
              help="Open connections at most (default: what the open-file limit allows, up to 4096).")
@click.option("--max-upload", default=1024 * 1024 * 1024, show_default=True, type=click.IntRange(min=1),
              help="Largest training-set request (the entity rows' Arrow stream), in bytes.")
def serve(store: str, host: str, port: int, token: str | None, max_body: int, log_level: str,
          header_timeout: float, body_timeout: float, max_connections: int | None, max_upload: int) -> None:
    """Serve the store over HTTP: online features, pushes, training sets, listings,
    snapshots, freshness and consistency reports, health and metrics (the remote client,
    featurelite.connect(URL), and the commands' --url use them).

    The server holds the store file for writing while it runs. Needs the server extra:
    pip install 'featurelite[server]'."""
    # Port 0 ("any free port") is refused by the range above: the server would listen on a
    # port nobody is told about, while its note beside the store advertises port 0.
    try:
        # import_module, not `from . import server`: that form finds a server module that
        # was imported before even when its imports fail now (or a test blocks it).
        server = importlib.import_module(".server", __package__)
    except ImportError as exc:
        raise CommandFailure(f"`featurelite serve` needs the server extra ({exc.name} is missing); "
                       "pip install 'featurelite[server]'") from None
    check_bind(host, port)
    with _errors():
        try:
            server.run(store, host=host, port=port, token=token, max_body=max_body, log_level=log_level,
                       header_timeout=header_timeout, body_timeout=body_timeout, max_connections=max_connections,
                       max_upload=max_upload)
        except SystemExit as exc:
            # uvicorn exits (code 3) when it cannot start, after logging why; the probe above
            # makes that rare (a race for the port). Say it in the CLI's one line.
            if exc.code in (None, 0):
                raise
            raise CommandFailure(
                f"the server could not start on {host}:{port} (uvicorn exited with {exc.code})"
            ) from None


@main.command()
@_store_arg
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=6567, show_default=True, type=click.IntRange(1, 65535),
              help="Port to bind (1-65535).")
@click.option("--token", envvar=TOKEN_ENV, callback=check_token,
              help="Token every page requires (default: $FEATURELITE_TOKEN; none: no auth; an empty token is "
              "refused). A browser gives it once as ?token=T and keeps it in a cookie.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def ui(store: str, host: str, port: int, token: str | None, log_level: str) -> None:
    """Serve the store's web pages, read-only: views with their features, statistics,
    freshness and versions, services with their pins, search and the lineage graph, at
    http://HOST:PORT/ui/ (no JavaScript needed).

    The store is opened read-only, so other readers may use it meanwhile; a store held by
    `featurelite serve` shows the same pages at that server's /ui. Needs the server extra:
    pip install 'featurelite[server]'."""
    try:
        pages = importlib.import_module(".ui", __package__)
    except ImportError as exc:
        raise CommandFailure(f"`featurelite ui` needs the server extra ({exc.name} is missing); "
                             "pip install 'featurelite[server]'") from None
    if not os.path.exists(store):
        raise CommandFailure(f"no store at {store!r}; create one with `featurelite init {store}`")
    check_bind(host, port)
    with _errors():
        try:
            pages.run(store, host=host, port=port, token=token, log_level=log_level)
        except SystemExit as exc:
            if exc.code in (None, 0):
                raise
            raise CommandFailure(
                f"the web UI could not start on {host}:{port} (uvicorn exited with {exc.code})"
            ) from None


if __name__ == "__main__":  # pragma: no cover
    main()
