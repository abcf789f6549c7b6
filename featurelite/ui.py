"""The web UI: a small server-rendered site over one store, for people to find features.

Pages (all under ``/ui``, GET only; the UI never changes the store):

- ``/ui/``: feature views (history and online rows, last event, freshness against the
  SLO), on-demand views, feature services, entities, models; a search form;
- ``/ui/views/NAME``: a view's features with their metadata, statistics per feature (with
  a histogram, or the most frequent values), a freshness-over-time chart, drift (mean and
  median per day or week), its versions with diffs between them, and recent rows
  (``?since=&until=`` ISO dates, ``?period=day|week``);
- ``/ui/on-demand-views/NAME``, ``/ui/entities/NAME``, ``/ui/services/NAME`` (pins against
  the versions in force, featurizer versions, models trained on it, its lineage);
- ``/ui/search?q=TEXT&tag=KEY=VALUE&kind=KIND``; ``/ui/lineage[?name=NAME]``;
- ``/ui/static/...``: the stylesheet, from the package.

Charts are inline SVG drawn on the server (:mod:`featurelite.ui_charts`): nothing needs
JavaScript, nothing is fetched from elsewhere. Templates are Jinja2 with autoescaping on
(:data:`TEMPLATES`), compiled once per process. Unknown names answer an HTML 404 page,
bad parameters a 400, anything else a 500 page without a traceback (logged).

With a token, a page needs it: ``?token=T`` once (the answer sets an HttpOnly,
SameSite=Strict cookie ``featurelite_token`` for the UI's path and redirects to the same
address without the token), or ``Authorization: Bearer T``; anything else gets a 401 page
with a form to give it. The stylesheet needs none.

``featurelite ui STORE`` serves it on its own (:func:`run`, the store opened read-only);
``featurelite serve`` serves it at ``/ui`` beside the API, behind the same token
(:func:`mount`). The UI uses only the public ``Store`` API.

Needs the server extra: ``pip install 'featurelite[server]'``.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

import uvicorn
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from . import ui_charts, wire
from ._version import __version__
from .definitions import FeatureService, FeatureView, OnDemandFeatureView
from .errors import FeatureliteError, InputError, NotFoundError, ServerError, StoreLockedError
from .lineage import Lineage, LineageNode, ModelRecord
from .server_connection import listen
from .serving_lock import server_holding
from .statistics import PERIODS, FeatureStats, ViewStats
from .store import Store

__all__ = ["COOKIE", "PREFIX", "TEMPLATES", "create_ui_app", "mount", "run"]

log = logging.getLogger("featurelite.ui")

#: Where the UI lives, in ``featurelite ui`` and in ``featurelite serve``.
PREFIX = "/ui"
#: The cookie that carries the token once a browser has given it.
COOKIE = "featurelite_token"
#: The folders the templates and the stylesheet are read from (inside the package).
TEMPLATES = Path(__file__).resolve().parent / "ui_templates"
STATIC = Path(__file__).resolve().parent / "ui_static"
#: How many recent history rows a view's page shows; versions listed at most.
SAMPLE_ROWS = 20
MAX_VERSIONS = 20
#: Headers every page carries: no script may run (a last line of defence behind the
#: escaping), no page is framed, cached or told where a token-bearing URL came from.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_PAGE_KINDS = {
    "feature_view": "views", "on_demand_feature_view": "on-demand-views", "feature_service": "services",
    "entity": "entities",
}


# -- templates -----------------------------------------------------------------------------


def _age(value: timedelta | float | None) -> str:
    """A duration for people: 45 s, 12 min, 3.5 h, 2.0 d."""
    if value is None:
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        return ""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 60:
        text = f"{seconds:.0f} s"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f} min"
    elif seconds < 86400:
        text = f"{seconds / 3600:.1f} h"
    else:
        text = f"{seconds / 86400:.1f} d"
    return sign + text


def _when(value: datetime | str | None) -> str:
    """A time for people, in UTC, to the second."""
    if value is None:
        return ""
    if isinstance(value, str):  # an ISO time as stored (a model's recorded_at)
        try:
            return _when(wire.parse_time(value))
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if value.tzinfo is not None else "")


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


@cache
def environment() -> Environment:
    """The Jinja2 environment: autoescaping on for every template, templates compiled
    once (no reload checks), an undefined name an error rather than an empty string."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, auto_reload=False, undefined=StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, cache_size=-1,
    )
    env.filters.update(num=ui_charts.format_number, age=_age, when=_when, percent=_percent)
    return env


