"""Every error featurelite raises on purpose.

The tree::

    FeatureliteError
     ├── StoreError                      opening or using the store file
     │    ├── StoreLockedError           another process holds the file for writing
     │    ├── StoreFormatError           not a featurelite file, a damaged one, or one from a newer version
     │    ├── StoreClosedError           the store was closed
     │    └── ReadOnlyError              a write on a store opened read-only
     ├── ServerError                     the HTTP server cannot start or serve as asked
     ├── DefinitionError (ValueError)    an Entity or FeatureView that is not valid
     │    ├── BreakingChangeError        apply would break data already stored
     │    ├── FeaturizerError            a featurizer Numba cannot compile, or a bad signature
     │    └── PinnedVersionError         a pinned version the stored data can no longer serve
     ├── NotFoundError (LookupError)     an unknown name
     │    ├── UnknownEntityError
     │    ├── UnknownFeatureViewError
     │    ├── UnknownFeatureError
     │    ├── UnknownFeatureServiceError
     │    └── UnknownVersionError        a view@version prefix that matches no version, or several
     └── InputError (ValueError)         data handed to ingest / retrieval is not usable
          ├── SchemaError                missing / extra columns, a value that does not fit
          ├── SourceError                a file that is missing or not Parquet / CSV
          └── ManifestError              a training-set manifest that does not fit this store or read

A message is one sentence naming the object and the fix; structured details live in
attributes declared on the classes (``view``, ``column``, ``row``, ``path``, ...; ``None``
where they do not apply) so callers never parse text. Nothing raises the root class itself:
every error is one of the leaves or branches below it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BreakingChangeError",
    "DefinitionError",
    "FeatureliteError",
    "FeaturizerError",
    "InputError",
    "ManifestError",
    "NotFoundError",
    "PinnedVersionError",
    "ReadOnlyError",
    "SchemaError",
    "ServerError",
    "SourceError",
    "StoreClosedError",
    "StoreError",
    "StoreFormatError",
    "StoreLockedError",
    "UnknownEntityError",
    "UnknownFeatureError",
    "UnknownFeatureServiceError",
    "UnknownFeatureViewError",
    "UnknownVersionError",
]


class FeatureliteError(Exception):
    """Root of every error featurelite raises on purpose.

    Context attributes are declared on the classes; those that do not apply are ``None``.
    A keyword that no class in the error's hierarchy declares is a programming error
    (TypeError), so an attribute name cannot drift between raise sites.
    """

    #: The feature view (or on-demand feature view) concerned.
    view: str | None = None
    #: The column (feature, join key, timestamp or request field) concerned.
    column: str | None = None
    #: The input row (0-based) concerned.
    row: int | None = None
    #: The name (entity, view, feature) concerned.
    name: str | None = None
    #: The file concerned.
    path: str | None = None

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in details.items():
            if not _declared(type(self), key):
                raise TypeError(f"{type(self).__name__} declares no attribute {key!r}")
            setattr(self, key, value)
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle (multiprocessing, test workers) with the details, not only the message.
        return (_rebuild, (type(self), self.message, self.details))


def _declared(cls: type, key: str) -> bool:
    return any(key in getattr(klass, "__annotations__", {}) for klass in cls.__mro__)


def _rebuild(cls: type[FeatureliteError], message: str, details: dict[str, Any]) -> FeatureliteError:
    return cls(message, **details)


class StoreError(FeatureliteError):
    """The store file cannot be opened or used as asked.

    ``committed`` says, where it is known, whether the operation that failed had
    committed its change (True: the change is in the file; False: nothing was written).
    """

    committed: bool | None = None


class StoreLockedError(StoreError):
    """Another process has the store file open for writing."""


class StoreFormatError(StoreError):
    """The file is not a featurelite store, is damaged, or was written by a newer featurelite."""

    format_version: int | None = None


class StoreClosedError(StoreError):
    """An operation on a store that was already closed."""


class ReadOnlyError(StoreError):
    """A write was attempted on a store opened with ``read_only=True``."""


class ServerError(FeatureliteError):
    """The HTTP server cannot start or serve as asked (a port in use, a bad address or token)."""

    host: str | None = None
    port: int | None = None


class DefinitionError(FeatureliteError, ValueError):
    """An Entity or FeatureView definition is not valid."""

    dtype: str | None = None
    ttl: Any = None
    featurizer: str | None = None


class BreakingChangeError(DefinitionError):
    """Applying a definition would break data that is already stored."""

    #: History rows the change would break.
    rows: int | None = None


class FeaturizerError(DefinitionError):
    """A featurizer that cannot be compiled, whose signature is not supported, or that
    failed while it ran (on every path: ingest, training sets, online reads)."""

    #: The featurizer's mismatch between the batch and per-request paths, if that is the failure.
    mismatch: Any = None


class PinnedVersionError(DefinitionError):
    """A feature service, manifest or ``view@version`` reference pins a version of a
    definition that the stored data can no longer serve (its columns changed since), or
    that differs from what a manifest was built with."""

    #: The pinned version (full hash).
    pinned: str | None = None
    #: The version in force now (None when the definition was deleted).
    current: str | None = None


class NotFoundError(FeatureliteError, LookupError):
    """A name that the registry does not know."""


class UnknownEntityError(NotFoundError):
    """An entity name that is not registered."""


class UnknownFeatureViewError(NotFoundError):
    """A feature view name that is not registered."""


class UnknownFeatureError(NotFoundError):
    """A feature reference that names no feature of its view."""

    #: The ``view:feature`` reference as given.
    reference: str | None = None


class UnknownFeatureServiceError(NotFoundError):
    """A feature service name that is not registered."""


class UnknownVersionError(NotFoundError):
    """A version (or a prefix of one) that names no version of a definition, or several."""

    #: The stored versions the prefix was matched against (or those it matched, when several).
    candidates: list[str] | None = None


class InputError(FeatureliteError, ValueError):
    """Data handed to featurelite cannot be used."""


class SchemaError(InputError):
    """Input columns or values do not match the declared schema."""

    dtype: str | None = None
    arrow_type: str | None = None
    value: Any = None
    missing: list[str] | None = None
    extra: list[str] | None = None


class SourceError(InputError):
    """A data source (file path or object) that cannot be read."""


class ManifestError(InputError):
    """A training-set manifest that cannot be used here: unreadable, from another store,
    or pinning other versions than what would be served."""

    #: Output features the problem concerns (for example those whose values moved).
    features: list[str] | None = None
