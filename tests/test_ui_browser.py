"""The web UI in a real browser: headless Chromium (Debian's, driven by Playwright) against
real server subprocesses on free loopback ports, `featurelite ui STORE` and the /ui path of
`featurelite serve STORE --token T`, over one store built from the demo
(``scripts/screenshots.py``'s, the docs' screenshots show it) plus a view whose metadata and
values are hostile HTML.

Every page a test opens is checked on the way (the ``page`` fixture): no JavaScript dialog
ever opens (an ``alert`` would mean user text ran as script), no script error, and no request
leaves the loopback server (no CDN). Without Chromium or Playwright the tests fail and name
the fix; ``FEATURELITE_SKIP_BROWSER=1`` skips them on purpose.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pytest
from browser import SCRIPT, require_chromium, shots

import featurelite as fl

TOKEN = "ui-test-token-7f3a"
#: Hostile text in a feature description, a view description, a tag and stored values.
XSS_FEATURE = '<script>alert("xss-feature")</script> risk score'
XSS_VIEW = "<img src=x onerror=\"alert('xss-view')\"> flagged users"
XSS_TAG = "</text><script>alert('xss-tag')</script>"
XSS_VALUE = "<script>alert('xss-value')</script>"
SPEND_DESCRIPTION = shots.FIELDS["spend_7d"].description


def _hostile_view() -> fl.FeatureView:
    user = fl.Entity("user", join_keys=["user_id"], description="A customer of the shop")
    return fl.FeatureView(
        "flags", entities=[user], timestamp_field="ts", description=XSS_VIEW, tags={"team": XSS_TAG},
        schema={"score": fl.Field("float64", description=XSS_FEATURE), "label": fl.Field("string", owner=XSS_TAG)},
    )


@dataclass
class Servers:
    ui: str  #: base URL of `featurelite ui STORE` (no token)
    served: str  #: base URL of `featurelite serve STORE --token TOKEN` (the UI under /ui)
    pins: dict[str, str]  #: the versions the service `checkout` pins


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    tmp = tmp_path_factory.mktemp("ui-browser")
    path = tmp / "shop.duckdb"
    shots.build_store(path)
    with fl.open(path) as store:
        store.apply([_hostile_view()])
        store.ingest("flags", pa.table({
            "user_id": [1, 2, 3], "score": [0.5, 0.25, 0.75], "label": [XSS_VALUE, XSS_VALUE, "plain"],
            "ts": pa.array([1_767_225_600_000_000 + i for i in range(3)], pa.timestamp("us", tz="UTC")),
        }))
        pins = dict(store.get_feature_service("checkout").pins)
    served = tmp / "served.duckdb"  # `serve` opens its file for writing: a copy of its own
    shutil.copyfile(path, served)
    ui_port, serve_port = shots.free_port(), shots.free_port()
    ui, serve = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{serve_port}"
    with contextlib.ExitStack() as stack:
        ui_log = stack.enter_context(open(tmp / "ui.log", "w+", encoding="utf-8"))
        serve_log = stack.enter_context(open(tmp / "serve.log", "w+", encoding="utf-8"))
        serve_command = [sys.executable, "-m", "featurelite", "serve", str(served), "--port", str(serve_port)]
        stack.enter_context(shots.running(shots.ui_command(path, ui_port), ui + "/ui/", ui_log, env=shots.server_env()))
        stack.enter_context(shots.running(serve_command, serve + "/health", serve_log, env=shots.server_env(TOKEN)))
        yield Servers(ui, serve, pins)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = shots.launch_chromium(playwright, executable)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watch:
    """What the pages of one browser context did that they must not do."""

    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


@contextlib.contextmanager
def watched(browser: Any, **options: Any) -> Iterator[tuple[Any, Any]]:
    """A new browser context and page whose dialogs, script errors and requests beyond the
    loopback servers fail the test at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    watch = Watch()

    def on_dialog(dialog: Any) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_request(request: Any) -> None:
        parts = urlsplit(request.url)
        if parts.scheme not in ("data", "about") and parts.hostname != "127.0.0.1":
            watch.foreign.append(request.url)

    context.set_default_timeout(10_000)  # local pages: a missing element fails fast
    context.on("dialog", on_dialog)
    context.on("request", on_request)
    page = context.new_page()
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    try:
        yield context, page
    finally:
        context.close()
    assert not watch.dialogs, f"a dialog opened: user text ran as script: {watch.dialogs}"
    assert not watch.errors, f"script errors on the page: {watch.errors}"
    assert not watch.foreign, f"the page loaded something from beyond the server: {watch.foreign}"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with watched(browser) as (_, page):
        yield page


