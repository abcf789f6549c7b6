"""What ``Store.freshness()`` and ``Store.consistency()`` report, as plain frozen objects.

Both travel over HTTP (the remote client rebuilds them with ``from_dict``), so each has a
JSON-ready ``to_dict()``; durations are seconds (floats) there, times ISO-8601 text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import wire

__all__ = [
    "AgeSummary", "ConsistencyReport", "Difference", "FeatureConsistency", "FreshnessReport", "ViewFreshness",
]


def _time(value: Any) -> datetime | None:
    return None if value is None else value if isinstance(value, datetime) else wire.parse_time(value)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _duration(value: float | None) -> timedelta | None:
    return None if value is None else timedelta(seconds=value)


@dataclass(frozen=True)
class AgeSummary:
    """A distribution of durations in seconds: how many were observed and their
    percentiles (None when nothing was observed)."""

    count: int = 0
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AgeSummary:
        return cls(int(data["count"]), data.get("p50"), data.get("p95"), data.get("p99"), data.get("max"))


@dataclass(frozen=True)
class ViewFreshness:
    """How fresh one feature view is.

    ``last_event``: the newest event time in its history; ``newest_age``: how long ago
    that was (at the report's ``now``); ``slo``: the view's declared ``freshness=``.
    ``served_ages``: the ages of the values served by sampled online reads since the store
    was opened (``served_stale`` of them older than the SLO). ``push_to_visible``: seconds
    from an ingest or push starting to its values being readable online, since the store
    was opened (a push is acknowledged only once they are).
    """

    view: str
    slo: timedelta | None
    last_event: datetime | None
    newest_age: timedelta | None
    served_ages: AgeSummary = field(default_factory=AgeSummary)
    served_stale: int = 0
    push_to_visible: AgeSummary = field(default_factory=AgeSummary)

    @property
    def breached(self) -> bool:
        """True when the view declares an SLO and its newest value is older than it (or it
        holds no value at all)."""
        if self.slo is None:
            return False
        return self.newest_age is None or self.newest_age > self.slo

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "slo_seconds": _seconds(self.slo), "last_event": wire.plain(self.last_event),
            "newest_age_seconds": _seconds(self.newest_age), "breached": self.breached,
            "served_ages": self.served_ages.to_dict(), "served_stale": self.served_stale,
            "push_to_visible": self.push_to_visible.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ViewFreshness:
        return cls(
            data["view"], _duration(data.get("slo_seconds")), _time(data.get("last_event")),
            _duration(data.get("newest_age_seconds")), AgeSummary.from_dict(data["served_ages"]),
            int(data.get("served_stale", 0)), AgeSummary.from_dict(data["push_to_visible"]),
        )


@dataclass(frozen=True)
class FreshnessReport:
    """Every feature view's freshness at ``now``."""

    now: datetime
    views: tuple[ViewFreshness, ...]

    @property
    def breaches(self) -> list[ViewFreshness]:
        """The views whose newest value is older than their SLO."""
        return [view for view in self.views if view.breached]

    @property
    def ok(self) -> bool:
        """True when no view breaks its SLO."""
        return not self.breaches

    def __getitem__(self, view: str) -> ViewFreshness:
        for item in self.views:
            if item.view == view:
                return item
        raise KeyError(view)

    def to_dict(self) -> dict[str, Any]:
        return {"now": wire.plain(self.now), "ok": self.ok, "views": [view.to_dict() for view in self.views]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FreshnessReport:
        now = _time(data["now"])
        assert now is not None
        return cls(now, tuple(ViewFreshness.from_dict(view) for view in data["views"]))


@dataclass(frozen=True)
class Difference:
    """One logged row whose served value differs from what a training set says for the
    same entity at the same moment, and why when that is known."""

    request_id: int
    request_time: datetime
    keys: Mapping[str, Any]
    served: Any
    training: Any
    served_status: str
    #: ``late_event``, ``definition_changed`` or ``unexplained``.
    reason: str
    #: The reason in words (which event, which versions).
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id, "request_time": wire.plain(self.request_time), "keys": wire.plain(self.keys),
            "served": wire.plain(self.served), "training": wire.plain(self.training),
            "served_status": self.served_status, "reason": self.reason, "detail": self.detail,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Difference:
        request_time = _time(data["request_time"])
        assert request_time is not None
        return cls(
            int(data["request_id"]), request_time, dict(data["keys"]), data["served"], data["training"],
            data["served_status"], data["reason"], data["detail"],
        )


@dataclass(frozen=True)
class FeatureConsistency:
    """One feature's online/offline consistency over the replayed rows."""

    feature: str  #: ``view:feature``
    compared: int
    equal: int
    #: Different rows by reason (``late_event``, ``definition_changed``, ``unexplained``).
    reasons: Mapping[str, int]
    #: The first few differences.
    differences: tuple[Difference, ...] = ()

    @property
    def different(self) -> int:
        return self.compared - self.equal

    @property
    def consistency(self) -> float:
        """The share of compared rows equal bit for bit (1.0 when none were compared)."""
        return 1.0 if self.compared == 0 else self.equal / self.compared

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature, "compared": self.compared, "equal": self.equal, "different": self.different,
            "consistency": self.consistency, "reasons": dict(self.reasons),
            "differences": [d.to_dict() for d in self.differences],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConsistency:
        return cls(
            data["feature"], int(data["compared"]), int(data["equal"]), dict(data["reasons"]),
            tuple(Difference.from_dict(d) for d in data["differences"]),
        )


@dataclass(frozen=True)
class ConsistencyReport:
    """A serving log replayed against the offline history: for every logged row and
    feature, the served value against the training-set value at the logged request time."""

    target: str  #: the feature view or service whose log was replayed
    kind: str  #: ``feature_view`` or ``feature_service``
    since: datetime | None
    until: datetime | None
    requests: int  #: logged requests replayed
    rows: int  #: logged entity rows replayed
    features: tuple[FeatureConsistency, ...]

    @property
    def consistency(self) -> float:
        """Equal rows over compared rows, over every feature (1.0 when nothing was compared)."""
        compared = sum(f.compared for f in self.features)
        return 1.0 if compared == 0 else sum(f.equal for f in self.features) / compared

    def __getitem__(self, feature: str) -> FeatureConsistency:
        for item in self.features:
            if item.feature == feature or item.feature.split(":", 1)[-1] == feature:
                return item
        raise KeyError(feature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "kind": self.kind, "since": wire.plain(self.since), "until": wire.plain(self.until),
            "requests": self.requests, "rows": self.rows, "consistency": self.consistency,
            "features": [f.to_dict() for f in self.features],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConsistencyReport:
        return cls(
            data["target"], data["kind"], _time(data.get("since")), _time(data.get("until")), int(data["requests"]),
            int(data["rows"]), tuple(FeatureConsistency.from_dict(f) for f in data["features"]),
        )
