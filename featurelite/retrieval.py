"""Reading retrieval requests: feature references, entity dataframes and entity rows.

Checks the shape of what a caller asked for and names what is wrong; no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from .arguments import shown
from .errors import InputError, SchemaError, UnknownFeatureError
from .references import FeatureRef

__all__ = [
    "entity_columns", "key_column", "key_values", "keys_for", "output_name", "pick_timestamp", "resolve_features",
]


def resolve_features(
    refs: Sequence[FeatureRef], full_feature_names: bool, schema_of: Callable[[str], Mapping[str, str]]
) -> tuple[list[tuple[str, list[str], list[str]]], list[str]]:
    """Group parsed references (:func:`featurelite.references.parse_references`) by view:
    ([(view, features, output names)], all output names in request order). ``schema_of(view)``
    gives a view's features (and raises for an unknown view). A version in a reference was
    resolved by the caller (``schema_of`` is the pinned definitions')."""
    if not isinstance(full_feature_names, (bool, np.bool_)):
        raise InputError(f"full_feature_names must be True or False, not {type(full_feature_names).__name__}")
    groups: dict[str, tuple[list[str], list[str]]] = {}
    seen: dict[str, str] = {}
    for ref in refs:
        view_name, feature = ref.view, ref.feature
        schema = schema_of(view_name)
        if feature not in schema:
            raise UnknownFeatureError(
                f"feature view {view_name!r} has no feature {feature!r} "
                f"(features: {', '.join(schema)})",
                reference=ref.text,
                view=view_name,
            )
        out = output_name(ref, full_feature_names)
        if out in seen:
            hint = "" if full_feature_names else "; pass full_feature_names=True to prefix names with the view"
            raise InputError(f"features {seen[out]!r} and {ref.text!r} would both be named {out!r}{hint}", name=out)
        seen[out] = ref.text
        feats, outs = groups.setdefault(view_name, ([], []))
        feats.append(feature)
        outs.append(out)
    return [(view, feats, outs) for view, (feats, outs) in groups.items()], list(seen)


def output_name(ref: FeatureRef, full_feature_names: bool) -> str:
    """The column a referenced feature is returned as (a version never shows in it)."""
    return f"{ref.view}__{ref.feature}" if full_feature_names else ref.feature


def pick_timestamp(entity: pa.Table, requested: str | None) -> str:
    if requested is not None:
        if requested not in entity.column_names:
            raise SchemaError(
                f"entity_df has no column {requested!r} (columns: {', '.join(entity.column_names)})", column=requested
            )
        return requested
    if "event_timestamp" in entity.column_names:
        return "event_timestamp"
    candidates = [f.name for f in entity.schema if pa.types.is_timestamp(f.type) or pa.types.is_date(f.type)]
    if len(candidates) == 1:
        return str(candidates[0])
    raise SchemaError(
        "entity_df needs an event timestamp column; name it 'event_timestamp' or pass "
        f"timestamp_field= (timestamp columns found: {', '.join(candidates) or 'none'})"
    )


def key_column(values: pa.ChunkedArray, key: str, dtype: str) -> pa.Array:
    """An entity_df key column, checked to be comparable with the view's key dtype."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.cast(kind.value_type)
        kind = values.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    ok = (
        pa.types.is_null(kind)
        or (dtype == "string" and text)
        or (dtype in ("int32", "int64") and pa.types.is_integer(kind))
        or (dtype == "bool" and pa.types.is_boolean(kind))
    )
    if not ok:
        raise SchemaError(
            f"entity_df column {key!r} has Arrow type {kind}, but the join key is {dtype!r}; convert the column",
            column=key,
        )
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def entity_columns(entity_rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
    """Entity rows as ``{key: [values]}``."""
    if isinstance(entity_rows, (str, bytes)) or not isinstance(entity_rows, (Mapping, Sequence)):
        raise InputError(
            "entity_rows must be a list of {join key: value} dicts or a dict of lists, "
            f"not {type(entity_rows).__name__}"
        )
    if isinstance(entity_rows, Mapping):
        columns: dict[str, list[Any]] = {}
        for k, v in entity_rows.items():
            if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Sequence):
                raise InputError(
                    f"entity_rows[{shown(k)}] is {type(v).__name__} {shown(v)}; a dict of entity rows maps each join "
                    f"key to a list of values, one per entity (e.g. {{{shown(k)}: [{shown(v)}]}})",
                    column=str(k),
                )
            columns[k] = list(v)
        if len({len(v) for v in columns.values()}) > 1:
            raise InputError("entity_rows columns have different lengths; give one value per entity in each")
        return columns
    if len(entity_rows) == 1 and type(entity_rows[0]) is dict:  # the common single-entity request
        return {k: [v] for k, v in entity_rows[0].items()}
    rows = list(entity_rows)
    if not rows:
        return {}
    names = list(rows[0]) if isinstance(rows[0], Mapping) else []
    columns = {k: [] for k in names}
    for i, row in enumerate(rows):
        if type(row) is not dict and not isinstance(row, Mapping):  # the exact type first: ABC checks are slow
            raise InputError(f"entity row {i} is {row!r}; each entity row must be a dict of join keys", row=i)
        for k in names:
            try:
                columns[k].append(row[k])
            except KeyError:
                raise InputError(
                    f"entity row {i} has no key {k!r} (row 0 has it); give every row the same keys", row=i
                ) from None
    return columns


def keys_for(view: str, keys: Sequence[tuple[str, str]], columns: dict[str, list[Any]]) -> list[Any]:
    """The entity keys of ``view`` (``keys``: its join keys and their dtypes) from request
    columns (the caller's own dict), each converted in place to the type it is stored as
    (see :func:`key_values`)."""
    for k, _ in keys:
        if k not in columns:
            raise InputError(
                f"entity rows lack join key {k!r} of view {view!r} (given: {', '.join(map(str, columns)) or 'none'})",
                view=view, column=k,
            )
    for name, dtype in keys:  # converted in place, so responses echo the keys as looked up
        columns[name] = key_values(view, name, dtype, columns[name])
    if len(keys) == 1:
        return columns[keys[0][0]]
    return list(zip(*(columns[name] for name, _ in keys), strict=True))


#: The Python type a key of each key dtype is looked up as.
_KEY_TYPE: dict[str, type] = {"int32": int, "int64": int, "string": str, "bool": bool}
_DECIMAL_INT = re.compile(r"-?[0-9]+")


def key_values(view: str, name: str, dtype: str, values: list[Any]) -> list[Any]:
    """Request values of join key ``name`` as the Python type the key is stored as.

    A value of that exact type (or None) passes as it is: the common case costs one type
    check per key. Others are converted where the meaning is unambiguous and nothing is
    lost (``"42"`` or ``42.0`` for an integer key, ``42`` for a text key, NumPy scalars)
    and refused otherwise, so no key is ever reported NOT_FOUND without having been
    looked up as the key it stands for.
    """
    want = _KEY_TYPE[dtype]
    for v in values:  # a plain loop: cheaper than all() on the one-entity hot path
        if type(v) is not want and v is not None:
            return [_key_value(view, name, dtype, want, v) for v in values]
    return values


def _key_value(view: str, name: str, dtype: str, want: type, value: Any) -> Any:
    if type(value) is want or value is None:
        return value
    converted: Any = None
    if isinstance(value, np.generic):
        value = value.item()
        if type(value) is want:
            return value
    if want is int and not isinstance(value, bool):
        # A digit string longer than any int64 is refused below rather than parsed (int()
        # raises a raw ValueError past 4,300 digits).
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if whole or (isinstance(value, str) and len(value) <= 24 and _DECIMAL_INT.fullmatch(value)):
            converted = int(value)
    elif want is str and isinstance(value, (int, str)) and not isinstance(value, bool):
        converted = str(value)
    elif want is bool and isinstance(value, bool):
        converted = bool(value)
    if converted is None:
        raise InputError(
            f"join key {name!r} of view {view!r} is {dtype}, "
            f"but an entity gives {type(value).__name__} {shown(value)}; "
            f"pass {'an integer' if want is int else 'a string' if want is str else 'true or false'}",
            view=view, column=name,
        )
    return converted
