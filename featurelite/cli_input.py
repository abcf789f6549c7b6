"""What a command reads from its options: ISO-8601 times, ``KEY=VALUE`` pairs and JSON
(inline or ``@FILE``) for entities and request data, which way the features are named, and
a training set's manifest from a file. Bad input is a usage error (exit code 2) that names
the option, before the store is opened; a manifest file that is not one is an ``Error:``
line with exit code 1 (as a ManifestError from the store would be).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import wire
from .cli_output import CommandFailure
from .errors import ManifestError
from .manifest import Manifest
from .types import storable_micros

__all__ = ["MOMENT", "at_files", "columns_or_rows", "entities_option", "json_option", "manifest_file", "parse_pairs",
           "request_data_option", "which_features"]


if TYPE_CHECKING:
    _ParamType = click.ParamType[datetime, Any]
else:  # generic at run time only in recent click; featurelite supports click>=8.1
    _ParamType = click.ParamType


class _Moment(_ParamType):
    """An ISO-8601 time option. A time that is not ISO-8601, or that falls outside the years
    1 to 9999 once converted to UTC (``0001-01-01T00:00:00+01:00``), is a usage error that
    names the option, before the store is opened."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = wire.parse_time(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time like 2026-01-31T12:00:00 or 2026-01-31T12:00:00+00:00",
                      param, ctx)
        if storable_micros(moment) is None:  # the store's own bound, checked here to name the option
            self.fail(f"{value!r} is out of range: in UTC it falls outside the years 1 to 9999", param, ctx)
        return moment


MOMENT = _Moment()


#: JSON values a join key or request field can take.
_SCALARS = (str, int, float, bool, type(None))


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, list[Any]]:
    """``key=value`` pairs (repeatable) as columns; a value is JSON when it parses as a JSON
    number, string, true/false or null, else the text as given (``-e user_id='"42"'`` is
    the text 42)."""
    columns: dict[str, list[Any]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=what)
        key, text = pair.split("=", 1)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:  # not JSON: the text itself
            value = text
        except RecursionError:  # JSON nested too deep: not a single value either way
            raise click.BadParameter(f"{key}=...: VALUE is nested too deeply", param_hint=what) from None
        except ValueError:  # a JSON integer with more digits than Python converts (4,300)
            raise click.BadParameter(f"{key}=...: VALUE is a number of {len(text)} characters, too long for any "
                                     "key or field", param_hint=what) from None
        if not isinstance(value, _SCALARS):
            raise click.BadParameter(
                f"{pair!r}: VALUE must be one number, text, true/false or null, not a JSON {type(value).__name__}; "
                "give several values by repeating the option", param_hint=what,
            )
        columns.setdefault(key, []).append(value)
    return columns


def json_option(text: str, what: str) -> Any:
    """The JSON text of an option, or of the file ``@FILE`` names; a usage error naming the
    option when it is not JSON, cannot be read, or nests deeper than Python can parse."""
    source = "JSON"
    try:
        if text.startswith("@"):
            source = f"the file {text[1:]!r}"
            data = Path(text[1:]).read_text(encoding="utf-8")
        else:
            data = text
        return json.loads(data)
    except OSError as exc:
        raise click.BadParameter(f"cannot read {source}: {exc.strerror or exc}", param_hint=what) from None
    except RecursionError:
        raise click.BadParameter(f"{source} is nested too deeply", param_hint=what) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise click.BadParameter(f"{source} is not JSON (or @FILE of JSON): {exc}", param_hint=what) from None


