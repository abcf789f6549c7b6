"""Training-set manifests: what a training set was built from, carried in its own schema.

Every table ``Store.get_historical_features`` returns has a manifest in its Arrow schema
metadata under ``featurelite.manifest`` (JSON): the store it came from, the service (if
any), every definition version it read, each feature's featurizer version, the entity
rows' time range, the store's ingest position, the row count and content digests of the
table and of each feature column. Parquet keeps schema metadata, so a training set written
with ``pq.write_table`` and read back still has it.

With the manifest a model can be served exactly what it was trained on
(``get_online_features(..., manifest=m)``), and the training set can be rebuilt later
(``get_historical_features(..., as_of=m)``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa

from .digest import column_digest, table_digest
from .errors import ManifestError

__all__ = ["MANIFEST_KEY", "Manifest", "ManifestFeature"]

#: The schema metadata key a training set carries its manifest under.
MANIFEST_KEY = b"featurelite.manifest"
#: Bumped when the manifest's fields change meaning; a newer one is refused.
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ManifestFeature:
    """One feature column of a training set."""

    #: The column's name in the training set.
    output: str
    #: ``view@version:feature``, pinning the full version.
    reference: str
    view: str
    feature: str
    #: "feature_view", "aggregation" (a windowed aggregate of a feature view) or "on_demand_feature_view".
    kind: str
    #: The version of the view (or on-demand view).
    version: str
    dtype: str
    #: The version of the featurizer that computes it (on-demand and write-time features), else None.
    featurizer: str | None
    #: Content digest of the column.
    digest: str


@dataclass(frozen=True)
class Manifest:
    """A training set's manifest. Read one with :meth:`from_table` (or :meth:`from_json`)."""

    store_id: str | None
    featurelite_version: str
    #: When the training set was built (ISO 8601, UTC).
    created_at: str
    service: str | None
    service_version: str | None
    full_feature_names: bool
    features: tuple[ManifestFeature, ...]
    #: The version of every definition read (on-demand views' sources too).
    pins: Mapping[str, str]
    #: Join keys the features are looked up by, and request fields on-demand views need.
    entity_keys: tuple[str, ...]
    request_fields: tuple[str, ...]
    #: The entity rows' timestamp column, and their earliest and latest time (ISO 8601, UTC).
    timestamp_field: str
    time_range: tuple[str | None, str | None]
    rows: int
    #: The sequence number of the last row ingested into the store when the set was built
    #: (-1: none): ``as_of=`` rebuilds the set from rows up to it.
    ingest_position: int
    #: Content digest of the whole table.
    digest: str
    format: int = MANIFEST_FORMAT
    extra: Mapping[str, Any] = field(default_factory=dict)

    # Cached (a frozen dataclass keeps them in its __dict__): a model serving through its
    # manifest asks for them on every request.
    @cached_property
    def outputs(self) -> tuple[str, ...]:
        """Feature column names, in training-set order."""
        return tuple(f.output for f in self.features)

    @cached_property
    def references(self) -> tuple[str, ...]:
        """The features as pinned references (``view@version:feature``), in order."""
        return tuple(f.reference for f in self.features)

    @cached_property
    def key(self) -> str:
        """What identifies the manifest's features and versions (not its data)."""
        return json.dumps([self.store_id, list(self.references), dict(self.pins), self.full_feature_names])

    def to_json(self) -> str:
        """The manifest as the JSON text stored in a training set's schema."""
        data = asdict(self)
        data["features"] = [asdict(f) for f in self.features]
        data["pins"] = dict(self.pins)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Read a manifest from its JSON text (ManifestError if it is not one)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            fmt = int(data.get("format", 0))
            if fmt > MANIFEST_FORMAT:
                raise ManifestError(
                    f"the manifest has format {fmt}, newer than this featurelite reads ({MANIFEST_FORMAT}); "
                    "upgrade featurelite"
                )
            features = tuple(ManifestFeature(**f) for f in data["features"])
            return cls(
                store_id=data["store_id"], featurelite_version=data["featurelite_version"],
                created_at=data["created_at"], service=data["service"], service_version=data["service_version"],
                full_feature_names=bool(data["full_feature_names"]), features=features, pins=dict(data["pins"]),
                entity_keys=tuple(data["entity_keys"]), request_fields=tuple(data["request_fields"]),
                timestamp_field=data["timestamp_field"], time_range=(data["time_range"][0], data["time_range"][1]),
                rows=int(data["rows"]), ingest_position=int(data["ingest_position"]), digest=data["digest"],
                format=fmt, extra=dict(data.get("extra") or {}),
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # json.JSONDecodeError is a ValueError
            raise ManifestError(f"this is not a featurelite manifest ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_table(cls, table: pa.Table | pa.Schema) -> Manifest:
        """The manifest a training set (or its schema) carries."""
        schema = table if isinstance(table, pa.Schema) else getattr(table, "schema", None)
        if not isinstance(schema, pa.Schema):
            raise ManifestError(f"a manifest is read from a pyarrow Table or Schema, not {type(table).__name__}")
        text = (schema.metadata or {}).get(MANIFEST_KEY)
        if text is None:
            raise ManifestError(
                "the table carries no featurelite manifest (schema metadata 'featurelite.manifest'); build it "
                "with store.get_historical_features, and keep its schema metadata when saving it"
            )
        return cls.from_json(text)

    def attach(self, table: pa.Table) -> pa.Table:
        """``table`` with this manifest in its schema metadata."""
        metadata = dict(table.schema.metadata or {})
        metadata[MANIFEST_KEY] = self.to_json().encode()
        return table.replace_schema_metadata(metadata)

    def changed_features(self, other: Manifest | pa.Table) -> list[str]:
        """The feature columns whose content differs between this manifest and ``other``
        (another manifest of the same features, or a table with those columns), by digest:
        what moved between two builds of a training set. A feature missing from ``other``
        counts as changed."""
        if isinstance(other, Manifest):
            theirs = {f.output: f.digest for f in other.features}
        elif isinstance(other, pa.Table):
            theirs = {name: column_digest(other.column(name)) for name in self.outputs if name in other.column_names}
        else:
            raise ManifestError(f"compare a manifest with a Manifest or a pyarrow Table, not {type(other).__name__}")
        return [f.output for f in self.features if theirs.get(f.output) != f.digest]

    def matches(self, table: pa.Table) -> bool:
        """Whether ``table`` holds exactly the data this manifest describes."""
        return table_digest(table.replace_schema_metadata(None)) == self.digest
