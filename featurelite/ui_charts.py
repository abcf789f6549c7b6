"""The web UI's charts: inline SVG, drawn on the server (no JavaScript, no chart library).

Each function takes the statistics or lineage data classes and returns one ``<svg>``
element as text: a feature's histogram (or its most frequent values), a view's rows per
period with the staleness a read would have seen, a feature's per-period mean and median
(drift), and the lineage graph. Every piece of text that reaches the SVG (names, values,
versions) is escaped here; tooltips are SVG ``<title>`` elements, which browsers show
without any script. The output depends only on the input: the same data draws the same
bytes (numbers are written with fixed precision, nodes are ordered by rule, not by
chance). Pure: no I/O, no featurelite state.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .lineage import NODE_KINDS, Lineage, LineageNode
from .statistics import Histogram, PeriodStats, TimelinePoint, TopValue

__all__ = ["KIND_LABELS", "drift", "format_number", "histogram", "lineage_graph", "placeholder", "timeline",
           "top_values"]

#: The column headings of the lineage graph, by node kind.
KIND_LABELS: Mapping[str, str] = {
    "entity": "entities", "featurizer": "featurizers", "feature_view": "feature views",
    "on_demand_feature_view": "on-demand views", "feature_service": "feature services", "model": "models",
}

_PAD_LEFT, _PAD_RIGHT, _PAD_TOP, _PAD_BOTTOM = 44, 12, 14, 22


def _e(text: object) -> str:
    """Text escaped for SVG content and attribute values."""
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate, with one decimal (fixed, so output is deterministic)."""
    text = f"{value:.1f}"
    return "0.0" if text == "-0.0" else text


