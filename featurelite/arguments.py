"""Checks of the plain arguments of Store methods (names, counts, flags), so that a wrong
type is an InputError naming the argument, not a TypeError from deep inside. Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from .errors import InputError
from .types import storable_micros

__all__ = ["flag", "moment_us", "name", "names", "shown", "whole_number"]


def shown(value: Any) -> str:
    """A value for an error message, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def name(value: Any, what: str) -> str:
    """``value`` if it is a string (a definition's name), else an InputError."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be a name (a string), not {type(value).__name__}: {shown(value)}")
    return value


def names(value: Any, what: str) -> list[str]:
    """One name or a list of names, as a list."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [name(v, f"each of {what}") for v in value]
    raise InputError(f"{what} must be a name or a list of names, not {type(value).__name__}: {shown(value)}")


def whole_number(value: Any, what: str, *, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be a whole number of at least {minimum}, not {shown(value)}")
    return int(value)


def flag(value: Any, what: str) -> bool:
    """A True/False option."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{what} must be True or False, not {type(value).__name__}: {shown(value)}")
    return bool(value)


def moment_us(moment: datetime, name: str) -> int:
    """A caller's point in time (``now=``, ``end_date=``) in microseconds, checked."""
    try:
        us = storable_micros(moment)
    except TypeError:
        raise InputError(
            f"{name} must be a datetime.datetime, got {type(moment).__name__}: {moment!r}", name=name
        ) from None
    if us is None:
        raise InputError(f"{name} {moment.isoformat()} lies outside years 1-9999 in UTC; pass a time within them",
                         name=name)
    return us