# -- what pages show -----------------------------------------------------------------------


class _BadRequest(Exception):
    """A query parameter that is not usable (a 400 page)."""


@dataclass
class Page:
    """A page to render: its template, the values it shows, the status."""

    template: str
    values: dict[str, Any] = field(default_factory=dict)
    status: int = 200


@dataclass(frozen=True)
class Links:
    """Addresses of the UI's pages, under ``base`` (``/ui``)."""

    base: str

    def page(self, kind: str, name: str) -> str | None:
        folder = _PAGE_KINDS.get(kind)
        return None if folder is None else f"{self.base}/{folder}/{quote(name, safe='')}"

    def node(self, node: LineageNode) -> str | None:
        if node.kind == "featurizer" or node.kind == "model":
            return f"{self.base}/lineage?name={quote(node.id, safe='')}"
        return self.page(node.kind, node.name)

    def hit(self, kind: str, name: str, owners: Mapping[str, str]) -> str | None:
        """The page of a search hit: a feature's is its view's (at the feature's row)."""
        if kind == "feature":
            view, _, feature = name.partition(":")
            page = self.page(owners.get(view, "feature_view"), view)
            return None if page is None else f"{page}#feature-{quote(feature, safe='')}"
        if kind == "featurizer":
            return f"{self.base}/lineage?name={quote('featurizer:' + name, safe='')}"
        return self.page(kind, name)


def _spec_lines(value: Any, indent: str = "") -> list[str]:
    """A definition's spec as indented text for a diff: one line per scalar, a multi-line
    string (a featurizer's source) as its own lines, so a diff shows what changed."""
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(item, (Mapping, list, tuple)) and item:
                lines.append(f"{indent}{key}:")
                lines.extend(_spec_lines(item, indent + "  "))
            elif isinstance(item, str) and "\n" in item:
                lines.append(f"{indent}{key}: |")
                lines.extend(f"{indent}    {line}" for line in item.splitlines())
            else:
                lines.append(f"{indent}{key}: {_scalar(item)}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            if isinstance(item, (Mapping, list, tuple)) and item:
                sub = _spec_lines(item, indent + "  ")
                lines.append(f"{indent}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{indent}- {_scalar(item)}")
    else:
        lines.append(f"{indent}{_scalar(value)}")
    return lines


def _scalar(value: Any) -> str:
    if isinstance(value, (Mapping, list, tuple)):
        return "{}" if isinstance(value, Mapping) else "[]"
    return json.dumps(wire.plain(value), ensure_ascii=False)


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "del", "hunk", "file", "same"
    text: str


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], old_name: str, new_name: str) -> list[DiffLine]:
    """A unified diff between two specs (empty when they read the same)."""
    found = []
    for line in difflib.unified_diff(_spec_lines(old), _spec_lines(new), old_name, new_name, lineterm="", n=2):
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        found.append(DiffLine(kind, line))
    return found


def _versions(store: Store, name: str, kind: str) -> list[dict[str, Any]]:
    """A definition's versions, newest first (at most :data:`MAX_VERSIONS`), each with
    the diff from the one before it."""
    items = store.list_versions(name, kind=kind)
    shown = []
    for i, item in enumerate(items):
        before = items[i - 1] if i > 0 else None
        diff = [] if before is None else _diff(before["spec"], item["spec"], f"version {before['version']}",
                                                 f"version {item['version']}")
        shown.append({**item, "diff": diff, "first": before is None})
    shown.reverse()
    return shown[:MAX_VERSIONS]


