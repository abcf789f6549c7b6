"""featurelite: an embedded feature store in one DuckDB file.

    >>> import featurelite as fl
    >>> store = fl.open("shop.duckdb")

See the docs folder for the quickstart, concepts and the Python API.
"""

from ._version import __version__
from .definitions import Entity, FeatureView
from .errors import (
    BreakingChangeError,
    DefinitionError,
    FeatureliteError,
    InputError,
    NotFoundError,
    ReadOnlyError,
    SchemaError,
    SourceError,
    StoreClosedError,
    StoreError,
    StoreFormatError,
    StoreLockedError,
    UnknownEntityError,
    UnknownFeatureError,
    UnknownFeatureViewError,
)
from .online import Status
from .registry import ApplyResult, Change
from .results import IngestResult, MaterializeResult, OnlineResponse
from .store import Store, open
from .types import DTYPES

__all__ = [
    "DTYPES",
    "ApplyResult",
    "BreakingChangeError",
    "Change",
    "DefinitionError",
    "Entity",
    "FeatureView",
    "FeatureliteError",
    "IngestResult",
    "InputError",
    "MaterializeResult",
    "NotFoundError",
    "OnlineResponse",
    "ReadOnlyError",
    "SchemaError",
    "SourceError",
    "Status",
    "Store",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "UnknownEntityError",
    "UnknownFeatureError",
    "UnknownFeatureViewError",
    "__version__",
    "open",
]
