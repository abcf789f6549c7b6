"""Entity, FeatureView (with its Aggregations) and on-demand views: plain frozen
definitions, validated when built.

A definition's ``version`` is a content hash of its ``spec()``, so the same definition
always has the same version, in any process, and any change makes a new one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from .errors import DefinitionError
from .featurizer import Featurizer
from .references import parse_reference
from .types import DTYPES, KEY_DTYPES, MAX_US, MIN_US

__all__ = [
    "AGGREGATION_FUNCTIONS",
    "NUMERIC_DTYPES",
    "Aggregation",
    "Entity",
    "FeatureService",
    "FeatureView",
    "Field",
    "OnDemandFeatureView",
    "RequestSource",
    "ServingLog",
    "aggregation_dtype",
    "functions_for",
    "parse_freshness",
    "parse_ttl",
]

#: A whole name (fullmatch: ``$`` would also accept a trailing newline).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Prefix of every column and table featurelite keeps for itself.
RESERVED_PREFIX = "_fl_"
_TTL = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*")
#: Microseconds per ttl unit.
_TTL_UNITS = {
    "us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000,
    "w": 604_800_000_000,
}
#: The longest ttl: the whole span a store's timestamps can have (years 1-9999). A longer
#: one would mean nothing more, and would overflow the time arithmetic of a lookup.
MAX_TTL = timedelta(microseconds=MAX_US - MIN_US)


def _check_name(kind: str, name: object, owner: str | None = None) -> str:
    where = f" in {owner}" if owner else ""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DefinitionError(
            f"{kind} name {name!r}{where} is not valid; use letters, digits and underscores, "
            "starting with a letter or underscore",
            name=name,
        )
    if name.lower().startswith(RESERVED_PREFIX):
        raise DefinitionError(
            f"{kind} name {name!r}{where} starts with the reserved prefix {RESERVED_PREFIX!r}; "
            "choose another name",
            name=name,
        )
    return name


def _check_dtype(dtype: object, what: str, allowed: tuple[str, ...] = DTYPES) -> str:
    if dtype not in allowed:
        raise DefinitionError(
            f"{what} has dtype {dtype!r}, which is not supported; use one of {', '.join(allowed)}",
            dtype=dtype,
        )
    return str(dtype)


def _check_tags(tags: Mapping[str, str] | None, owner: str) -> dict[str, str]:
    tags = dict(tags or {})
    for key, value in tags.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DefinitionError(f"tags of {owner} must map strings to strings; got {key!r}: {value!r}")
    return dict(sorted(tags.items()))


def parse_ttl(ttl: timedelta | str | None, owner: str = "ttl") -> timedelta | None:
    """Turn ``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a timedelta into a timedelta.

    ``None`` means values never expire. A ttl must be positive and at most
    :data:`MAX_TTL` (about 10,000 years, the span of the timestamps a store holds).
    """
    if ttl is None:
        return None
    return _parse_duration(
        ttl, owner, examples="'30d', '12h', '90m', '45s'", longest="ttl",
        shorter="use a shorter one or None (never expire)", positive="use None for values that never expire",
    )


def _parse_duration(
    value: object, owner: str, *, examples: str, longest: str, shorter: str, positive: str
) -> timedelta:
    """The one duration parser (ttls and aggregation windows): a string of a number and a
    unit (see ``_TTL_UNITS``) or a timedelta, positive and at most :data:`MAX_TTL`. The
    keyword arguments word the errors for the caller (the fix differs)."""
    if isinstance(value, str):
        match = _TTL.fullmatch(value)
        if not match:
            raise DefinitionError(
                f"{owner} {value!r} is not a duration; write it like {examples} or "
                "pass a datetime.timedelta",
                ttl=value,
            )
        # Exact decimal arithmetic in microseconds: no float rounding, no OverflowError
        # from timedelta before the bound below is checked.
        amount = Decimal(match.group(1)) * _TTL_UNITS[match.group(2)]
        if amount > MAX_TTL // timedelta(microseconds=1):
            raise DefinitionError(
                f"{owner} {value!r} is longer than the longest {longest}, {MAX_TTL.days} days; {shorter}",
                ttl=value,
            )
        value = timedelta(microseconds=int(amount.to_integral_value()))  # half-even, as timedelta rounds
    if not isinstance(value, timedelta):
        first = examples.split(",")[0]
        raise DefinitionError(
            f"{owner} must be a timedelta or a string like {first}, not {type(value).__name__}", ttl=value
        )
    if value <= timedelta(0):
        raise DefinitionError(f"{owner} must be positive, got {value}; {positive}", ttl=value)
    if value > MAX_TTL:
        raise DefinitionError(
            f"{owner} {value} is longer than the longest {longest}, {MAX_TTL.days} days; {shorter}",
            ttl=value,
        )
    return value


def _duration_text(value: timedelta) -> str:
    """The text :func:`parse_ttl` reads back as ``value``, in the largest whole unit
    (``timedelta(seconds=90)`` -> ``"90s"``, ``timedelta(hours=1)`` -> ``"1h"``)."""
    micros = value // timedelta(microseconds=1)
    for unit, size in sorted(_TTL_UNITS.items(), key=lambda item: -item[1]):
        if micros % size == 0:
            return f"{micros // size}{unit}"
    raise AssertionError("every duration is a whole number of microseconds")  # pragma: no cover


def parse_freshness(value: timedelta | str | None, owner: str) -> timedelta | None:
    """A view's freshness SLO (``"15m"``, ``"1h"`` or a timedelta), or None for none."""
    if value is None:
        return None
    return _parse_duration(
        value, f"freshness of {owner}", examples="'15m', '1h', '1d'", longest="freshness",
        shorter="use a shorter one or None (no SLO)", positive="use None for a view without a freshness SLO",
    )


