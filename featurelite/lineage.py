"""Lineage: how a store's definitions and the models trained from it depend on each other.

A directed graph, edges pointing downstream (from what is read to what reads it):

- entity -> feature view (the view is keyed by it)
- featurizer -> feature view (a write-time featurizer computes some of its features) or
  on-demand view (its featurizer computes its features)
- feature view -> on-demand view (a source the featurizer reads)
- feature view / on-demand view -> feature service (the service reads its features, at the
  version it pins: the edge's ``version``)
- feature service -> model (a model recorded with ``Store.record_model`` was trained on a
  training set of that service, at the service version the edge names; a model trained on
  loose references links to each view it read instead)

``Store.lineage()`` returns the whole graph; ``Store.lineage(name)`` the part of it
upstream and downstream of ``name``. Pure: built from definitions and model records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .definitions import Entity, FeatureService, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, InputError
from .references import parse_references

__all__ = ["NODE_KINDS", "Lineage", "LineageEdge", "LineageNode", "ModelRecord", "build_lineage", "check_model_name"]

#: Node kinds, upstream first (the order the graph's columns are drawn in).
NODE_KINDS = ("entity", "featurizer", "feature_view", "on_demand_feature_view", "feature_service", "model")


@dataclass(frozen=True)
class ModelRecord:
    """A model trained on a training set of this store, as ``Store.record_model``
    recorded it (``featurelite.mlflow.log_model`` records the models it logs when given
    an open store): its name, the record's number among models of that name (1, 2, ...),
    where it lives (``uri``, for example an MLflow model URI), and what it was trained on:
    the service and service version (None for loose references), every definition version
    read (``pins``), the features (pinned references) and the training set's digest."""

    name: str
    number: int
    uri: str | None
    service: str | None
    service_version: str | None
    pins: Mapping[str, str]
    features: tuple[str, ...]
    manifest_digest: str
    recorded_at: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.name}#{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "number": self.number, "uri": self.uri, "service": self.service,
            "service_version": self.service_version, "pins": dict(self.pins), "features": list(self.features),
            "manifest_digest": self.manifest_digest, "recorded_at": self.recorded_at,
            "description": self.description, "tags": dict(self.tags),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRecord:
        return cls(
            str(data["name"]), int(data["number"]), data.get("uri"), data.get("service"),
            data.get("service_version"), {str(k): str(v) for k, v in (data.get("pins") or {}).items()},
            tuple(str(f) for f in data.get("features") or ()), str(data["manifest_digest"]),
            str(data["recorded_at"]), str(data.get("description") or ""),
            {str(k): str(v) for k, v in (data.get("tags") or {}).items()},
        )


@dataclass(frozen=True)
class LineageNode:
    """A definition (or model record) in the graph. ``id`` is ``kind:name`` (a model's
    name is ``name#number``); ``version`` is the definition's current version (a model's:
    its record number)."""

    kind: str
    name: str
    version: str | None = None
    description: str = ""

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "version": self.version,
                "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineageNode:
        return cls(str(data["kind"]), str(data["name"]), data.get("version"), str(data.get("description") or ""))


@dataclass(frozen=True)
class LineageEdge:
    """``source`` (a node id) is read by ``target``; ``relation`` says how ("keys",
    "computes", "source", "serves", "trained_on"); ``version``, where the reader pins one,
    is the version of ``source`` it reads (a service's pin, a model's service version)."""

    source: str
    target: str
    relation: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "relation": self.relation, "version": self.version}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineageEdge:
        return cls(str(data["source"]), str(data["target"]), str(data["relation"]), data.get("version"))


@dataclass(frozen=True)
class Lineage:
    """A lineage graph: ``nodes`` (sorted by kind, upstream first, then name) and
    ``edges``; ``root`` is the node id asked about (None for the whole store)."""

    root: str | None
    nodes: tuple[LineageNode, ...]
    edges: tuple[LineageEdge, ...]

    def node(self, node_id: str) -> LineageNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def upstream(self, node_id: str | None = None) -> list[LineageNode]:
        """Every node ``node_id`` (default: the root) reads from, directly or not."""
        return self._walk(node_id, down=False)

    def downstream(self, node_id: str | None = None) -> list[LineageNode]:
        """Every node that reads ``node_id`` (default: the root), directly or not."""
        return self._walk(node_id, down=True)

    def _walk(self, node_id: str | None, *, down: bool) -> list[LineageNode]:
        start = node_id or self.root
        if start is None:
            raise ValueError("give a node id: this is the whole store's lineage, with no root")
        seen: set[str] = set()
        frontier = [start]
        while frontier:
            current = frontier.pop()
            for edge in self.edges:
                here, there = (edge.source, edge.target) if down else (edge.target, edge.source)
                if here == current and there not in seen:
                    seen.add(there)
                    frontier.append(there)
        return [n for n in self.nodes if n.id in seen]

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "nodes": [n.to_dict() for n in self.nodes],
                "edges": [e.to_dict() for e in self.edges]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        return cls(data.get("root"), tuple(LineageNode.from_dict(n) for n in data["nodes"]),
                   tuple(LineageEdge.from_dict(e) for e in data["edges"]))


