"""featurelite: an embedded feature store in one DuckDB file.

    >>> import featurelite as fl
    >>> store = fl.open("shop.duckdb")

See the docs folder for the quickstart, concepts and the Python API.
"""

from ._version import __version__
from .definitions import Aggregation, Entity, FeatureView, OnDemandFeatureView, RequestSource
from .errors import (
    BreakingChangeError,
    DefinitionError,
    FeatureliteError,
    FeaturizerError,
    InputError,
    NotFoundError,
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
    UnknownFeatureViewError,
)
from .featurizer import Featurizer, Timestamp, featurizer
from .registry import ApplyResult, Change
from .results import IngestResult, MaterializeResult, OnlineResponse, VerifyResult
from .rules import Status
from .store import Store, open
from .types import DTYPES

__all__ = [
    "DTYPES",
    "Aggregation",
    "ApplyResult",
    "BreakingChangeError",
    "Change",
    "DefinitionError",
    "Entity",
    "FeatureView",
    "FeatureliteError",
    "Featurizer",
    "FeaturizerError",
    "IngestResult",
    "InputError",
    "MaterializeResult",
    "NotFoundError",
    "OnDemandFeatureView",
    "OnlineResponse",
    "ReadOnlyError",
    "RequestSource",
    "SchemaError",
    "ServerError",
    "SourceError",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "Timestamp",
    "UnknownEntityError",
    "UnknownFeatureError",
    "UnknownFeatureViewError",
    "VerifyResult",
    "__version__",
    "featurizer",
    "open",
]