def format_number(value: float | int | str | None) -> str:
    """A number for people: whole numbers with thousands separators, others with four
    significant digits; NaN and infinities by name, None as an empty string."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if 1e-3 <= abs(value) < 1e6:
        return f"{value:.4g}"
    return f"{value:.3e}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _svg(classes: str, width: int, height: int, label: str, body: Iterable[str], *,
         attrs: Mapping[str, str] | None = None) -> str:
    extra = "".join(f' {key}="{_e(value)}"' for key, value in (attrs or {}).items())
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{_e(classes)}"{extra} viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{_e(label)}">'
        f"<title>{_e(label)}</title>{''.join(body)}</svg>"
    )


def placeholder(classes: str, text: str, *, width: int = 320, height: int = 60,
                attrs: Mapping[str, str] | None = None) -> str:
    """An empty chart that says why it is empty."""
    body = [f'<text class="empty" x="{width / 2:.1f}" y="{height / 2:.1f}" text-anchor="middle">{_e(text)}</text>']
    return _svg(classes, width, height, text, body, attrs=attrs)


def _axes(width: int, height: int, top_label: str, left_label: str, right_label: str) -> list[str]:
    """The baseline, the value axis and their labels."""
    bottom = height - _PAD_BOTTOM
    return [
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{bottom}" x2="{width - _PAD_RIGHT}" y2="{bottom}"/>',
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{_PAD_TOP}" x2="{_PAD_LEFT}" y2="{bottom}"/>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 4}" text-anchor="end">{_e(top_label)}</text>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{bottom}" text-anchor="end">0</text>',
        f'<text class="tick" x="{_PAD_LEFT}" y="{height - 6}" text-anchor="start">{_e(left_label)}</text>',
        f'<text class="tick" x="{width - _PAD_RIGHT}" y="{height - 6}" text-anchor="end">{_e(right_label)}</text>',
    ]


def histogram(data: Histogram | None, *, feature: str, width: int = 320, height: int = 130) -> str:
    """A numeric feature's histogram: one ``<rect class="bar">`` per bin, its range and
    count in a tooltip."""
    attrs = {"data-feature": feature}
    if data is None or not data.counts:
        return placeholder("chart histogram", f"{feature}: no finite values", width=width, attrs=attrs)
    counts, edges = data.counts, data.edges
    peak = max(counts) or 1
    plot_w, plot_h = width - _PAD_LEFT - _PAD_RIGHT, height - _PAD_TOP - _PAD_BOTTOM
    step = plot_w / len(counts)
    bottom = height - _PAD_BOTTOM
    body = _axes(width, height, format_number(peak), format_number(edges[0]), format_number(edges[-1]))
    last = len(counts) - 1
    for i, count in enumerate(counts):
        h = plot_h * count / peak
        closing = "]" if i == last else ")"
        tip = f"[{format_number(edges[i])}, {format_number(edges[i + 1])}{closing}: {format_number(count)}"
        body.append(
            f'<rect class="bar" x="{_n(_PAD_LEFT + i * step + 0.5)}" y="{_n(bottom - h)}" '
            f'width="{_n(max(step - 1.0, 0.5))}" height="{_n(h)}"><title>{_e(tip)}</title></rect>'
        )
    label = f"histogram of {feature}: {len(counts)} bins from {format_number(edges[0])} to {format_number(edges[-1])}"
    return _svg("chart histogram", width, height, label, body, attrs=attrs)


def top_values(values: Sequence[TopValue], *, feature: str, width: int = 320) -> str:
    """A text or boolean feature's most frequent values as horizontal bars (``<rect
    class="bar">``), each with its value and count."""
    attrs = {"data-feature": feature}
    if not values:
        return placeholder("chart histogram", f"{feature}: no values", width=width, attrs=attrs)
    row, label_w, count_w = 18, 110, 64
    height = len(values) * row + 8
    peak = max(v.count for v in values) or 1
    bar_w = width - label_w - count_w - 8
    body = []
    for i, item in enumerate(values):
        y = 4 + i * row
        w = max(bar_w * item.count / peak, 0.5)
        tip = f"{item.value}: {format_number(item.count)}"
        body.append(
            f'<text class="tick" x="{label_w - 4}" y="{y + 12}" text-anchor="end">{_e(_short(item.value, 18))}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{_n(w)}" height="{row - 5}">'
            f"<title>{_e(tip)}</title></rect>"
            f'<text class="tick" x="{_n(label_w + w + 4)}" y="{y + 12}">{_e(format_number(item.count))}</text>'
        )
    return _svg("chart histogram", width, height, f"most frequent values of {feature}", body, attrs=attrs)


def _duration(seconds: float) -> str:
    """Seconds for people: 45 s, 12 min, 3.5 h, 2.0 d."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _line(points: Sequence[tuple[float, float] | None]) -> str:
    """Path data through ``points``, a gap where one is None."""
    parts, pen_down = [], False
    for point in points:
        if point is None:
            pen_down = False
            continue
        parts.append(f"{'L' if pen_down else 'M'}{_n(point[0])} {_n(point[1])}")
        pen_down = True
    return " ".join(parts)


def timeline(points: Sequence[TimelinePoint], *, width: int = 640, height: int = 170) -> str:
    """Rows per period as bars, and the staleness a read at each period's end would have
    seen (the age of the newest event then) as a line on its own scale, right."""
    if not points:
        return placeholder("chart timeline", "no history rows in this range", width=width)
    plot_w, plot_h = width - _PAD_LEFT - 56, height - _PAD_TOP - _PAD_BOTTOM
    bottom = height - _PAD_BOTTOM
    step = plot_w / len(points)
    peak = max(p.rows for p in points) or 1
    stale = [p.staleness for p in points if p.staleness is not None and math.isfinite(p.staleness)]
    stale_peak = max(stale) if stale and max(stale) > 0 else 1.0
    body = _axes(width, height, format_number(peak), _day(points[0].start), _day(points[-1].start))
    body.append(f'<text class="tick staleness" x="{width - 52}" y="{_PAD_TOP + 4}">{_e(_duration(stale_peak))}</text>')
    line: list[tuple[float, float] | None] = []
    for i, point in enumerate(points):
        h = plot_h * point.rows / peak
        newest = "none" if point.newest_event is None else point.newest_event.isoformat()
        age = "" if point.staleness is None else f", staleness {_duration(point.staleness)}"
        tip = f"{_day(point.start)}: {format_number(point.rows)} rows, newest event {newest}{age}"
        body.append(
            f'<rect class="bar" x="{_n(_PAD_LEFT + i * step + 0.5)}" y="{_n(bottom - h)}" '
            f'width="{_n(max(step - 1.0, 0.5))}" height="{_n(h)}"><title>{_e(tip)}</title></rect>'
        )
        if point.staleness is None or not math.isfinite(point.staleness):
            line.append(None)
        else:
            line.append((_PAD_LEFT + (i + 0.5) * step, bottom - plot_h * min(point.staleness, stale_peak) / stale_peak))
    if any(p is not None for p in line):
        body.append(f'<path class="line staleness" d="{_line(line)}"><title>staleness at each period\'s end</title>'
                    "</path>")
    label = f"rows per period and staleness, {_day(points[0].start)} to {_day(points[-1].start)}"
    return _svg("chart timeline", width, height, label, body)


