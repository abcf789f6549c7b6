"""The rules that decide a value, each written once: which row wins, how old a value may
be (ttl), and what status a read reports. Pure: no I/O.

Every path generates its form of a rule from here: the SQL of ingest, catch-up,
materialize and the point-in-time join, and the NumPy/Python of the online index and
of future-dated reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from .db import quote

__all__ = [
    "NO_CREATED_US", "SEQ", "VALUE_STATUS", "Status", "Ttl", "WinnerOrder", "row_verdict", "row_verdicts",
    "value_status", "window_status",
]

#: Hidden column: a store-wide ingest sequence number, the last tie-break ("ingested last").
SEQ = "_fl_seq"

#: A missing created time, in microseconds: it sorts before every real one. The SQL order
#: key and the NumPy comparison both use this one number.
NO_CREATED_US = int(np.iinfo(np.int64).min)

#: 2**64 as a SQL literal (a multiplication, not a shift: DuckDB refuses to shift the
#: negative microsecond counts of pre-1970 times).
_TWO_64 = "18446744073709551616::HUGEINT"


@dataclass(frozen=True)
class WinnerOrder:
    """Which of two rows of one entity wins: the later event time, then the later created
    time (a missing one sorts first), then the later ingest (:data:`SEQ`).

    The one definition of the rule. :meth:`sql_key` is its SQL form (the greatest key
    wins), :meth:`wins` its NumPy form; both are generated from :attr:`terms`.
    """

    #: The view's event time column.
    ts: str
    #: The view's created time column, if it has one.
    created: str | None

    @property
    def terms(self) -> tuple[str, ...]:
        """The columns compared, most significant first."""
        return (self.ts, self.created, SEQ) if self.created else (self.ts, SEQ)

    def sql_key(self, alias: str = "") -> str:
        """SQL expression ordering rows by the rule; the greatest key wins.

        Without a created time the key is one HUGEINT, ``event_us * 2**64 + seq``: exact
        (seq < 2**63) and cheaper to sort and compare than a struct. With one it is a
        struct of the three terms, each an integer count of microseconds.
        """
        prefix = f"{alias}." if alias else ""
        ts = f"epoch_us({prefix}{quote(self.ts)})"
        if not self.created:
            return f"({ts}::HUGEINT * {_TWO_64} + {prefix}{SEQ})"
        created = f"coalesce(epoch_us({prefix}{quote(self.created)}), {NO_CREATED_US})"
        return f"{{'t': {ts}, 'c': {created}, 's': {prefix}{SEQ}}}"

    @staticmethod
    def wins(new: tuple[np.ndarray, ...], old: tuple[np.ndarray, ...]) -> np.ndarray:
        """Where rows ``new`` beat rows ``old`` (both: one int64 array per term, in
        :attr:`terms` order, missing created times as :data:`NO_CREATED_US`)."""
        later = np.zeros(len(new[0]), dtype=np.bool_)
        same = np.ones(len(new[0]), dtype=np.bool_)
        for mine, theirs in zip(new, old, strict=True):  # lexicographic: the first term that differs decides
            later |= same & (mine > theirs)
            same &= mine == theirs
        return later


@dataclass(frozen=True)
class Ttl:
    """How old a value may be: an event at ``ts`` serves a read at ``t`` when
    ``t - ttl <= ts <= t``. None: no age limit (the upper bound still holds)."""

    micros: int | None

    @classmethod
    def of(cls, ttl: timedelta | None) -> Ttl:
        return cls(None if ttl is None else ttl // timedelta(microseconds=1))

    def oldest_us(self, now_us: int) -> int | None:
        """The earliest event time that serves a read at ``now_us`` (None: any)."""
        return None if self.micros is None else now_us - self.micros

    def sql_fresh(self, ts: str, t: str) -> str | None:
        """SQL condition: the event at ``ts`` is young enough for a read at ``t`` (None
        when there is no ttl)."""
        if self.micros is None:
            return None
        return f"{ts} >= {t} - to_microseconds({int(self.micros)})"


class Status:
    """Per-value status of an online read (names as in Feast's FieldStatus)."""

    PRESENT = "PRESENT"
    NULL_VALUE = "NULL_VALUE"  #: the winning row stores null for this feature
    NOT_FOUND = "NOT_FOUND"  #: no row for this entity
    OUTSIDE_MAX_AGE = "OUTSIDE_MAX_AGE"  #: the latest value is older than the view's ttl
    EMPTY_WINDOW = "EMPTY_WINDOW"  #: a windowed aggregate's window held no events (count and sum: 0)


#: Verdict on an entity's latest row whose event lies after the read time: the online
#: index cannot serve it; the read resolves it from history (see :func:`row_verdict`).
FUTURE = "_future"


def row_verdict(ts_us: int | None, now_us: int, oldest_us: int | None) -> str | None:
    """What an entity's winning row at ``ts_us`` means for a read at ``now_us``: None when
    it serves (each value is then :func:`value_status`), else the status every value of
    the row gets (:data:`FUTURE`: resolve from history)."""
    if ts_us is None:
        return Status.NOT_FOUND
    if ts_us > now_us:
        return FUTURE
    if oldest_us is not None and ts_us < oldest_us:
        return Status.OUTSIDE_MAX_AGE
    return None


#: :func:`row_verdict`'s answers for rows that exist, by code (see :func:`row_verdicts`).
_VERDICTS: tuple[str | None, ...] = (None, FUTURE, Status.OUTSIDE_MAX_AGE)


def row_verdicts(ts_us: np.ndarray, now_us: int, oldest_us: int | None) -> list[str | None]:
    """:func:`row_verdict` for many existing rows at once (``ts_us``: their event times),
    in NumPy: the batch read's form of the same rule."""
    codes = (ts_us > now_us).astype(np.int8)
    if oldest_us is not None:
        codes[ts_us < oldest_us] = 2  # oldest <= now: an event before it is never in the future
    if not codes.any():
        return [None] * len(codes)
    return [_VERDICTS[code] for code in codes.tolist()]


#: Status of a value of a row that serves, indexed by whether the value is present: the
#: table form of :func:`value_status`, for loops that cannot afford a call per value.
VALUE_STATUS: tuple[str, str] = (Status.NULL_VALUE, Status.PRESENT)


def value_status(present: bool) -> str:
    """Status of one value of a row that serves: PRESENT, or NULL_VALUE for a null."""
    return VALUE_STATUS[present]


def window_status(present: bool, events: int) -> str:
    """Status of a windowed aggregate: EMPTY_WINDOW when its window held no events (count
    and sum are then 0, the others null), else as :func:`value_status` (a null then means,
    say, ``std`` over one event)."""
    return Status.EMPTY_WINDOW if events == 0 else VALUE_STATUS[present]
