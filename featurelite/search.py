"""Search over a store's definitions: entities, feature views, their features (stored,
derived and windowed), on-demand views and their features, feature services and
featurizers, by name, description, tags and owner.

A simple ranked match, in memory (a store holds hundreds of definitions, not millions):
DuckDB's full-text extension is not bundled with the DuckDB wheel and cannot be installed
on a machine without internet, so it is not used. Every word of the query must match the
item somewhere; a word scores most in the name (whole name, then its start, then inside
it), less in the description, tags and owner. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView

__all__ = ["KINDS", "SearchHit", "search"]

#: What a hit can be, in the order equal scores are listed.
KINDS = ("feature", "feature_view", "on_demand_feature_view", "feature_service", "entity", "featurizer")
_NAME_EXACT, _NAME_START, _NAME_INSIDE, _DESCRIPTION, _TAGS, _OWNER = 100, 60, 40, 15, 10, 5


@dataclass(frozen=True)
class SearchHit:
    """One definition a search found. ``name`` is ``view:feature`` for a feature."""

    kind: str
    name: str
    description: str = ""
    owner: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    #: How well it matched (higher first); which parts matched.
    score: int = 0
    matched: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "name": self.name, "description": self.description, "owner": self.owner,
                "tags": dict(self.tags), "score": self.score, "matched": list(self.matched)}


@dataclass(frozen=True)
class _Item:
    kind: str
    name: str
    short: str  # the name words match against (a feature's own name)
    description: str
    owner: str
    tags: Mapping[str, str]


def _items(
    entities: Iterable[Entity], views: Iterable[FeatureView], odfvs: Iterable[OnDemandFeatureView],
    services: Iterable[FeatureService],
) -> list[_Item]:
    items: list[_Item] = []
    featurizers: dict[str, str] = {}
    for entity in entities:
        items.append(_Item("entity", entity.name, entity.name, entity.description, entity.owner, entity.tags))
    for view in views:
        items.append(_Item("feature_view", view.name, view.name, view.description, view.owner, view.tags))
        for feature in [*view.schema, *view.aggregation_schema]:
            meta = view.fields.get(feature)
            # A feature has its view's tags and owner, its own on top.
            tags = {**view.tags, **(meta.tags if meta else {})}
            owner = meta.owner if meta and meta.owner else view.owner
            items.append(_Item("feature", f"{view.name}:{feature}", feature, meta.description if meta else "",
                               owner, tags))
        for featurizer in view.featurizers.values():
            featurizers.setdefault(featurizer.name, view.name)
    for odfv in odfvs:
        items.append(_Item("on_demand_feature_view", odfv.name, odfv.name, odfv.description, odfv.owner, odfv.tags))
        for feature in odfv.features:
            items.append(_Item("feature", f"{odfv.name}:{feature}", feature, "", odfv.owner, odfv.tags))
        for featurizer in odfv.featurizers.values():
            featurizers.setdefault(featurizer.name, odfv.name)
    for service in services:
        items.append(_Item("feature_service", service.name, service.name, service.description, service.owner,
                           service.tags))
    for name, used_by in featurizers.items():
        items.append(_Item("featurizer", name, name, f"used by {used_by}", "", {}))
    return items


def _score(item: _Item, words: list[str]) -> tuple[int, tuple[str, ...]]:
    """The item's score for ``words`` (0: a word matched nothing) and the parts matched."""
    total, matched = 0, set()
    short, full = item.short.lower(), item.name.lower()
    description, owner = item.description.lower(), item.owner.lower()
    tags = " ".join(f"{k} {v}" for k, v in item.tags.items()).lower()
    for word in words:
        best = 0
        if word in (short, full):
            best, part = _NAME_EXACT, "name"
        elif short.startswith(word) or full.startswith(word):
            best, part = _NAME_START, "name"
        elif word in full:
            best, part = _NAME_INSIDE, "name"
        for points, where, text in ((_DESCRIPTION, "description", description), (_TAGS, "tags", tags),
                                    (_OWNER, "owner", owner)):
            if word in text:
                matched.add(where)
                best = max(best, points)
        if best == 0:
            return 0, ()
        if best >= _NAME_INSIDE:
            matched.add(part)
        total += best
    return total, tuple(sorted(matched))


def search(
    text: str, entities: Iterable[Entity], views: Iterable[FeatureView], odfvs: Iterable[OnDemandFeatureView],
    services: Iterable[FeatureService], *, tags: Mapping[str, str] | None = None,
    kinds: Iterable[str] | None = None, limit: int = 50,
) -> list[SearchHit]:
    """The definitions matching every word of ``text`` (any, when it is blank) and having
    every tag in ``tags``, of the ``kinds`` given (default: all), best first."""
    words = text.lower().split()
    wanted = set(KINDS if kinds is None else kinds)
    found: list[SearchHit] = []
    for item in _items(entities, views, odfvs, services):
        if item.kind not in wanted:
            continue
        if tags and any(item.tags.get(k) != v for k, v in tags.items()):
            continue
        score, matched = _score(item, words) if words else (1, ())
        if score:
            found.append(SearchHit(item.kind, item.name, item.description, item.owner, dict(item.tags), score,
                                   matched))
    found.sort(key=lambda hit: (-hit.score, KINDS.index(hit.kind), hit.name))
    return found[:limit]