def _fraction(value: float, low: float, high: float) -> float:
    """Where ``value`` lies between ``low`` and ``high``, from 0 to 1 (the middle when they
    are equal), computed on halves so that no difference of doubles overflows."""
    if not high > low:
        return 0.5
    return min(max((value / 2 - low / 2) / (high / 2 - low / 2), 0.0), 1.0)


@dataclass(frozen=True)
class _Series:
    name: str
    values: tuple[float | None, ...]


def drift(periods: Sequence[PeriodStats], *, feature: str, width: int = 300, height: int = 120) -> str:
    """A feature's mean and median per period (lines ``mean`` and ``p50``); for a feature
    without numbers (text, booleans), its null rate per period."""
    attrs = {"data-feature": feature}
    if not periods:
        return placeholder("chart drift", f"{feature}: no periods", width=width, attrs=attrs)
    series = [_Series("mean", tuple(p.mean for p in periods)), _Series("p50", tuple(p.p50 for p in periods))]
    if all(v is None for s in series for v in s.values):
        series = [_Series("null_rate", tuple(p.null_rate for p in periods))]
    finite = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not finite:
        return placeholder("chart drift", f"{feature}: no finite values", width=width, attrs=attrs)
    low, high = min(finite), max(finite)
    if series[0].name == "null_rate":
        low, high = 0.0, max(high, 1e-9) if high > 0 else 1.0
    plot_w, plot_h = width - _PAD_LEFT - _PAD_RIGHT, height - _PAD_TOP - _PAD_BOTTOM
    bottom = height - _PAD_BOTTOM
    step = plot_w / len(periods)
    body = [
        f'<line class="axis" x1="{_PAD_LEFT}" y1="{bottom}" x2="{width - _PAD_RIGHT}" y2="{bottom}"/>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{_PAD_TOP + 4}" text-anchor="end">{_e(format_number(high))}</text>',
        f'<text class="tick" x="{_PAD_LEFT - 4}" y="{bottom}" text-anchor="end">{_e(format_number(low))}</text>',
        f'<text class="tick" x="{_PAD_LEFT}" y="{height - 6}">{_e(_day(periods[0].start))}</text>',
        f'<text class="tick" x="{width - _PAD_RIGHT}" y="{height - 6}" text-anchor="end">'
        f"{_e(_day(periods[-1].start))}</text>",
    ]
    for s in series:
        points: list[tuple[float, float] | None] = []
        for i, value in enumerate(s.values):
            if value is None or not math.isfinite(value):
                points.append(None)
                continue
            points.append((_PAD_LEFT + (i + 0.5) * step, bottom - plot_h * _fraction(value, low, high)))
        body.append(f'<path class="line {s.name}" d="{_line(points)}"><title>{_e(s.name)} per period</title></path>')
        for i, point in enumerate(points):
            if point is not None:
                tip = f"{_day(periods[i].start)}: {s.name} {format_number(s.values[i])}, {periods[i].count:,} rows"
                body.append(f'<circle class="dot {s.name}" cx="{_n(point[0])}" cy="{_n(point[1])}" r="2">'
                            f"<title>{_e(tip)}</title></circle>")
    names = " and ".join(s.name for s in series)
    return _svg("chart drift", width, height, f"{feature}: {names} per period", body, attrs=attrs)


# -- the lineage graph ------------------------------------------------------------------