def _cell(value: Any) -> str | None:
    """A sample row's value as text (None stays None, shown as null)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return _when(value) if value.tzinfo is not None else value.isoformat(sep=" ")
    if isinstance(value, float):
        return repr(value)
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "\u2026"


def _moment(text: str | None, what: str) -> datetime | None:
    """An ISO date or time from the query (UTC unless it says otherwise)."""
    if text is None or not text.strip():
        return None
    try:
        moment = wire.parse_time(text.strip())
    except ValueError:
        raise _BadRequest(f"{what} {text!r} is not an ISO-8601 date or time, such as 2024-05-01") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _feature_kinds(view: FeatureView) -> dict[str, str]:
    """Each feature of a view: stored, derived (a write-time featurizer) or aggregate."""
    derived: set[str] = set()
    for outputs in view.featurizers:
        derived.update([outputs] if isinstance(outputs, str) else outputs)
    kinds = {name: ("derived" if name in derived else "stored") for name in view.schema}
    kinds.update({name: "aggregate" for name in view.aggregation_schema})
    return kinds


def _featurizers(definition: FeatureView | OnDemandFeatureView) -> list[dict[str, Any]]:
    shown = []
    for outputs, featurizer in definition.featurizers.items():
        names = [outputs] if isinstance(outputs, str) else list(outputs)
        shown.append({
            "name": featurizer.name, "version": featurizer.version, "outputs": names,
            "inputs": [f"{name}: {dtype}" for name, dtype in featurizer.inputs], "source": featurizer.source,
        })
    return shown


def _stat_rows(stats: Mapping[str, FeatureStats]) -> list[dict[str, Any]]:
    """Per feature: its numbers, its histogram (or most frequent values) and its drift."""
    rows = []
    for name, item in stats.items():
        if item.histogram is not None or not item.top:
            chart = ui_charts.histogram(item.histogram, feature=name)
        else:
            chart = ui_charts.top_values(item.top, feature=name)
        rows.append({
            "name": name, "stats": item, "p50": item.quantiles.get("0.5"),
            "p01": item.quantiles.get("0.01"), "p99": item.quantiles.get("0.99"),
            "chart": Markup(chart),
            "drift": Markup(ui_charts.drift(item.periods, feature=name)),
        })
    return rows


@dataclass(frozen=True)
class ViewCounts:
    """What the home page shows of a view's data: its history and online rows, and its
    newest event at or before the moment counted (the freshness report's)."""

    history_rows: int
    online_rows: int
    last_event: datetime | None


@dataclass(frozen=True)
class Counted:
    """Every view's counts, for the views (names and versions) in ``key``, taken at ``at``."""

    key: tuple[tuple[str, str], ...]
    counts: Mapping[str, ViewCounts]
    at: datetime
    taken: float  # time.monotonic() then


class Overview:
    """The home page's per-view counts, kept between requests: counting every view's
    history is a query per view (about 2 ms each for views of 200,000 rows), too slow to
    repeat for every page of a store with dozens of views. A read-only store cannot
    change while it is open, so its counts are kept until its views change (they
    cannot); a writable one's (``featurelite serve``) for ``ttl`` seconds. Ages are
    computed when the page is drawn, from the newest event, so they are never stale."""

    def __init__(self, store: Store, ttl: float = 10.0) -> None:
        self.store, self.ttl = store, ttl
        self._lock = threading.Lock()
        self._counted: Counted | None = None

    def counts(self, views: Sequence[FeatureView]) -> Counted:
        key = tuple((v.name, v.version) for v in views)
        with self._lock:
            counted = self._counted
            if counted is not None and counted.key == key and (
                    self.store.read_only or time.monotonic() - counted.taken < self.ttl):
                return counted
            report = self.store.freshness()
            newest = {item.view: item.last_event for item in report.views}
            found = {}
            for view in views:
                try:
                    described = self.store.describe(view.name)
                except NotFoundError:  # deleted since it was listed
                    continue
                found[view.name] = ViewCounts(int(described["history_rows"]), int(described["online_rows"]),
                                              newest.get(view.name))
            self._counted = Counted(key, found, report.now, time.monotonic())
            return self._counted


class _Pages:
    """The UI's pages over one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.overview = Overview(store)

    def _owners(self) -> dict[str, str]:
        owners = {v.name: "feature_view" for v in self.store.list_feature_views()}
        owners.update({v.name: "on_demand_feature_view" for v in self.store.list_on_demand_feature_views()})
        return owners

    def _models(self) -> list[ModelRecord]:
        return list(self.store.list_models())

    def _graph(self, lineage: Lineage, links: Links) -> Markup:
        # Markup: ui_charts escapes every text it draws.
        return Markup(ui_charts.lineage_graph(lineage, href=links.node))

    def home(self, request: Request, links: Links) -> Page:
        store = self.store
        views = store.list_feature_views()
        counted = self.overview.counts(views)
        now = datetime.now(timezone.utc)
        rows = []
        for view in views:
            counts = counted.counts.get(view.name)
            last = None if counts is None else counts.last_event
            age = None if last is None else now - last
            rows.append({
                "view": view, "counts": counts, "age": age, "slo": view.freshness,
                "breached": view.freshness is not None and (age is None or age > view.freshness),
            })
        current = self._current_versions()
        services = [{"service": s, "outdated": self._outdated(s, current)} for s in store.list_feature_services()]
        return Page("home.html", {
            "views": rows, "on_demand": store.list_on_demand_feature_views(), "services": services,
            "entities": store.list_entities(), "models": self._models(), "now": now, "counted_at": counted.at,
        })

    def _current_versions(self) -> dict[str, str]:
        current = {v.name: v.version for v in self.store.list_feature_views()}
        current.update({v.name: v.version for v in self.store.list_on_demand_feature_views()})
        return current

    def _outdated(self, service: FeatureService, current: Mapping[str, str] | None = None) -> list[str]:
        current = self._current_versions() if current is None else current
        return sorted(name for name, version in service.pins.items() if current.get(name) != version)

    def view(self, request: Request, links: Links) -> Page:
        store = self.store
        name = request.path_params["name"]
        view = store.get_feature_view(name)
        since = _moment(request.query_params.get("since"), "since")
        until = _moment(request.query_params.get("until"), "until")
        period = request.query_params.get("period") or None  # None: the store chooses by the history's span
        if period is not None and period not in PERIODS:
            raise _BadRequest(f"period {period!r} is not one of {', '.join(PERIODS)}")
        if since is not None and until is not None and since >= until:
            raise _BadRequest("since must be before until")
        stats: ViewStats = store.stats(name, since=since, until=until, period=period)
        kinds = _feature_kinds(view)
        features = []
        for feature, dtype in [*view.schema.items(), *view.aggregation_schema.items()]:
            meta = view.fields.get(feature)
            features.append({
                "name": feature, "dtype": dtype, "kind": kinds.get(feature, "stored"),
                "description": meta.description if meta else "", "owner": meta.owner if meta else "",
                "tags": dict(meta.tags) if meta else {},
            })
        sample = store.recent_rows(name, limit=SAMPLE_ROWS)
        rows = [[_cell(v) for v in row.values()] for row in sample.to_pylist()]
        now = datetime.now(timezone.utc)
        age = None if stats.last_event is None else now - stats.last_event
        breached = view.freshness is not None and (age is None or age > view.freshness)
        services = [s for s in store.list_feature_services() if name in s.pins]
        return Page("view.html", {
            "view": view, "features": features, "stats": stats, "stat_rows": _stat_rows(stats.features),
            "online_rows": _stat_rows(stats.online),
            "timeline": Markup(ui_charts.timeline(stats.timeline)),
            "versions": _versions(store, name, "feature_view"), "columns": sample.column_names, "rows": rows,
            "since": request.query_params.get("since", ""), "until": request.query_params.get("until", ""),
            "period": stats.period, "periods": PERIODS, "age": age, "breached": breached,
            "featurizers": _featurizers(view), "services": services,
            "on_demand": [o for o in store.list_on_demand_feature_views() if name in o.view_sources],
        })

    def on_demand_view(self, request: Request, links: Links) -> Page:
        store = self.store
        name = request.path_params["name"]
        found = {o.name: o for o in store.list_on_demand_feature_views()}
        odfv = found.get(name)
        if odfv is None:
            raise _NotFound(f"no on-demand feature view is named {name!r}")
        return Page("on_demand_view.html", {
            "odfv": odfv, "featurizers": _featurizers(odfv),
            "versions": _versions(store, name, "on_demand_feature_view"),
            "services": [s for s in store.list_feature_services() if name in s.pins],
            "graph": self._graph(store.lineage(f"on_demand_feature_view:{name}"), links),
        })

    def entity(self, request: Request, links: Links) -> Page:
        store = self.store
        name = request.path_params["name"]
        entity = store.get_entity(name)
        return Page("entity.html", {
            "entity": entity, "keys": list(zip(entity.join_keys, entity.dtypes, strict=True)),
            "views": [v for v in store.list_feature_views() if name in v.entities],
            "versions": _versions(store, name, "entity"),
        })

    def service(self, request: Request, links: Links) -> Page:
        store = self.store
        name = request.path_params["name"]
        service = store.get_feature_service(name)
        current = self._current_versions()
        kinds = self._owners()
        pins = [
            {"name": definition, "kind": kinds.get(definition), "pinned": version, "current": current.get(definition),
             "outdated": current.get(definition) != version}
            for definition, version in sorted(service.pins.items())
        ]
        lineage = store.lineage(f"feature_service:{name}")
        pinned_ids = {f"{p['kind']}:{p['name']}" for p in pins if p["kind"] is not None}
        featurizers = sorted(
            {(e.source.partition(":")[2], e.version or "", e.target.partition(":")[2])
             for e in lineage.edges if e.relation == "computes" and e.target in pinned_ids}
        )
        models = [m for m in self._models() if m.service == name]
        return Page("service.html", {
            "service": service, "pins": pins, "featurizers": featurizers, "models": models,
            "versions": _versions(store, name, "feature_service"), "graph": self._graph(lineage, links),
        })

    def search(self, request: Request, links: Links) -> Page:
        params = request.query_params
        text = params.get("q", "")
        tags: dict[str, str] = {}
        for pair in params.getlist("tag"):
            if not pair.strip():
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise _BadRequest(f"tag {pair!r} is not KEY=VALUE")
            tags[key.strip()] = value.strip()
        kinds = [k for k in params.getlist("kind") if k]
        asked = bool(text.strip() or tags or kinds)
        hits = self.store.search(text, tags=tags or None, kinds=kinds or None) if asked else []
        owners = self._owners()
        results = [{"hit": hit, "href": links.hit(hit.kind, hit.name, owners)} for hit in hits]
        return Page("search.html", {"q": text, "tags": tags, "kinds": kinds, "asked": asked, "results": results,
                                    "tag_text": " ".join(f"{k}={v}" for k, v in tags.items())})

    def lineage(self, request: Request, links: Links) -> Page:
        name = request.query_params.get("name") or None
        lineage = self.store.lineage(name)
        return Page("lineage.html", {
            "name": name, "lineage": lineage, "graph": self._graph(lineage, links),
            "nodes": {n.id: n for n in lineage.nodes},
        })


class _NotFound(Exception):
    """A name the store does not have, found out by the UI itself (a 404 page)."""


# -- the app -------------------------------------------------------------------------------


def _check_token(token: str | None) -> str | None:
    if token is None:
        return None
    if not isinstance(token, str) or not token.strip():
        raise ServerError("the token is empty; give a non-empty token, or none at all to serve without auth")
    return token


class _UI:
    """The pages with the token check, the rendering and the error pages."""

    def __init__(self, store: Store, token: str | None) -> None:
        self.pages = _Pages(store)
        self.store = store
        self.token = _check_token(token)
        self.bearer = None if self.token is None else f"Bearer {self.token}".encode()
        #: The cookie holds a value derived from the token, not the token itself.
        self.cookie = None if self.token is None else hmac.new(
            self.token.encode(), b"featurelite-ui-cookie", hashlib.sha256
        ).hexdigest()

    # -- rendering ----------------------------------------------------------------------

    def render(self, request: Request, template: str, values: Mapping[str, Any], status: int = 200,
               headers: Mapping[str, str] | None = None) -> HTMLResponse:
        base = request.scope.get("root_path", "").rstrip("/")
        # A client without the token learns nothing of the store, not even its file's name.
        anonymous = status == 401
        context = {
            "base": base, "links": Links(base), "version": "" if anonymous else __version__,
            "store_name": "" if anonymous else Path(self.store.path).name,
            "path": request.url.path, "query": [(k, v) for k, v in request.query_params.multi_items() if k != "token"],
            **values,
        }
        text = environment().get_template(template).render(context)
        return HTMLResponse(text, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})

    def error(self, request: Request, status: int, message: str,
              headers: Mapping[str, str] | None = None) -> HTMLResponse:
        """An error page (never a traceback): 400, 401, 404, 405 or 500."""
        template = {401: "401.html", 404: "404.html", 500: "500.html"}.get(status, "error.html")
        if status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="featurelite"'}
        return self.render(request, template, {"status": status, "message": message}, status, headers)

    # -- the token ----------------------------------------------------------------------

    def _cookie_path(self, request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") or "/"

    def authorize(self, request: Request) -> Response | None:
        """None when the request may see the page; else the answer it gets instead."""
        if self.token is None:
            return None
        given = request.query_params.get("token")
        if given is not None:
            if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode()):
                log.warning("GET %s -> 401 a wrong token in the query", request.url.path)
                return self.error(request, 401, "That token is not the right one.")
            url = request.url.remove_query_params("token")
            target = url.path + (f"?{url.query}" if url.query else "")
            answer = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
            answer.set_cookie(COOKIE, self.cookie or "", path=self._cookie_path(request), httponly=True,
                              samesite="strict", secure=request.url.scheme == "https")
            return answer
        header = request.headers.get("authorization")
        if header is not None and self.bearer is not None and \
                hmac.compare_digest(header.encode("latin-1", "replace"), self.bearer):
            return None
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and self.cookie is not None and (
                hmac.compare_digest(cookie.encode("utf-8", "replace"), self.cookie.encode())
                or hmac.compare_digest(cookie.encode("utf-8", "replace"), self.token.encode())):
            return None
        wrong = header is not None or cookie is not None
        return self.error(request, 401, "That token is not the right one." if wrong else
                          "This store's pages need its token.")

    # -- pages --------------------------------------------------------------------------

    def route(self, path: str, page: Callable[[Request, Links], Page], name: str) -> Route:
        async def endpoint(request: Request) -> Response:
            denied = self.authorize(request)
            if denied is not None:
                return denied
            # Store calls may run a query: in a worker thread, so the event loop (and, in
            # `featurelite serve`, the API's reads) keeps answering meanwhile.
            return await run_in_threadpool(self.answer, request, page)

        return Route(path, endpoint, methods=["GET"], name=name)

    def answer(self, request: Request, page: Callable[[Request, Links], Page]) -> Response:
        try:
            shown = page(request, Links(request.scope.get("root_path", "").rstrip("/")))
            return self.render(request, shown.template, shown.values, shown.status)
        except (NotFoundError, _NotFound) as exc:
            return self.error(request, 404, str(exc))
        except (_BadRequest, InputError) as exc:
            return self.error(request, 400, str(exc))
        except Exception as exc:  # every failure is a 500 page, logged with its traceback
            kind = type(exc).__name__ if isinstance(exc, FeatureliteError) else "unexpected"
            log.error("GET %s -> 500 %s error", request.url.path, kind, exc_info=exc)
            return self.error(request, 500, "The page could not be made; the server's log says why.")

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Routing's answers as pages: no such address (404), a method other than GET or
        HEAD (405: the UI only reads)."""
        status = getattr(exc, "status_code", 404)
        denied = self.authorize(request)  # an unknown address or method tells nothing to a client without the token
        if denied is not None:
            return denied
        if status == 405:
            return self.error(request, 405, f"{request.method} is not allowed here: the UI only reads (GET).",
                              {"Allow": "GET, HEAD"})
        if status == 404:
            return self.error(request, 404, f"There is no page at {request.url.path}.")
        return self.error(request, status, str(getattr(exc, "detail", "")) or "The request cannot be answered.")

    async def failed(self, request: Request, exc: Exception) -> Response:
        log.error("%s %s -> 500 unexpected error", request.method, request.url.path, exc_info=exc)
        return self.error(request, 500, "The page could not be made; the server's log says why.")


def _pages_app(ui: _UI) -> Starlette:
    """The UI's own app (mounted at :data:`PREFIX`): its pages, its static files and its
    HTML error pages."""
    pages = ui.pages
    routes: list[BaseRoute] = [
        ui.route("/", pages.home, "home"),
        ui.route("/views/{name}", pages.view, "view"),
        ui.route("/on-demand-views/{name}", pages.on_demand_view, "on_demand_view"),
        ui.route("/entities/{name}", pages.entity, "entity"),
        ui.route("/services/{name}", pages.service, "service"),
        ui.route("/search", pages.search, "search"),
        ui.route("/lineage", pages.lineage, "lineage"),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Any]] = {
        HTTPException: ui.http_error, 500: ui.failed, Exception: ui.failed,
    }
    return Starlette(routes=routes, exception_handlers=handlers)