def open_ok(page: Any, url: str) -> Any:
    """Go to ``url``; it must answer 200 with HTML and offer no form that posts."""
    response = page.goto(url)
    assert response is not None and response.status == 200, (url, response and response.status)
    assert response.headers.get("content-type", "").startswith("text/html"), response.headers
    assert_read_only(page)
    return response


def assert_read_only(page: Any) -> None:
    methods = page.locator("form").evaluate_all("forms => forms.map(f => f.method)")
    assert all(method == "get" for method in methods), f"a form on {page.url} does not GET: {methods}"


def assert_chart(chart: Any, what: str) -> int:
    """``chart`` (one SVG) is laid out with a size and has bars of which some have a
    height; returns the number of bars."""
    assert chart.count() == 1, f"{what}: {chart.count()} charts"
    box = chart.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"{what} has no size: {box}"
    bars = chart.locator("rect.bar")
    heights = [bars.nth(i).bounding_box()["height"] for i in range(bars.count())]
    assert heights and max(heights) > 0, f"{what} has no visible bars: {heights}"
    return len(heights)


def table_rows(page: Any, selector: str) -> list[str]:
    return [text.strip() for text in page.locator(f"{selector} tbody tr").all_inner_texts()]


# -- pages ------------------------------------------------------------------------------


def test_root_redirects_to_the_ui(servers: Servers, page: Any) -> None:
    open_ok(page, servers.ui + "/")
    assert page.url == servers.ui + "/ui/"


def test_home_lists_the_store_and_links_to_a_view_with_statistics_and_charts(servers: Servers, page: Any) -> None:
    open_ok(page, servers.ui + "/ui/")
    views = table_rows(page, "table#views")
    assert len(views) == 3 and any(row.startswith("user_stats") for row in views), views
    assert re.search(r"20[,.\u202f\u00a0 ]?000", next(row for row in views if row.startswith("user_stats"))), views
    assert any("checkout" in row for row in table_rows(page, "table#services"))
    assert any("user" in row for row in table_rows(page, "table#entities"))
    assert any("shares" in row for row in table_rows(page, "table#on-demand-views"))

    with page.expect_navigation():
        page.locator('table#views a[href="/ui/views/user_stats"]').first.click()
    assert urlsplit(page.url).path == "/ui/views/user_stats"
    assert_read_only(page)
    features = page.locator("table#features")
    spend = features.locator("tr", has_text="spend_7d").first.inner_text()
    assert SPEND_DESCRIPTION in spend and "float64" in spend and "growth@shop.example" in spend, spend

    stats = page.locator("section#stats")
    assert re.search(r"20[,.\u202f\u00a0 ]?000", stats.inner_text()), "the history row count is not in the statistics"
    assert assert_chart(stats.locator('svg.chart.histogram[data-feature="spend_7d"]'), "spend_7d's histogram") >= 5
    assert assert_chart(stats.locator('svg.chart.histogram[data-feature="country"]'), "country's top values") == 4
    timeline = page.locator("section#freshness svg.chart.timeline")
    assert timeline.count() >= 1 and (timeline.first.bounding_box() or {}).get("width", 0) > 0
    assert page.locator("section#drift svg.chart.drift").count() >= 1
    # Two versions (the second added the metadata): the diff between them shows it.
    diffs = page.locator("section#versions pre.diff")
    assert diffs.count() >= 1 and "refunds" in diffs.first.inner_text()
    assert len(page.locator("section#sample table tbody tr").all()) >= 1


def test_service_page_shows_pins_and_an_outdated_one(servers: Servers, page: Any) -> None:
    open_ok(page, servers.ui + "/ui/services/checkout")
    pins = {row.split()[0]: row for row in table_rows(page, "table#pins")}
    assert set(pins) == {"user_stats", "shares"}, pins
    # user_stats got a new version after the service pinned the first one.
    assert "outdated" in pins["user_stats"] and "outdated" not in pins["shares"], pins
    graph = page.locator("svg#lineage-graph")
    assert graph.count() == 1 and (graph.bounding_box() or {}).get("height", 0) > 0
    assert graph.locator('g.node[data-id="feature_view:user_stats"]').count() == 1