_NODE_W, _NODE_H, _COL_GAP, _ROW_GAP, _HEAD = 150, 34, 84, 14, 26
#: An edge that skips a column passes it in a lane of its own, this high.
_LANE_H, _LANE_GAP = 10, 6


@dataclass(frozen=True)
class _Slot:
    """A place in a column: a node, or a lane an edge passes a column through."""

    id: str
    node: LineageNode | None
    name: str

    @property
    def height(self) -> float:
        return _NODE_H if self.node is not None else _LANE_H

    @property
    def gap(self) -> float:
        return _ROW_GAP if self.node is not None else _LANE_GAP


def _layout(lineage: Lineage) -> tuple[list[list[_Slot]], dict[tuple[str, str, str], list[str]]]:
    """The nodes in columns by kind (``NODE_KINDS`` order, empty kinds left out), with a
    lane in every column an edge passes without stopping, and each edge's chain of slots.
    Columns are ordered to keep edges short and uncrossed: a few sweeps that place each
    slot at the mean rank of its neighbours in the column before (or after), ties by
    name, so the same graph always gets the same picture."""
    order = {kind: i for i, kind in enumerate(NODE_KINDS)}
    kinds = sorted({order.get(n.kind, len(order)) for n in lineage.nodes})
    column_of = {n.id: kinds.index(order.get(n.kind, len(order))) for n in lineage.nodes}
    columns: list[list[_Slot]] = [[] for _ in kinds]
    for node in lineage.nodes:
        columns[column_of[node.id]].append(_Slot(node.id, node, node.name))
    chains: dict[tuple[str, str, str], list[str]] = {}
    for edge in lineage.edges:
        if edge.source not in column_of or edge.target not in column_of:
            continue
        first, last = column_of[edge.source], column_of[edge.target]
        chain = [edge.source]
        for c in range(first + 1, last):
            lane = f"{edge.source}>{edge.target}@{c}"
            columns[c].append(_Slot(lane, None, f"~{edge.source}>{edge.target}"))
            chain.append(lane)
        chains[(edge.source, edge.target, edge.relation)] = [*chain, edge.target]
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    for chain in chains.values():
        for a, b in itertools.pairwise(chain):
            before.setdefault(b, []).append(a)
            after.setdefault(a, []).append(b)
    columns = [sorted(column, key=lambda s: (s.node is None, s.name)) for column in columns]
    rank: dict[str, float] = {}

    def ranks(column: list[_Slot]) -> None:
        for i, slot in enumerate(column):
            rank[slot.id] = (i + 0.5) / len(column)

    def sweep(indexes: Iterable[int], neighbours: Mapping[str, list[str]]) -> None:
        for c in indexes:
            column = columns[c]

            def key(slot: _Slot) -> tuple[float, float, bool, str]:
                near = [rank[n] for n in neighbours.get(slot.id, ()) if n in rank]
                mean = sum(near) / len(near) if near else rank.get(slot.id, 2.0)
                return (mean, rank.get(slot.id, 2.0), slot.node is None, slot.name)

            columns[c] = sorted(column, key=key)
            ranks(columns[c])

    for column in columns:
        ranks(column)
    every = range(len(columns))
    sweep(every[1:], before)
    sweep(reversed(every[:-1]), after)
    sweep(every[1:], before)
    return columns, chains