def check_model_name(name: str) -> str:
    """A model's name as records keep it: non-blank text without '#' (which separates a
    record's number in lineage: ``name#1``); else an InputError."""
    if not isinstance(name, str) or not name.strip() or "#" in name:
        raise InputError(f"the model's name must be non-blank text without '#' (which separates a record's "
                         f"number in lineage: name#1), not {name!r}")
    return name


def build_lineage(
    entities: Iterable[Entity], views: Iterable[FeatureView], odfvs: Iterable[OnDemandFeatureView],
    services: Iterable[FeatureService], models: Sequence[ModelRecord], *, root: str | None = None,
) -> Lineage:
    """The graph of the given definitions and model records; with ``root`` (a node id),
    only the nodes upstream and downstream of it (and the edges among those)."""
    nodes: dict[str, LineageNode] = {}
    edges: list[LineageEdge] = []

    def add(node: LineageNode) -> str:
        nodes.setdefault(node.id, node)
        return node.id

    for entity in entities:
        add(LineageNode("entity", entity.name, None, entity.description))
    for view in views:
        view_id = add(LineageNode("feature_view", view.name, view.version, view.description))
        for entity_name in view.entities:
            edges.append(LineageEdge(f"entity:{entity_name}", view_id, "keys"))
        for featurizer in view.featurizers.values():
            source = add(LineageNode("featurizer", featurizer.name, featurizer.version))
            edges.append(LineageEdge(source, view_id, "computes", featurizer.version))
    for odfv in odfvs:
        odfv_id = add(LineageNode("on_demand_feature_view", odfv.name, odfv.version, odfv.description))
        for source_view in odfv.view_sources:
            edges.append(LineageEdge(f"feature_view:{source_view}", odfv_id, "source"))
        for featurizer in odfv.featurizers.values():
            source = add(LineageNode("featurizer", featurizer.name, featurizer.version))
            edges.append(LineageEdge(source, odfv_id, "computes", featurizer.version))
    kind_of = {n.name: n.kind for n in nodes.values() if n.kind in ("feature_view", "on_demand_feature_view")}
    for service in services:
        service_id = add(LineageNode("feature_service", service.name, service.version, service.description))
        read = sorted({r.view for r in parse_references(list(service.features))})
        for name in read:
            kind = kind_of.get(name, "feature_view")
            edges.append(LineageEdge(f"{kind}:{name}", service_id, "serves", service.pins.get(name)))
    for model in models:
        model_id = add(LineageNode("model", model.id, str(model.number), model.description))
        if model.service is not None:
            edges.append(LineageEdge(f"feature_service:{model.service}", model_id, "trained_on",
                                     model.service_version))
        else:
            try:
                read = sorted({r.view for r in parse_references(list(model.features))})
            except FeatureliteError:  # a record Store.record_model would refuse now: no edges, never a failure
                read = []
            for name in read:
                kind = kind_of.get(name, "feature_view")
                edges.append(LineageEdge(f"{kind}:{name}", model_id, "trained_on", model.pins.get(name)))
    # An edge to a definition no longer registered (a model's deleted service) keeps its
    # end as a node, so the graph shows what the model was trained on.
    for edge in edges:
        for end in (edge.source, edge.target):
            if end not in nodes:
                kind, _, name = end.partition(":")
                nodes[end] = LineageNode(kind, name)
    unique = list(dict.fromkeys(edges))
    if root is not None:
        whole = Lineage(root, tuple(nodes.values()), tuple(unique))
        keep = {root} | {n.id for n in whole.upstream(root)} | {n.id for n in whole.downstream(root)}
        nodes = {k: v for k, v in nodes.items() if k in keep}
        unique = [e for e in unique if e.source in keep and e.target in keep]
    order = {kind: i for i, kind in enumerate(NODE_KINDS)}
    ordered = sorted(nodes.values(), key=lambda n: (order.get(n.kind, len(order)), *_name_key(n)))
    return Lineage(root, tuple(ordered), tuple(unique))


def _name_key(node: LineageNode) -> tuple[str, int]:
    """A node's place among its kind: by name, a model's records by number (m#2 before m#10)."""
    if node.kind == "model":
        base, _, number = node.name.rpartition("#")
        if number.isdigit():
            return base, int(number)
    return node.name, 0
