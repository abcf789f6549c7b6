"""Feature references: ``view:feature``, or ``view@version:feature`` pinning a version.

A version is a definition's content hash (16 hex digits); a reference may give any prefix
of at least :data:`MIN_PREFIX` digits, as git accepts a prefix of a commit hash. Resolving
the prefix to a stored version is the registry's job; this module only reads the text.
No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .arguments import shown
from .errors import InputError, UnknownFeatureError

__all__ = ["MIN_PREFIX", "FeatureRef", "parse_reference", "parse_references", "pinned"]

#: The shortest version prefix a reference may give.
MIN_PREFIX = 4
_VERSION = re.compile(r"[0-9a-f]+")


class FeatureRef(NamedTuple):
    """One parsed reference."""

    view: str
    #: The version prefix as given, or None for "the version in force".
    version: str | None
    feature: str
    #: The reference as written.
    text: str

    @property
    def plain(self) -> str:
        """The reference without its version: ``view:feature``."""
        return f"{self.view}:{self.feature}"


def pinned(view: str, version: str, feature: str) -> str:
    """The reference to ``feature`` of ``view`` at ``version``."""
    return f"{view}@{version}:{feature}"


def parse_reference(ref: object) -> FeatureRef:
    """Read one ``view:feature`` or ``view@version:feature`` reference."""
    if not isinstance(ref, str):
        raise InputError(f"feature reference {shown(ref)} is {type(ref).__name__}; pass 'view:feature' strings")
    if ref.count(":") != 1:
        raise UnknownFeatureError(
            f"feature reference {ref!r} is not of the form 'view:feature' (or 'view@version:feature')",
            reference=ref,
        )
    head, feature = ref.split(":")
    if "@" not in head:
        return FeatureRef(head, None, feature, ref)
    view, _, version = head.partition("@")
    if len(version) < MIN_PREFIX or not _VERSION.fullmatch(version):
        raise UnknownFeatureError(
            f"feature reference {ref!r}: the version after '@' must be at least {MIN_PREFIX} lowercase hex "
            f"digits of a version hash, as `featurelite list-versions STORE {view}` shows them",
            reference=ref, view=view,
        )
    return FeatureRef(view, version, feature, ref)


def parse_references(features: Any) -> list[FeatureRef]:
    """Read a list of references (or one), checking its shape."""
    if isinstance(features, str):
        features = [features]
    elif isinstance(features, (bytes, Mapping)) or not isinstance(features, (Sequence, set, frozenset)):
        raise InputError(
            f"features must be a list of 'view:feature' references, not {type(features).__name__}: {shown(features)}"
        )
    if not features:
        raise InputError("no features requested; pass references like 'view:feature'")
    return [parse_reference(ref) for ref in features]