def lineage_graph(lineage: Lineage, *, href: Callable[[LineageNode], str | None] | None = None) -> str:
    """The lineage graph: nodes (``<g class="node" data-id="kind:name">``: a box and its
    name, a link to its page where ``href`` gives one) in columns by kind, upstream left,
    and curved edges (``<path class="edge" data-source data-target>``) labelled with the
    version the reader pins, where it pins one. An edge that skips a column passes it in
    a lane of its own, never through a node."""
    attrs = {"id": "lineage-graph"}
    if not lineage.nodes:
        return placeholder("chart lineage", "nothing registered yet", attrs=attrs)
    columns, chains = _layout(lineage)
    heights = [sum(s.height + s.gap for s in column) - (column[-1].gap if column else 0) for column in columns]
    tallest = max(heights)
    width = len(columns) * _NODE_W + (len(columns) - 1) * _COL_GAP + 16
    height = int(_HEAD + tallest + 10)
    centre: dict[str, tuple[float, float]] = {}  # slot id -> (left x, centre y)
    body = [
        '<defs><marker id="lineage-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path class="arrow" d="M0 0 L8 4 L0 8 z"/></marker></defs>'
    ]
    nodes: list[str] = []
    for c, column in enumerate(columns):
        x = 8 + c * (_NODE_W + _COL_GAP)
        y = _HEAD + (tallest - heights[c]) / 2
        kind = next((s.node.kind for s in column if s.node is not None), "")
        body.append(f'<text class="column" x="{_n(x + _NODE_W / 2)}" y="16" text-anchor="middle">'
                    f"{_e(KIND_LABELS.get(kind, kind))}</text>")
        for slot in column:
            centre[slot.id] = (x, y + slot.height / 2)
            node = slot.node
            if node is not None:
                classes = f"node kind-{node.kind}" + (" root" if node.id == lineage.root else "")
                tip = f"{node.kind} {node.name}" + (f" (version {node.version})" if node.version else "")
                if node.description:
                    tip += f": {node.description}"
                box = (f'<rect class="box" x="{_n(x)}" y="{_n(y)}" width="{_NODE_W}" height="{_NODE_H}" rx="5"/>'
                       f'<text class="label" x="{_n(x + 8)}" y="{_n(y + _NODE_H / 2 + 4)}">'
                       f"{_e(_short(node.name, 21))}</text>")
                link = href(node) if href is not None else None
                if link is not None:
                    box = f'<a href="{_e(link)}">{box}</a>'
                nodes.append(f'<g class="{_e(classes)}" data-id="{_e(node.id)}"><title>{_e(tip)}</title>{box}</g>')
            y += slot.height + slot.gap
    labels: list[str] = []
    for edge in lineage.edges:
        chain = chains.get((edge.source, edge.target, edge.relation))
        if chain is None:
            continue
        points = [centre[slot] for slot in chain]
        ex, ey = points[0][0] + _NODE_W, points[0][1]  # where the pen is: leaving the source's right side
        d = [f"M{_n(ex)} {_n(ey)}"]
        label_at = (ex, ey)
        for i, (left, mid) in enumerate(points[1:], start=1):
            if left <= ex:  # a reader in the same column as what it reads (never drawn by kind): loop right
                bend = _COL_GAP / 2
                d.append(f"C{_n(ex + bend)} {_n(ey)}, {_n(left + _NODE_W + bend)} {_n(mid)}, "
                         f"{_n(left + _NODE_W)} {_n(mid)}")
                label_at = (ex + bend * 0.75, (ey + mid) / 2)
                ex, ey = left + _NODE_W, mid
                continue
            dx = (left - ex) / 2
            d.append(f"C{_n(ex + dx)} {_n(ey)}, {_n(left - dx)} {_n(mid)}, {_n(left)} {_n(mid)}")
            label_at = ((ex + left) / 2, (ey + mid) / 2)
            ex, ey = left, mid
            if i < len(points) - 1:  # a lane: straight through the column
                ex += _NODE_W
                d.append(f"L{_n(ex)} {_n(ey)}")
        tip = f"{edge.source} {edge.relation} {edge.target}" + (f" at version {edge.version}" if edge.version else "")
        body.append(
            f'<path class="edge relation-{_e(edge.relation)}" data-source="{_e(edge.source)}" '
            f'data-target="{_e(edge.target)}" data-relation="{_e(edge.relation)}" d="{" ".join(d)}" '
            f'marker-end="url(#lineage-arrow)"><title>{_e(tip)}</title></path>'
        )
        if edge.version:
            labels.append(
                f'<text class="edge-label" x="{_n(label_at[0])}" y="{_n(label_at[1] - 3)}" text-anchor="middle">'
                f"<title>{_e(tip)}</title>@{_e(_short(edge.version, 9))}</text>"
            )
    label = f"lineage of {lineage.root}" if lineage.root else "lineage of the whole store"
    return _svg("chart lineage", width, height, label, [*body, *nodes, *labels], attrs=attrs)
