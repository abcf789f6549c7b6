"""Whether stored rows written under one definition of a feature view can be read under
another: the one home of that rule.

``apply`` asks it before replacing a view that holds rows (a breaking change is refused);
reads through a pinned version (a feature service, a manifest, ``view@version:feature``)
ask it before reading the view's tables, which hold what the current definition wrote.
No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .definitions import FeatureView

__all__ = ["storage_difference"]


def storage_difference(
    old: FeatureView, new: FeatureView, old_keys: Sequence[tuple[str, str]], new_keys: Sequence[tuple[str, str]],
    features: Iterable[str] | None = None,
) -> str | None:
    """Why rows stored under ``old`` cannot be read as ``new`` (or the reverse), or None.

    ``old_keys`` / ``new_keys``: each definition's join keys and dtypes (from its entities).
    ``features``: the stored features that matter (default: all of ``old``'s). Windowed
    aggregations, ttls and metadata are not compared: they are computed or applied when
    read, so they change nothing stored."""
    if list(old_keys) != list(new_keys):
        return f"its join keys change from {list(old_keys)} to {list(new_keys)}"
    if old.timestamp_field != new.timestamp_field:
        return f"timestamp_field changes from {old.timestamp_field!r} to {new.timestamp_field!r}"
    if old.created_timestamp_field != new.created_timestamp_field:
        return (
            f"created_timestamp_field changes from {old.created_timestamp_field!r} "
            f"to {new.created_timestamp_field!r}"
        )
    checked = list(old.schema) if features is None else list(features)
    for feature in checked:
        dtype = old.schema[feature]
        if feature not in new.schema:
            return f"feature {feature!r} is removed"
        if new.schema[feature] != dtype:
            return f"feature {feature!r} changes dtype from {dtype!r} to {new.schema[feature]!r}"
    # Stored derived values were computed by the featurizer version in force when they
    # arrived: a different computation (or none) would leave history inconsistent.
    old_derived = {f: (fz.version, i) for f, (fz, i) in old.derived.items()}
    new_derived = {f: (fz.version, i) for f, (fz, i) in new.derived.items()}
    compared = sorted(set(old_derived) | set(new_derived)) if features is None else checked
    for feature in compared:
        before, after = old_derived.get(feature), new_derived.get(feature)
        if before == after:
            continue
        if before is None:
            if feature in old.schema:
                return f"feature {feature!r} changes from ingested to computed by a featurizer"
            return f"write-time feature {feature!r} is added, which the stored rows would lack"
        if after is None:
            return f"feature {feature!r} changes from computed by a featurizer to ingested"
        return f"write-time feature {feature!r} is computed by another featurizer version ({before[0]} -> {after[0]})"
    return None