#: How long a serving log keeps its rows unless told otherwise.
DEFAULT_LOG_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class ServingLog:
    """Record what online reads served, in the store file (``log=`` of a FeatureView or a
    FeatureService; ``log=True`` is ``ServingLog()``).

    ``sample_rate``: the share of reads recorded (0 < rate <= 1; each read is drawn on its
    own). ``retention``: rows older than this (by the time they were served) are deleted
    as the log is written (``"7d"``, ``"12h"`` or a timedelta).
    """

    sample_rate: float = 1.0
    retention: timedelta = DEFAULT_LOG_RETENTION

    def __init__(self, sample_rate: float = 1.0, retention: timedelta | str = DEFAULT_LOG_RETENTION) -> None:
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) \
                or not 0.0 < float(sample_rate) <= 1.0:
            raise DefinitionError(
                f"sample_rate must be a number above 0 and at most 1 (the share of reads logged), got {sample_rate!r}"
            )
        kept = _parse_duration(
            retention, "the serving log's retention", examples="'7d', '12h', '30d'", longest="retention",
            shorter="use a shorter one", positive="give how long logged rows are kept",
        )
        object.__setattr__(self, "sample_rate", float(sample_rate))
        object.__setattr__(self, "retention", kept)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description (part of its owner's spec)."""
        return {"sample_rate": self.sample_rate, "retention_us": self.retention // timedelta(microseconds=1)}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> ServingLog:
        """Rebuild a ServingLog from :meth:`spec` output."""
        return cls(spec["sample_rate"], timedelta(microseconds=spec["retention_us"]))


def _serving_log(value: object, owner: str) -> ServingLog | None:
    """``log=`` as a ServingLog (True: the defaults) or None (False / None: no log)."""
    if value is None or value is False:
        return None
    if value is True:
        return ServingLog()
    if isinstance(value, ServingLog):
        return value
    raise DefinitionError(
        f"{owner}: log must be True, False, None or a featurelite.ServingLog(sample_rate=..., retention=...), "
        f"not {type(value).__name__}"
    )


def _hash_spec(spec: Mapping[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_version(spec: Mapping[str, Any]) -> str:
    """The version a definition with this spec has (its content hash): how a reader of a
    stored or exported spec checks it is the version it is filed under."""
    return _hash_spec(spec)


class _Versioned:
    """A definition whose version is the content hash of its ``spec()``."""

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def version(self) -> str:
        """Content hash of :meth:`spec`: equal definitions share it in every process."""
        return _hash_spec(self.spec())


@dataclass(frozen=True, init=False)
class Field:
    """A feature's dtype with metadata of its own: ``schema={"amount": fl.Field("float64",
    description="...", tags={...}, owner="...")}`` beside plain dtype strings. Metadata is
    part of the view's version (a change makes a new one) but never a breaking change."""

    dtype: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    owner: str = ""

    def __init__(
        self, dtype: str, *, description: str = "", tags: Mapping[str, str] | None = None, owner: str = ""
    ) -> None:
        object.__setattr__(self, "dtype", _check_dtype(dtype, "a Field's dtype"))
        for name, value in (("description", description), ("owner", owner)):
            if not isinstance(value, str):
                raise DefinitionError(f"a Field's {name} must be a string, not {type(value).__name__}")
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "owner", owner)
        object.__setattr__(self, "tags", _check_tags(tags, "a Field"))

    @property
    def has_metadata(self) -> bool:
        return bool(self.description or self.tags or self.owner)

    def metadata(self) -> dict[str, Any]:
        """The metadata as a JSON-ready dict (part of its view's spec)."""
        return {"description": self.description, "tags": dict(self.tags), "owner": self.owner}


@dataclass(frozen=True, init=False)
class Entity(_Versioned):
    """A thing features describe (a user, a store), identified by one or more join keys.

    ``join_keys`` is a list of column names (all of dtype ``dtype``) or a mapping from
    column name to dtype for mixed keys. It defaults to ``[name]``.
    """

    name: str
    join_keys: tuple[str, ...]
    dtypes: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __init__(
        self,
        name: str,
        join_keys: Iterable[str] | Mapping[str, str] | None = None,
        *,
        dtype: str = "int64",
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        _check_name("entity", name)
        owner_text = f"entity {name!r}"
        if join_keys is None:
            join_keys = [name]
        if isinstance(join_keys, str):
            join_keys = [join_keys]
        pairs = list(join_keys.items()) if isinstance(join_keys, Mapping) else [(key, dtype) for key in join_keys]
        if not pairs:
            raise DefinitionError(f"{owner_text} needs at least one join key")
        keys = tuple(_check_name("join key", key, owner_text) for key, _ in pairs)
        if len(set(keys)) != len(keys):
            raise DefinitionError(f"{owner_text} lists a join key twice: {', '.join(keys)}")
        dtypes = tuple(
            _check_dtype(kd, f"join key {key!r} of {owner_text}", KEY_DTYPES) for key, kd in pairs
        )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "dtypes", dtypes)
        object.__setattr__(self, "description", str(description))
        object.__setattr__(self, "owner", str(owner))
        object.__setattr__(self, "tags", _check_tags(tags, owner_text))

    @property
    def key_schema(self) -> dict[str, str]:
        """Join key name to dtype."""
        return dict(zip(self.join_keys, self.dtypes, strict=True))

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; its hash is the version."""
        return {
            "kind": "entity",
            "name": self.name,
            "join_keys": [[k, d] for k, d in zip(self.join_keys, self.dtypes, strict=True)],
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Entity:
        """Rebuild an Entity from :meth:`spec` output."""
        return cls(
            spec["name"],
            {k: d for k, d in spec["join_keys"]},
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags"),
        )

#: The functions an :class:`Aggregation` may apply over its window.
AGGREGATION_FUNCTIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "last", "std", "var")
#: Functions that fit a column of any dtype; the others need one of :data:`NUMERIC_DTYPES`.
_ANY_DTYPE_FUNCTIONS = ("count", "last")
#: The dtypes sum, mean, min, max, std and var aggregate.
NUMERIC_DTYPES: tuple[str, ...] = ("int32", "int64", "float32", "float64")


def aggregation_dtype(function: str, column_dtype: str) -> str:
    """The dtype of ``function`` aggregated over a column of ``column_dtype`` (the one
    home of the rule): count is int64; sum is int64 over ints and float64 over floats;
    mean, std and var are float64; min, max and last keep the column's dtype."""
    if function == "count":
        return "int64"
    if function == "sum":
        return "int64" if column_dtype in ("int32", "int64") else "float64"
    if function in ("mean", "std", "var"):
        return "float64"
    return column_dtype


def functions_for(column_dtype: str) -> tuple[str, ...]:
    """The aggregation functions that fit a column of ``column_dtype``."""
    if column_dtype in NUMERIC_DTYPES:
        return AGGREGATION_FUNCTIONS
    return _ANY_DTYPE_FUNCTIONS


@dataclass(frozen=True, init=False)
class Aggregation:
    """A windowed aggregate feature of a :class:`FeatureView`: ``function`` over the
    values of ``column`` whose event time falls in the ``window`` before the read time.

    ``window`` is a duration string like ``"90s"``, ``"1h"`` or ``"7d"`` (the ttl syntax)
    or a ``datetime.timedelta``; ``window_text`` keeps the string as given (for a
    timedelta, its text in the largest whole unit). ``name`` defaults to
    ``f"{column}_{function}_{window_text}"``.
    """

    column: str
    function: str
    window: timedelta
    window_text: str
    name: str

    def __init__(self, column: str, function: str, window: timedelta | str, *, name: str | None = None) -> None:
        _check_name("column", column, "an aggregation")
        owner_text = f"aggregation of column {column!r}"
        if not isinstance(function, str) or function not in AGGREGATION_FUNCTIONS:
            raise DefinitionError(
                f"{owner_text}: function {function!r} is not known; use one of {', '.join(AGGREGATION_FUNCTIONS)}",
                column=column,
            )
        owner_text = f"aggregation {function}({column})"
        if window is None:
            raise DefinitionError(
                f"{owner_text} needs a window, like '1h', '7d' or a datetime.timedelta", column=column
            )
        parsed = _parse_duration(
            window, f"window of {owner_text}", examples="'90s', '1h', '7d'", longest="window",
            shorter="use a shorter window", positive="use a window of at least 1us",
        )
        text = window if isinstance(window, str) else _duration_text(parsed)
        if name is None:
            name = f"{column}_{function}_{text}"
            if not _NAME.fullmatch(name):
                raise DefinitionError(
                    f"{owner_text}: the default name {name!r} (from the window {text!r}) is not a valid "
                    "feature name; pass name=... or write the window as a whole number and unit, like '90m'",
                    name=name,
                )
        _check_name("aggregation", name, owner_text)
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "window", parsed)
        object.__setattr__(self, "window_text", text)
        object.__setattr__(self, "name", name)

    @property
    def window_us(self) -> int:
        """The window in microseconds."""
        return self.window // timedelta(microseconds=1)

    def output_dtype(self, column_dtype: str) -> str:
        """The dtype of this aggregate over a column of ``column_dtype``."""
        return aggregation_dtype(self.function, column_dtype)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description (part of its view's spec)."""
        return {"column": self.column, "function": self.function, "window": self.window_text, "name": self.name}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Aggregation:
        """Rebuild an Aggregation from :meth:`spec` output."""
        return cls(spec["column"], spec["function"], spec["window"], name=spec["name"])


#: How definitions name featurizer outputs: ``{"feature": f}`` for a function returning
#: one value, ``{("a", "b"): g}`` for one returning a tuple of two.
FeaturizerMap = Mapping[str | tuple[str, ...], Featurizer]


def _featurizer_outputs(
    featurizers: object, owner_text: str
) -> tuple[dict[str | tuple[str, ...], Featurizer], dict[str, tuple[Featurizer, int]]]:
    """Check a featurizer mapping; return it normalised and ``{feature: (featurizer,
    index of the output)}`` in order."""
    if not isinstance(featurizers, Mapping) or not featurizers:
        raise DefinitionError(f"{owner_text} needs featurizers: a mapping from feature name to featurizer")
    normalized: dict[str | tuple[str, ...], Featurizer] = {}
    outputs: dict[str, tuple[Featurizer, int]] = {}
    for key, fz in featurizers.items():
        if not isinstance(fz, Featurizer):
            raise DefinitionError(
                f"{owner_text}: feature {key!r} must be a @featurelite.featurizer function, got {fz!r}"
            )
        if isinstance(key, str):
            names: tuple[str, ...] = (key,)
        elif isinstance(key, tuple) and all(isinstance(k, str) for k in key):
            names = key
        else:
            raise DefinitionError(
                f"{owner_text}: featurizer {fz.name!r} must be bound to a feature name or a tuple of names, got {key!r}"
            )
        if len(names) != len(fz.outputs):
            example = ", ".join(f"'out{i}'" for i in range(len(fz.outputs)))
            raise DefinitionError(
                f"{owner_text}: featurizer {fz.name!r} returns {len(fz.outputs)} value(s) but is bound to "
                f"{len(names)} name(s); bind it as "
                f"featurizers={{({example}{',' if len(names) == 1 else ''}): {fz.name}}}"
                if len(fz.outputs) > 1 else
                f"{owner_text}: featurizer {fz.name!r} returns one value but is bound to {len(names)} names; "
                f"bind it as featurizers={{'name': {fz.name}}}",
                featurizer=fz.name,
            )
        for i, out in enumerate(names):
            _check_name("feature", out, owner_text)
            if out.lower() in {o.lower() for o in outputs}:
                raise DefinitionError(f"{owner_text} computes feature {out!r} twice; rename one", column=out)
            outputs[out] = (fz, i)
        normalized[key if isinstance(key, str) else names] = fz
    return normalized, outputs


def _featurizers_spec(featurizers: Mapping[str | tuple[str, ...], Featurizer]) -> list[list[Any]]:
    return [[[key] if isinstance(key, str) else list(key), fz.spec()] for key, fz in featurizers.items()]


def _featurizers_from_spec(data: Any) -> dict[str | tuple[str, ...], Featurizer]:
    return {names[0] if len(names) == 1 else tuple(names): Featurizer.from_spec(spec) for names, spec in data}


@dataclass(frozen=True, init=False)
class FeatureView(_Versioned):
    """A group of features about the same entities, recorded with an event time.

    ``schema`` maps feature name to dtype (see :data:`featurelite.types.DTYPES`), in the
    order features are stored. Join key columns come from the entities; ingested data has
    one column per join key, per feature, ``timestamp_field`` and, if set,
    ``created_timestamp_field``. ``ttl`` bounds how old a value may be and still be served
    (offline and online alike); ``None`` means forever.
    """

    name: str
    entities: tuple[str, ...]
    schema: Mapping[str, str] = field(hash=False)
    timestamp_field: str = "event_timestamp"
    created_timestamp_field: str | None = None
    ttl: timedelta | None = None
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    featurizers: Mapping[str | tuple[str, ...], Featurizer] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )
    #: Windowed aggregate features read from the stored columns (nothing extra is stored).
    aggregations: tuple[Aggregation, ...] = ()
    #: Per-feature metadata, for the features declared with a :class:`Field` that has some.
    fields: Mapping[str, Field] = field(default_factory=dict, hash=False)
    #: The freshness SLO: the newest value older than this breaks it (None: no SLO).
    freshness: timedelta | None = None
    #: What online reads of the view record in its serving log (None: nothing).
    log: ServingLog | None = None
    #: (feature, featurizer version, output index) per derived feature: what equality sees.
    _derived_versions: tuple[tuple[str, str, int], ...] = field(default=(), init=False, repr=False)
    #: The Entity objects (not names) the view was built with: ``apply`` applies them with it.
    entity_objects: tuple[Entity, ...] = field(default=(), init=False, repr=False, compare=False, hash=False)
    #: ``{feature: (featurizer, output index)}`` per derived feature, in order; see :attr:`derived`.
    _derived: Mapping[str, tuple[Featurizer, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    #: Aggregate feature name to output dtype, in order; see :attr:`aggregation_schema`.
    _aggregation_schema: Mapping[str, str] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __init__(
        self,
        name: str,
        *,
        entities: Iterable[Entity | str],
        schema: Mapping[str, str | Field],
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        ttl: timedelta | str | None = None,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
        featurizers: FeaturizerMap | None = None,
        aggregations: Iterable[Aggregation] | Aggregation | None = None,
        freshness: timedelta | str | None = None,
        log: bool | ServingLog | None = None,
    ) -> None:
        _check_name("feature view", name)
        owner_text = f"feature view {name!r}"
        if isinstance(entities, (str, Entity)):
            entities = [entities]
        entity_list = list(entities)
        if not entity_list:
            raise DefinitionError(f"{owner_text} needs at least one entity")
        names: list[str] = []
        objects: list[Entity] = []
        for ent in entity_list:
            if isinstance(ent, Entity):
                names.append(ent.name)
                objects.append(ent)
            elif isinstance(ent, str):
                names.append(_check_name("entity", ent, owner_text))
            else:
                raise DefinitionError(f"{owner_text} entities must be Entity objects or names, got {ent!r}")
        if len(set(names)) != len(names):
            raise DefinitionError(f"{owner_text} lists an entity twice: {', '.join(names)}")
        if not isinstance(schema, Mapping) or not schema:
            raise DefinitionError(f"{owner_text} needs a schema mapping feature names to dtypes")
        checked_schema = {
            _check_name("feature", feat, owner_text): _check_dtype(
                dt.dtype if isinstance(dt, Field) else dt, f"feature {feat!r} of {owner_text}"
            )
            for feat, dt in schema.items()
        }
        fields = {feat: dt for feat, dt in schema.items() if isinstance(dt, Field) and dt.has_metadata}
        derived: dict[str, tuple[Featurizer, int]] = {}
        normalized: dict[str | tuple[str, ...], Featurizer] = {}
        if featurizers:
            normalized, derived = _featurizer_outputs(featurizers, owner_text)
            for feat, (fz, i) in derived.items():
                if feat in checked_schema:
                    raise DefinitionError(
                        f"{owner_text}: feature {feat!r} is both in the schema and computed by featurizer "
                        f"{fz.name!r}; remove it from the schema (its dtype comes from the featurizer)",
                        column=feat,
                    )
                checked_schema[feat] = fz.outputs[i]
        _check_name("timestamp_field", timestamp_field, owner_text)
        if created_timestamp_field is not None:
            _check_name("created_timestamp_field", created_timestamp_field, owner_text)
            if created_timestamp_field == timestamp_field:
                raise DefinitionError(
                    f"{owner_text} uses {timestamp_field!r} as both timestamp_field and "
                    "created_timestamp_field; give them different columns"
                )
        columns = [*checked_schema, timestamp_field]
        if created_timestamp_field:
            columns.append(created_timestamp_field)
        for ent in objects:
            columns.extend(ent.join_keys)
        seen: set[str] = set()
        for col in columns:
            # DuckDB column names ignore case, so "spend" and "Spend" are one column.
            if col.lower() in seen:
                raise DefinitionError(
                    f"{owner_text} uses the column name {col!r} twice (features, join keys and "
                    "timestamp fields must all differ, ignoring case); rename one of them",
                    column=col,
                )
            seen.add(col.lower())
        roles = {timestamp_field: "its timestamp field"}
        if created_timestamp_field:
            roles[created_timestamp_field] = "its created timestamp field"
        roles.update({key: "a join key" for ent in objects for key in ent.join_keys})
        checked_aggregations, aggregation_schema = _check_aggregations(aggregations, checked_schema, roles, owner_text)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "entities", tuple(names))
        object.__setattr__(self, "schema", checked_schema)
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        object.__setattr__(self, "ttl", parse_ttl(ttl, f"ttl of {owner_text}"))
        object.__setattr__(self, "description", str(description))
        object.__setattr__(self, "owner", str(owner))
        object.__setattr__(self, "tags", _check_tags(tags, owner_text))
        object.__setattr__(self, "featurizers", normalized)
        object.__setattr__(self, "_derived", derived)
        object.__setattr__(self, "_derived_versions", tuple((f, fz.version, i) for f, (fz, i) in derived.items()))
        object.__setattr__(self, "entity_objects", tuple(objects))
        object.__setattr__(self, "aggregations", checked_aggregations)
        object.__setattr__(self, "_aggregation_schema", aggregation_schema)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "freshness", parse_freshness(freshness, owner_text))
        object.__setattr__(self, "log", _serving_log(log, owner_text))

    @property
    def features(self) -> list[str]:
        """Stored feature names in schema order (raw features, then derived ones); see
        :attr:`feature_schema` for the aggregate features too."""
        return list(self.schema)

    @property
    def aggregation_schema(self) -> dict[str, str]:
        """Aggregate feature name to output dtype, in the order of :attr:`aggregations`."""
        return dict(self._aggregation_schema)

    @property
    def feature_schema(self) -> dict[str, str]:
        """Every feature a reader may ask for: the stored ones (:attr:`schema`), then the
        aggregate ones (:attr:`aggregation_schema`)."""
        return {**self.schema, **self._aggregation_schema}

    @property
    def raw_schema(self) -> dict[str, str]:
        """The features ingested data carries (the schema without derived features)."""
        return {f: d for f, d in self.schema.items() if f not in self._derived}

    @property
    def derived(self) -> dict[str, tuple[Featurizer, int]]:
        """Features computed at ingest time: ``{feature: (featurizer, output index)}``."""
        return dict(self._derived)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; its hash is the version."""
        return {
            "kind": "feature_view",
            "name": self.name,
            "entities": list(self.entities),
            "schema": [[f, d] for f, d in self.raw_schema.items()],
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_us": None if self.ttl is None else self.ttl // timedelta(microseconds=1),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
            # Only when present, so views without featurizers keep the versions they had.
            **({"featurizers": _featurizers_spec(self.featurizers)} if self.featurizers else {}),
            # Likewise: views without aggregations keep their versions.
            **({"aggregations": [a.spec() for a in self.aggregations]} if self.aggregations else {}),
            # Per-feature metadata, only when some feature has any (older versions keep their hashes).
            **({"fields": {f: m.metadata() for f, m in self.fields.items()}} if self.fields else {}),
            # Operational settings, versioned like the description and tags; only when set.
            **({"freshness_us": self.freshness // timedelta(microseconds=1)} if self.freshness else {}),
            **({"log": self.log.spec()} if self.log else {}),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureView:
        """Rebuild a FeatureView from :meth:`spec` output."""
        ttl_us = spec.get("ttl_us")
        return cls(
            spec["name"],
            entities=spec["entities"],
            schema={
                f: Field(d, **spec["fields"][f]) if f in (spec.get("fields") or {}) else d for f, d in spec["schema"]
            },
            timestamp_field=spec["timestamp_field"],
            created_timestamp_field=spec.get("created_timestamp_field"),
            ttl=None if ttl_us is None else timedelta(microseconds=ttl_us),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags"),
            featurizers=_featurizers_from_spec(spec["featurizers"]) if spec.get("featurizers") else None,
            aggregations=[Aggregation.from_spec(a) for a in spec.get("aggregations") or ()],
            freshness=None if spec.get("freshness_us") is None else timedelta(microseconds=spec["freshness_us"]),
            log=None if spec.get("log") is None else ServingLog.from_spec(spec["log"]),
        )


def _check_aggregations(
    aggregations: object, schema: Mapping[str, str], roles: Mapping[str, str], owner_text: str
) -> tuple[tuple[Aggregation, ...], dict[str, str]]:
    """Check a view's aggregations against its schema (raw and derived features) and its
    other columns (``roles``: column -> what it is, for the messages); return them as a
    tuple and ``{aggregate feature: output dtype}``."""
    if aggregations is None:
        return (), {}
    if isinstance(aggregations, Aggregation):
        aggregations = [aggregations]
    if isinstance(aggregations, (str, Mapping)) or not isinstance(aggregations, Iterable):
        raise DefinitionError(
            f"{owner_text}: aggregations must be a list of fl.Aggregation objects, got {aggregations!r}"
        )
    items = tuple(aggregations)
    # Every name a reader may ask for, or the view's rows carry, ignoring case (as DuckDB does).
    taken = {c.lower(): f"feature {c!r}" for c in schema}
    taken.update({c.lower(): f"{role} {c!r}" for c, role in roles.items()})
    result: dict[str, str] = {}
    for agg in items:
        if not isinstance(agg, Aggregation):
            raise DefinitionError(f"{owner_text}: aggregations must be fl.Aggregation objects, got {agg!r}")
        if agg.column not in schema:
            what = roles.get(agg.column, "not a feature of the view")
            raise DefinitionError(
                f"{owner_text}: aggregation {agg.name!r} reads column {agg.column!r}, which is {what}; "
                f"aggregate one of its features ({', '.join(schema)})",
                column=agg.column,
                name=agg.name,
            )
        column_dtype = schema[agg.column]
        fitting = functions_for(column_dtype)
        if agg.function not in fitting:
            raise DefinitionError(
                f"{owner_text}: aggregation {agg.name!r} applies {agg.function} to column {agg.column!r} of "
                f"dtype {column_dtype}, which it does not fit; use one of {', '.join(fitting)} "
                f"(the others need a column of dtype {', '.join(NUMERIC_DTYPES)})",
                column=agg.column,
                dtype=column_dtype,
                name=agg.name,
            )
        clash = taken.get(agg.name.lower())
        if clash is not None:
            raise DefinitionError(
                f"{owner_text}: aggregation name {agg.name!r} is already the name of {clash} "
                "(names must differ, ignoring case); pass the Aggregation another name=",
                name=agg.name,
            )
        taken[agg.name.lower()] = f"aggregation {agg.name!r}"
        result[agg.name] = agg.output_dtype(column_dtype)
    return items, result


@dataclass(frozen=True, init=False)
class RequestSource(_Versioned):
    """Values that arrive with a request rather than from stored history (Feast's
    RequestSource). Online they come in ``request_data``; offline they are columns of the
    entity dataframe."""

    name: str
    schema: Mapping[str, str] = field(hash=False)

    def __init__(self, name: str, schema: Mapping[str, str]) -> None:
        _check_name("request source", name)
        if not isinstance(schema, Mapping) or not schema:
            raise DefinitionError(f"request source {name!r} needs a schema mapping field names to dtypes")
        checked = {
            _check_name("field", f, f"request source {name!r}"): _check_dtype(
                d, f"field {f!r} of request source {name!r}", DTYPES
            )
            for f, d in schema.items()
        }
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "schema", checked)

    def spec(self) -> dict[str, Any]:
        return {"kind": "request_source", "name": self.name, "schema": [[f, d] for f, d in self.schema.items()]}


@dataclass(frozen=True, init=False)
class OnDemandFeatureView(_Versioned):
    """Features computed by featurizers from other views' features and request data, at
    read time, by the same compiled kernel offline and online.

    ``sources``: FeatureViews (or their names) and RequestSources. ``featurizers`` maps
    each output feature name to a :func:`featurelite.featurizer` (a tuple of names to one
    returning a tuple); a featurizer's inputs are bound by parameter name to a feature of
    a source view or a request field.
    """

    name: str
    sources: tuple[str | RequestSource, ...]
    featurizers: Mapping[str | tuple[str, ...], Featurizer] = field(hash=False)
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: The FeatureView objects (not names) among the sources: ``apply`` applies them with it.
    view_objects: tuple[FeatureView, ...] = field(default=(), init=False, repr=False, compare=False, hash=False)
    #: ``{feature: (featurizer, output index)}`` per output, in order; see :attr:`outputs`.
    _outputs: Mapping[str, tuple[Featurizer, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def __init__(
        self,
        name: str,
        *,
        sources: Iterable[FeatureView | RequestSource | str],
        featurizers: FeaturizerMap,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
    ) -> None:
        _check_name("on-demand feature view", name)
        owner_text = f"on-demand feature view {name!r}"
        items: list[str | RequestSource] = []
        objects: list[FeatureView] = []
        for source in sources:
            if isinstance(source, FeatureView):
                items.append(source.name)
                objects.append(source)
            elif isinstance(source, (RequestSource, str)):
                items.append(source)
            else:
                raise DefinitionError(
                    f"{owner_text}: a source must be a FeatureView, its name or a RequestSource, got {source!r}"
                )
        if not items:
            raise DefinitionError(f"{owner_text} needs at least one source")
        normalized, outputs = _featurizer_outputs(featurizers, owner_text)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "sources", tuple(items))
        object.__setattr__(self, "featurizers", normalized)
        object.__setattr__(self, "_outputs", outputs)
        object.__setattr__(self, "description", str(description))
        object.__setattr__(self, "owner", str(owner))
        object.__setattr__(self, "tags", _check_tags(tags, owner_text))
        object.__setattr__(self, "view_objects", tuple(objects))

    @property
    def features(self) -> list[str]:
        """Output feature names, in order."""
        return list(self._outputs)

    @property
    def outputs(self) -> dict[str, tuple[Featurizer, int]]:
        """``{feature: (featurizer, index of its output)}``."""
        return dict(self._outputs)

    @property
    def schema(self) -> dict[str, str]:
        """Output feature name to dtype."""
        return {f: fz.outputs[i] for f, (fz, i) in self._outputs.items()}

    @property
    def request_sources(self) -> list[RequestSource]:
        return [s for s in self.sources if isinstance(s, RequestSource)]

    @property
    def view_sources(self) -> list[str]:
        return [s for s in self.sources if isinstance(s, str)]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": "on_demand_feature_view",
            "name": self.name,
            "sources": [s.spec() if isinstance(s, RequestSource) else {"feature_view": s} for s in self.sources],
            "featurizers": _featurizers_spec(self.featurizers),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> OnDemandFeatureView:
        """Rebuild (and compile) from :meth:`spec` output, without the defining modules."""
        sources: list[str | RequestSource] = [
            RequestSource(s["name"], {f: d for f, d in s["schema"]})
            if s.get("kind") == "request_source"
            else s["feature_view"]
            for s in spec["sources"]
        ]
        return cls(
            spec["name"],
            sources=sources,
            featurizers=_featurizers_from_spec(spec["featurizers"]),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags"),
        )


@dataclass(frozen=True, init=False)
class FeatureService(_Versioned):
    """A named list of features a model reads, pinned to the definitions' versions.

    ``features`` are ``"view:feature"`` references (of feature views, their windowed
    aggregates, or on-demand views), or ``"view@version:feature"`` to pin a version
    explicitly (any prefix of at least 4 digits of a version hash). ``Store.apply`` records,
    for every definition the service reads (the on-demand views' source views among them),
    the version in force at that moment, or the one a reference names: reading through the
    service uses those versions until the service is applied again. ``pins`` holds them
    (``{definition name: version}``; empty on a service not yet applied).
    ``full_feature_names=True`` names the service's columns ``view__feature``.
    """

    name: str
    features: tuple[str, ...]
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    full_feature_names: bool = False
    pins: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: What online reads through the service record in its serving log (None: nothing).
    log: ServingLog | None = None

    def __init__(
        self,
        name: str,
        features: Iterable[str],
        *,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
        full_feature_names: bool = False,
        log: bool | ServingLog | None = None,
    ) -> None:
        _check_name("feature service", name)
        owner_text = f"feature service {name!r}"
        if isinstance(features, (str, bytes, Mapping)) or not isinstance(features, Iterable):
            raise DefinitionError(
                f"{owner_text}: features must be a list of 'view:feature' references, not {type(features).__name__}",
                name=name,
            )
        refs = list(features)
        if not refs:
            raise DefinitionError(f"{owner_text} names no features; list 'view:feature' references", name=name)
        if not isinstance(full_feature_names, bool):
            raise DefinitionError(f"{owner_text}: full_feature_names must be True or False", name=name)
        outputs: dict[str, str] = {}
        for ref in refs:
            try:
                parsed = parse_reference(ref)
            except (ValueError, LookupError) as exc:
                raise DefinitionError(f"{owner_text}: {exc}", name=name) from None
            _check_name("feature view", parsed.view, owner_text)
            out = f"{parsed.view}__{parsed.feature}" if full_feature_names else parsed.feature
            if out in outputs:
                fix = (
                    "list it once" if outputs[out] == ref or full_feature_names
                    else "pass full_feature_names=True to name the columns view__feature"
                )
                raise DefinitionError(
                    f"{owner_text}: features {outputs[out]!r} and {ref!r} would both be named {out!r}; {fix}",
                    name=name,
                )
            outputs[out] = ref
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "features", tuple(refs))
        object.__setattr__(self, "description", str(description))
        object.__setattr__(self, "owner", str(owner))
        object.__setattr__(self, "tags", _check_tags(tags, owner_text))
        object.__setattr__(self, "full_feature_names", full_feature_names)
        object.__setattr__(self, "pins", {})
        object.__setattr__(self, "log", _serving_log(log, owner_text))

    def pinned(self, pins: Mapping[str, str]) -> FeatureService:
        """This service with its versions resolved (``{definition: full version}``): what
        ``Store.apply`` records."""
        copy = FeatureService(
            self.name, self.features, description=self.description, owner=self.owner, tags=self.tags,
            full_feature_names=self.full_feature_names, log=self.log,
        )
        object.__setattr__(copy, "pins", dict(sorted(pins.items())))
        return copy

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; its hash is the version (the pins are part of it)."""
        return {
            "kind": "feature_service",
            "name": self.name,
            "features": list(self.features),
            "full_feature_names": self.full_feature_names,
            "pins": [[name, version] for name, version in self.pins.items()],
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
            **({"log": self.log.spec()} if self.log else {}),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureService:
        """Rebuild a (pinned) FeatureService from :meth:`spec` output."""
        service = cls(
            spec["name"], spec["features"], description=spec.get("description", ""), owner=spec.get("owner", ""),
            tags=spec.get("tags"), full_feature_names=bool(spec.get("full_feature_names", False)),
            log=None if spec.get("log") is None else ServingLog.from_spec(spec["log"]),
        )
        return service.pinned({name: version for name, version in spec.get("pins") or ()})