def test_search_finds_a_feature_by_a_word_of_its_description(servers: Servers, page: Any) -> None:
    open_ok(page, servers.ui + "/ui/")
    page.locator("form#search input[name=q]").fill("refunds")
    with page.expect_navigation():
        page.locator("form#search input[name=q]").press("Enter")
    assert urlsplit(page.url).path == "/ui/search" and "q=refunds" in page.url
    hits = page.locator("ol#results li.hit")
    assert hits.count() == 1, hits.all_inner_texts()
    hit = page.locator('ol#results li.hit[data-kind="feature"][data-name="user_stats:spend_7d"]')
    assert hit.count() == 1 and "refunds" in hit.inner_text()
    with page.expect_navigation():
        hit.locator("a").first.click()
    assert urlsplit(page.url).path == "/ui/views/user_stats"

    open_ok(page, servers.ui + "/ui/search?q=nothing-matches-this")
    assert page.locator("ol#results li.hit").count() == 0


def test_lineage_graph_shows_the_views_a_service_pins(servers: Servers, page: Any) -> None:
    open_ok(page, servers.ui + "/ui/lineage")
    graph = page.locator("svg#lineage-graph")
    nodes = {kind: graph.locator(f'g.node[data-id="{kind}"]') for kind in (
        "entity:user", "feature_view:user_stats", "on_demand_feature_view:shares", "feature_service:checkout")}
    for node_id, node in nodes.items():
        assert node.count() == 1, f"no node {node_id}"
        assert (node.bounding_box() or {}).get("width", 0) > 0, f"node {node_id} is not drawn"
    for source in ("feature_view:user_stats", "on_demand_feature_view:shares"):
        edge = graph.locator(f'path.edge[data-source="{source}"][data-target="feature_service:checkout"]')
        assert edge.count() == 1, f"no edge {source} -> feature_service:checkout"
    # Columns by kind, upstream first.
    xs = [(node.bounding_box() or {})["x"] for node in nodes.values()]
    assert xs == sorted(xs) and xs[0] < xs[-1], xs
    # Edge labels show the pinned versions (at least their first 6 digits).
    labels = graph.text_content() or ""
    for view, version in servers.pins.items():
        assert version[:6] in labels, f"the pinned version {version} of {view} is not on the graph: {labels!r}"
    with page.expect_navigation():
        nodes["feature_service:checkout"].click()
    assert urlsplit(page.url).path == "/ui/services/checkout"

    open_ok(page, servers.ui + "/ui/lineage?name=user_profile")
    assert page.locator('svg#lineage-graph g.node[data-id="feature_view:user_profile"]').count() == 1
    assert page.locator('svg#lineage-graph g.node[data-id="feature_service:checkout"]').count() == 0


@pytest.mark.parametrize("path", [
    "/ui/views/no_such_view", "/ui/services/no_such_service", "/ui/entities/no_such_entity",
    "/ui/on-demand-views/no_such_odfv", "/ui/views/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
])
def test_unknown_names_get_the_404_page(servers: Servers, page: Any, path: str) -> None:
    response = page.goto(servers.ui + path)
    assert response is not None and response.status == 404
    assert response.headers.get("content-type", "").startswith("text/html")
    text = page.locator("body").inner_text()
    assert "Traceback" not in text, text
    name = "<script>alert(1)</script>" if "script" in path else path.rsplit("/", 1)[1]
    assert name in text, f"the 404 page does not name {name!r}: {text}"


def test_the_ui_is_read_only(servers: Servers) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = httpx.request(method, servers.ui + "/ui/", timeout=10)
        assert response.status_code in (404, 405), (method, response.status_code)


def test_pages_work_with_javascript_off(servers: Servers, browser: Any) -> None:
    with watched(browser, java_script_enabled=False) as (_, page):
        open_ok(page, servers.ui + "/ui/")
        assert len(table_rows(page, "table#views")) == 3
        open_ok(page, servers.ui + "/ui/views/user_stats")
        assert len(table_rows(page, "table#features")) >= 3
        assert_chart(page.locator('section#stats svg.chart.histogram[data-feature="spend_7d"]'), "histogram, no JS")
        open_ok(page, servers.ui + "/ui/")
        page.locator("form#search input[name=q]").fill("refunds")
        with page.expect_navigation():
            page.locator("form#search input[name=q]").press("Enter")
        assert page.locator('ol#results li.hit[data-name="user_stats:spend_7d"]').count() == 1
        open_ok(page, servers.ui + "/ui/lineage")
        assert page.locator('svg#lineage-graph g.node[data-id="feature_service:checkout"]').count() == 1