def mount(store: Store, *, token: str | None = None) -> Mount:
    """The UI as a route to add to an app, at :data:`PREFIX` (``featurelite serve``'s)."""
    return Mount(PREFIX, app=_pages_app(_UI(store, token)), name="ui")


async def _to_ui(request: Request) -> Response:
    return RedirectResponse(f"{PREFIX}/", status_code=307)


def create_ui_app(store: Store, *, token: str | None = None) -> Starlette:
    """The app ``featurelite ui`` serves: the UI at :data:`PREFIX`, ``/`` redirecting to
    it. ``token``: every page then needs it (see the module's docstring); an empty or
    blank token is refused (ServerError) rather than read as "no auth"."""
    return _app(_UI(store, token))


def _app(ui: _UI) -> Starlette:
    return Starlette(routes=[Route("/", _to_ui, methods=["GET"]), Mount(PREFIX, app=_pages_app(ui), name="ui")])


# -- running it ----------------------------------------------------------------------------


if TYPE_CHECKING:
    _StreamHandler = logging.StreamHandler[TextIO]
else:  # generic at run time only from Python 3.11
    _StreamHandler = logging.StreamHandler


class _StderrHandler(_StreamHandler):
    """The handler :func:`run` adds (recognised so that it is added once)."""


def run(path: str, *, host: str = "127.0.0.1", port: int = 6567, token: str | None = None,
        log_level: str = "warning") -> None:
    """Open the store at ``path`` read-only and serve the UI until SIGTERM or Ctrl-C.

    Raises ServerError, before opening the store, for an empty token, a port outside
    0..65535 (0 picks a free one) or an address that cannot be bound; StoreError when the
    file is missing or held by a writer (a running ``featurelite serve`` serves the UI at
    its own ``/ui``)."""
    _check_token(token)
    sock = listen(host, port)
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        handler = _StderrHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s featurelite %(levelname)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        store = Store(path, read_only=True)
    except StoreLockedError as exc:
        sock.close()
        holder = server_holding(path)
        if holder is None:
            raise
        raise StoreLockedError(
            f"store {path!r} is served by `featurelite serve` (pid {holder['pid']}): its pages are at "
            f"{holder['url']}{PREFIX}/ (with that server's token), or stop the server first", path=path,
        ) from exc
    except BaseException:
        sock.close()
        raise
    try:
        environment()  # the templates' loader is ready before the first request
        ui = _UI(store, token)
        ui.pages.overview.counts(store.list_feature_views())  # the home page's counts, once (read-only: kept)
        app = _app(ui)
        bound = sock.getsockname()[1]
        address = f"http://{host if ':' not in host else f'[{host}]'}:{bound}{PREFIX}/"
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off", timeout_keep_alive=5)
        server = uvicorn.Server(config)
        log.info("serving the UI of %s (read-only) at %s, auth %s", path, address,
                 "on (token)" if token is not None else "off")
        # uvicorn shuts down on SIGTERM / SIGINT, then raises the signal again, which would
        # end the process before the store is closed: that second delivery does nothing.
        quiet = {sig: signal.signal(sig, lambda signum, frame: None) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server.run(sockets=[sock])
        finally:
            for sig, previous in quiet.items():
                signal.signal(sig, previous)
        if not server.started:
            raise ServerError(f"the UI could not start on {host}:{bound}; see the lines above")
    finally:
        sock.close()
        store.close()

