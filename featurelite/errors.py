"""Every error featurelite raises on purpose.

The tree::

    FeatureliteError
     ├── StoreError                      opening or using the store file
     │    ├── StoreLockedError           another process holds the file for writing
     │    ├── StoreFormatError           not a featurelite file, or one from a newer version
     │    ├── StoreClosedError           the store was closed
     │    └── ReadOnlyError              a write on a store opened read-only
     ├── DefinitionError (ValueError)    an Entity or FeatureView that is not valid
     │    ├── BreakingChangeError        apply would break data already stored
     │    └── FeaturizerError            a featurizer Numba cannot compile, or a bad signature
     ├── NotFoundError (LookupError)     an unknown name
     │    ├── UnknownEntityError
     │    ├── UnknownFeatureViewError
     │    └── UnknownFeatureError
     └── InputError (ValueError)         data handed to ingest / retrieval is not usable
          ├── SchemaError                missing / extra columns, a value that does not fit
          └── SourceError                a file that is missing or not Parquet / CSV

A message is one sentence naming the object and the fix; structured details live in
attributes (``view``, ``column``, ``row``, ``path``) so callers never parse text.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BreakingChangeError",
    "DefinitionError",
    "FeatureliteError",
    "FeaturizerError",
    "InputError",
    "NotFoundError",
    "ReadOnlyError",
    "SchemaError",
    "SourceError",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "UnknownEntityError",
    "UnknownFeatureError",
    "UnknownFeatureViewError",
]


class FeatureliteError(Exception):
    """Root of every error featurelite raises on purpose."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        for key, value in details.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class StoreError(FeatureliteError):
    """The store file cannot be opened or used as asked."""


class StoreLockedError(StoreError):
    """Another process has the store file open for writing."""


class StoreFormatError(StoreError):
    """The file is not a featurelite store, or was written by a newer featurelite."""


class StoreClosedError(StoreError):
    """An operation on a store that was already closed."""


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened with ``read_only=True``."""


class DefinitionError(FeatureliteError, ValueError):
    """An Entity or FeatureView definition is not valid."""


class BreakingChangeError(DefinitionError):
    """Applying a definition would break data that is already stored."""


class FeaturizerError(DefinitionError):
    """A featurizer that cannot be compiled, or whose signature is not supported."""


class NotFoundError(FeatureliteError, LookupError):
    """A name that the registry does not know."""


class UnknownEntityError(NotFoundError):
    """An entity name that is not registered."""


class UnknownFeatureViewError(NotFoundError):
    """A feature view name that is not registered."""


class UnknownFeatureError(NotFoundError):
    """A feature reference that names no feature of its view."""


class InputError(FeatureliteError, ValueError):
    """Data handed to featurelite cannot be used."""


class SchemaError(InputError):
    """Input columns or values do not match the declared schema."""


class SourceError(InputError):
    """A data source (file path or object) that cannot be read."""