def test_user_text_is_shown_escaped_and_never_runs(servers: Servers, page: Any) -> None:
    # The `page` fixture fails the test if any alert() ran.
    open_ok(page, servers.ui + "/ui/")
    assert XSS_VIEW in page.locator("table#views").inner_text()
    open_ok(page, servers.ui + "/ui/views/flags")
    assert XSS_FEATURE in page.locator("table#features").inner_text()
    assert page.locator("table#features script, table#features img").count() == 0
    assert page.locator("section#sample script").count() == 0
    assert XSS_VALUE in page.locator("section#sample").inner_text()
    assert page.locator("section#stats script, svg script").count() == 0
    open_ok(page, servers.ui + "/ui/search?q=risk")
    assert XSS_FEATURE in page.locator("ol#results").inner_text()
    open_ok(page, servers.ui + "/ui/search?q=" + "%3Cscript%3Ealert('xss-query')%3C%2Fscript%3E")
    assert page.locator("main script, ol#results script").count() == 0
    open_ok(page, servers.ui + "/ui/lineage")
    open_ok(page, servers.ui + "/ui/lineage?name=flags")


# -- the token of `featurelite serve` ------------------------------------------------------


def test_serve_mounts_the_ui_behind_its_token(servers: Servers, browser: Any) -> None:
    with watched(browser) as (context, page):
        response = page.goto(servers.served + "/ui/views/user_stats")
        assert response is not None and response.status == 401
        assert page.locator("table#features").count() == 0
        form = page.locator("form:has(input[name=token])")
        assert form.count() == 1
        assert_read_only(page)

        form.locator("input[name=token]").fill("not-the-token")
        with page.expect_navigation() as wrong:
            form.locator("input[name=token]").press("Enter")
        assert wrong.value.status == 401
        assert not [c for c in context.cookies() if c["name"] == "featurelite_token"]

        page.locator("form input[name=token]").fill(TOKEN)
        with page.expect_navigation(url=re.compile(r"/ui/views/user_stats$")):
            page.locator("form input[name=token]").press("Enter")
        assert "token" not in page.url
        assert page.locator("table#features").count() == 1
        cookie = next(c for c in context.cookies() if c["name"] == "featurelite_token")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui", cookie
        assert "featurelite_token" not in page.evaluate("document.cookie")  # HttpOnly: no script sees it
        # Signed in: other pages work without the token in the URL.
        open_ok(page, servers.served + "/ui/")
        assert len(table_rows(page, "table#views")) == 3
        open_ok(page, servers.served + "/ui/lineage")

    # A bearer header passes too; nothing passes without either.
    with watched(browser, extra_http_headers={"Authorization": f"Bearer {TOKEN}"}) as (_, page):
        open_ok(page, servers.served + "/ui/services/checkout")
    with watched(browser) as (_, page):
        for path in ("/ui/", "/ui/lineage", "/ui/search?q=spend", "/ui/views/no_such_view"):
            response = page.goto(servers.served + path)
            assert response is not None and response.status == 401, path
    assert httpx.get(servers.served + "/ui/", timeout=10).status_code == 401
    assert httpx.get(servers.served + "/ui/", headers={"Authorization": "Bearer nope"}, timeout=10).status_code == 401


# -- Chromium missing, and the screenshot script ---------------------------------------------


def test_missing_chromium_fails_and_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATURELITE_SKIP_BROWSER", raising=False)
    monkeypatch.setenv(shots.CHROMIUM_ENV, "/nonexistent/chromium")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        require_chromium()
    monkeypatch.setenv("FEATURELITE_SKIP_BROWSER", "1")
    with pytest.raises(pytest.skip.Exception):
        require_chromium()


def test_screenshot_script_saves_the_pages(tmp_path: Path) -> None:
    require_chromium()
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(SCRIPT), "--output", str(tmp_path)], capture_output=True, text=True,
                          timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for name, _, _ in shots.PAGES:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
        assert width == shots.WIDTH and height >= 400, (name, width, height)
        assert len(data) > 20_000, f"{name} is only {len(data)} bytes: a blank page?"
    assert time.monotonic() - started < 120
