"""Entity and FeatureView: plain frozen definitions, validated when built.

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
from typing import Any

from .errors import DefinitionError
from .types import DTYPES, KEY_DTYPES

__all__ = ["Entity", "FeatureView", "parse_ttl"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Prefix of every column and table featurelite keeps for itself.
RESERVED_PREFIX = "_fl_"
_TTL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d|w)\s*$")
_TTL_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}


def _check_name(kind: str, name: object, owner: str | None = None) -> str:
    where = f" in {owner}" if owner else ""
    if not isinstance(name, str) or not _NAME.match(name):
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

    ``None`` means values never expire. A ttl must be positive.
    """
    if ttl is None:
        return None
    if isinstance(ttl, str):
        match = _TTL.match(ttl)
        if not match:
            raise DefinitionError(
                f"{owner} {ttl!r} is not a duration; write it like '30d', '12h', '90m', '45s' or "
                "pass a datetime.timedelta",
                ttl=ttl,
            )
        ttl = float(match.group(1)) * _TTL_UNITS[match.group(2)]
    if not isinstance(ttl, timedelta):
        raise DefinitionError(f"{owner} must be a timedelta or a string like '30d', not {type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise DefinitionError(f"{owner} must be positive, got {ttl}", ttl=ttl)
    return ttl


def _hash_spec(spec: Mapping[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class _Versioned:
    """A definition whose version is the content hash of its ``spec()``."""

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def version(self) -> str:
        """Content hash of :meth:`spec`: equal definitions share it in every process."""
        return _hash_spec(self.spec())


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
        if isinstance(join_keys, Mapping):
            pairs = list(join_keys.items())
        else:
            pairs = [(key, dtype) for key in join_keys]
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
        return dict(zip(self.join_keys, self.dtypes))

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; its hash is the version."""
        return {
            "kind": "entity",
            "name": self.name,
            "join_keys": [[k, d] for k, d in zip(self.join_keys, self.dtypes)],
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
    _entity_objects: tuple[Entity, ...] = field(default=(), repr=False, compare=False, hash=False)

    def __init__(
        self,
        name: str,
        *,
        entities: Iterable[Entity | str],
        schema: Mapping[str, str],
        timestamp_field: str = "event_timestamp",
        created_timestamp_field: str | None = None,
        ttl: timedelta | str | None = None,
        description: str = "",
        owner: str = "",
        tags: Mapping[str, str] | None = None,
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
            _check_name("feature", feat, owner_text): _check_dtype(dt, f"feature {feat!r} of {owner_text}")
            for feat, dt in schema.items()
        }
        _check_name("timestamp_field", timestamp_field, owner_text)
        if created_timestamp_field is not None:
            _check_name("created_timestamp_field", created_timestamp_field, owner_text)
            if created_timestamp_field == timestamp_field:
                raise DefinitionError(
                    f"{owner_text} uses {timestamp_field!r} as both timestamp_field and "
                    "created_timestamp_field; give them different columns"
                )
        columns = list(checked_schema) + [timestamp_field]
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
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "entities", tuple(names))
        object.__setattr__(self, "schema", checked_schema)
        object.__setattr__(self, "timestamp_field", timestamp_field)
        object.__setattr__(self, "created_timestamp_field", created_timestamp_field)
        object.__setattr__(self, "ttl", parse_ttl(ttl, f"ttl of {owner_text}"))
        object.__setattr__(self, "description", str(description))
        object.__setattr__(self, "owner", str(owner))
        object.__setattr__(self, "tags", _check_tags(tags, owner_text))
        object.__setattr__(self, "_entity_objects", tuple(objects))

    @property
    def features(self) -> list[str]:
        """Feature names in schema order."""
        return list(self.schema)

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description; its hash is the version."""
        return {
            "kind": "feature_view",
            "name": self.name,
            "entities": list(self.entities),
            "schema": [[f, d] for f, d in self.schema.items()],
            "timestamp_field": self.timestamp_field,
            "created_timestamp_field": self.created_timestamp_field,
            "ttl_us": None if self.ttl is None else self.ttl // timedelta(microseconds=1),
            "description": self.description,
            "owner": self.owner,
            "tags": dict(self.tags),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> FeatureView:
        """Rebuild a FeatureView from :meth:`spec` output."""
        ttl_us = spec.get("ttl_us")
        return cls(
            spec["name"],
            entities=spec["entities"],
            schema={f: d for f, d in spec["schema"]},
            timestamp_field=spec["timestamp_field"],
            created_timestamp_field=spec.get("created_timestamp_field"),
            ttl=None if ttl_us is None else timedelta(microseconds=ttl_us),
            description=spec.get("description", ""),
            owner=spec.get("owner", ""),
            tags=spec.get("tags"),
        )