def columns_or_rows(value: Any, what: str, shape: str, *, rows_ok: bool) -> Any:
    """``value`` when it has the documented shape: an object of lists ``{key: [values]}``
    (or, when ``rows_ok``, a list of objects ``[{key: value}, ...]``) whose values are JSON
    scalars. Checked here, as the CLI's own input format, with a message in its terms."""
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        cells = [c for v in value.values() for c in v]
    elif rows_ok and isinstance(value, list) and all(isinstance(r, dict) for r in value):
        cells = [c for r in value for c in r.values()]
    else:
        raise click.BadParameter(f"must be {shape}, got a JSON {type(value).__name__}", param_hint=what)
    bad = next((c for c in cells if not isinstance(c, _SCALARS)), None)
    if bad is not None:
        raise click.BadParameter(
            f"values must be numbers, text, true/false or null, got a JSON {type(bad).__name__}", param_hint=what
        )
    return value


def at_files(*options: str | None) -> list[str]:
    """The files ``@FILE`` options read (an output must not overwrite them)."""
    return [o[1:] for o in options if o is not None and o.startswith("@") and len(o) > 1]


def entities_option(pairs: Sequence[str], text: str | None) -> Any:
    """The entities of ``--entity KEY=VALUE`` pairs or ``--entities`` JSON (the caller
    refuses both at once); a usage error if there are none."""
    if text is not None:
        entities = columns_or_rows(json_option(text, "'--entities'"), "'--entities'",
                                   "[{key: value}, ...] or {key: [values]}", rows_ok=True)
    else:
        entities = parse_pairs(pairs, "'--entity'")
    if not entities:
        raise click.UsageError("give at least one entity: --entity KEY=VALUE or --entities JSON")
    return entities


def request_data_option(pairs: Sequence[str], text: str | None) -> Any:
    """The request data of ``--request FIELD=VALUE`` pairs or ``--request-data`` JSON (the
    caller refuses both at once)."""
    if text is not None:
        return columns_or_rows(json_option(text, "'--request-data'"), "'--request-data'",
                               "{field: [values]}", rows_ok=False)
    return parse_pairs(pairs, "'--request'")



def which_features(features: Sequence[str], service: str | None, manifest: str | None, manifest_option: str) -> None:
    """A usage error unless the command names its features one way: ``--feature`` references
    or ``--service``, either of them checked against ``manifest_option`` or that alone."""
    if features and service is not None:
        raise click.UsageError("give features with --feature or a feature service with --service, not both")
    if not features and service is None and manifest is None:
        raise click.UsageError(
            f"give the features: --feature VIEW:FEATURE (repeatable), --service NAME or {manifest_option} FILE"
        )


#: The largest JSON file read as a manifest: far above any real manifest (a few KB per
#: hundred features), far below what a file given by mistake could cost to read.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_PARQUET_MAGIC = b"PAR1"


def manifest_file(path: str, option: str) -> Manifest:
    """The manifest in ``path``: a Parquet training set (the manifest in its schema
    metadata; only the footer is read) or the manifest's JSON text. A file that is
    neither is one ``Error:`` line (exit code 1) that names the option and the file."""
    where = f"{option} {path!r}"
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(_PARQUET_MAGIC))
            if head == _PARQUET_MAGIC:
                import pyarrow as pa
                import pyarrow.parquet as pq

                try:
                    schema = pq.read_schema(path)
                except (pa.ArrowException, ValueError) as exc:
                    raise CommandFailure(f"{where} is not a readable Parquet file ({exc})") from None
                try:
                    return Manifest.from_table(schema)
                except ManifestError as exc:
                    raise CommandFailure(f"{where}: {exc}") from None
            size = os.fstat(stream.fileno()).st_size
            if size > MAX_MANIFEST_BYTES:
                raise CommandFailure(
                    f"{where} has {size} bytes and is not Parquet: too large to be a manifest's JSON; give the "
                    "training set (Parquet) or its manifest (JSON)"
                )
            text = head + stream.read()
    except OSError as exc:
        raise CommandFailure(f"cannot read {where}: {exc.strerror or exc}") from None
    try:
        return Manifest.from_json(text)
    except ManifestError as exc:
        raise CommandFailure(f"{where}: {exc}") from None
