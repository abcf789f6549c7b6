"""featurelite: an embedded feature store in one DuckDB file.

    >>> import featurelite as fl
    >>> store = fl.open("shop.duckdb")

See the docs folder for the quickstart, concepts and the Python API.
"""

from ._version import __version__
from .definitions import (
    Aggregation,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    OnDemandFeatureView,
    RequestSource,
    ServingLog,
)
from .errors import (
    BreakingChangeError,
    DefinitionError,
    FeatureliteError,
    FeaturizerError,
    InputError,
    ManifestError,
    NotFoundError,
    PinnedVersionError,
    ReadOnlyError,
    SchemaError,
    ServerError,
    SourceError,
    StoreClosedError,
    StoreError,
    StoreFormatError,
    StoreLockedError,
    UnknownEntityError,
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownFeatureViewError,
    UnknownVersionError,
)
from .export import ExportResult
from .featurizer import Featurizer, Timestamp, featurizer
from .http_client import RemoteStore, connect
from .lineage import Lineage, LineageEdge, LineageNode, ModelRecord
from .manifest import Manifest, ManifestFeature
from .registry import ApplyResult, Change, ServiceImpact
from .reports import AgeSummary, ConsistencyReport, Difference, FeatureConsistency, FreshnessReport, ViewFreshness
from .results import IngestResult, MaterializeResult, OnlineResponse, VerifyResult
from .rules import Status
from .search import SearchHit
from .statistics import FeatureStats, Histogram, PeriodStats, TimelinePoint, TopValue, ViewStats
from .store import Store, open
from .types import DTYPES

__all__ = [
    "DTYPES",
    "AgeSummary",
    "Aggregation",
    "ApplyResult",
    "BreakingChangeError",
    "Change",
    "ConsistencyReport",
    "DefinitionError",
    "Difference",
    "Entity",
    "ExportResult",
    "FeatureConsistency",
    "FeatureService",
    "FeatureStats",
    "FeatureView",
    "FeatureliteError",
    "Featurizer",
    "FeaturizerError",
    "Field",
    "FreshnessReport",
    "Histogram",
    "IngestResult",
    "InputError",
    "Lineage",
    "LineageEdge",
    "LineageNode",
    "Manifest",
    "ManifestError",
    "ManifestFeature",
    "MaterializeResult",
    "ModelRecord",
    "NotFoundError",
    "OnDemandFeatureView",
    "OnlineResponse",
    "PeriodStats",
    "PinnedVersionError",
    "ReadOnlyError",
    "RemoteStore",
    "RequestSource",
    "SchemaError",
    "SearchHit",
    "ServerError",
    "ServiceImpact",
    "ServingLog",
    "SourceError",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "TimelinePoint",
    "Timestamp",
    "TopValue",
    "UnknownEntityError",
    "UnknownFeatureError",
    "UnknownFeatureServiceError",
    "UnknownFeatureViewError",
    "UnknownVersionError",
    "VerifyResult",
    "ViewFreshness",
    "ViewStats",
    "__version__",
    "connect",
    "featurizer",
    "open",
]
