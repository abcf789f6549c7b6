"""The web UI's edges (issue 15), without a browser: hostile text escaped on every page and
in every chart (valid SVG, finite coordinates), bad parameters as 400 pages, unknown names
as 404 pages, GET only, the token on every page (and nothing of the store told without
it), no write but the statistics cache, and statistics of extreme values (tiny, huge,
NaN, -0.0, the last day of year 9999) equal to a NumPy oracle.

Pages are driven through Starlette's TestClient: the browser tests
(tests/test_ui_browser.py) cover what needs a real browser."""

from __future__ import annotations

import hashlib
import math
import re
import warnings
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree

import numpy as np
import pyarrow as pa
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

import featurelite as fl
from featurelite import ui_charts
from featurelite.server import create_app
from featurelite.statistics import PeriodStats
from featurelite.ui import create_ui_app

T0 = datetime(2026, 3, 2, tzinfo=timezone.utc)
TOKEN = "probe-token-1234"
HOSTILE = "<script>alert('x')</script>\"'&amp;"
MODEL = "m <b>\"q\" & 'x' ünï"
user = fl.Entity("user", join_keys=["user_id"], description=HOSTILE, tags={"k<": HOSTILE})


@fl.featurizer
def doubled(amount: float) -> float:
    return amount * 2.0


def _view(schema: dict | None = None, name: str = "ev") -> fl.FeatureView:
    return fl.FeatureView(name, entities=[user], timestamp_field="ts",
                          schema=schema or {"x": "float64"})


def _store(tmp_path, values, *, days=None, name="s.duckdb", times=None) -> fl.Store:
    store = fl.open(tmp_path / name)
    store.apply([user, _view()])
    n = len(values)
    ts = times or [T0 + timedelta(days=(days[i] if days else 0), seconds=i) for i in range(n)]
    store.ingest("ev", pa.table({
        "user_id": pa.array(range(n), pa.int64()), "x": pa.array(values, pa.float64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
    }))
    return store


def _svgs(text: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", text, re.S)


def _numbers_in_svg(svg: str) -> list[str]:
    """Every coordinate-like attribute value (x, y, width, height, cx, cy, d, viewBox)."""
    found = re.findall(r'\s(?:x|y|x1|x2|y1|y2|cx|cy|width|height|d|viewBox)="([^"]*)"', svg)
    return found


# -- a hostile store, served with a token --------------------------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe") / "hostile.duckdb"
    store = fl.open(path)
    txn = fl.FeatureView(
        "txn", entities=[user], timestamp_field="ts", description=HOSTILE, owner=HOSTILE, tags={"team": HOSTILE},
        schema={"amount": fl.Field("float64", description=HOSTILE, owner=HOSTILE, tags={"t": HOSTILE}),
                "label": "string"},
        featurizers={"twice": doubled},
    )
    service = fl.FeatureService("fraud", ["txn:amount", "txn:twice"], description=HOSTILE)
    store.apply([user, txn, service])
    store.ingest("txn", pa.table({
        "user_id": pa.array([1, 2], pa.int64()), "amount": [1.0, 2.0], "label": [HOSTILE, "ünï"],
        "ts": pa.array([T0, T0 + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
    }))
    spine = pa.table({"user_id": [1], "event_timestamp": pa.array([T0 + timedelta(days=1)],
                                                                   pa.timestamp("us", tz="UTC"))})
    training = store.get_historical_features(spine, service="fraud")
    store.record_model(MODEL, training, uri=HOSTILE, description=HOSTILE, tags={"a": HOSTILE})
    yield store
    store.close()


@pytest.fixture(scope="module")
def client(hostile):
    with TestClient(create_ui_app(hostile, token=TOKEN), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        yield c


PAGES = ["/ui/", "/ui/views/txn", "/ui/entities/user", "/ui/services/fraud", "/ui/lineage",
         "/ui/search?q=txn", "/ui/lineage?name=fraud"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_escapes_hostile_text_and_has_valid_svg(client, page):
    """Hostile descriptions, owners, tags, values and model names never appear raw; every
    chart parses as XML and has no NaN/inf coordinates."""
    answer = client.get(page)
    assert answer.status_code == 200, answer.text[:500]
    assert "<script>" not in answer.text and "<b>" not in answer.text
    for svg in _svgs(answer.text):
        ElementTree.fromstring(svg)  # well-formed XML
        for value in _numbers_in_svg(svg):
            assert "nan" not in value.lower() and "inf" not in value.lower(), value


def test_lineage_with_an_odd_model_name_renders_and_its_link_works(client):
    """A model named with quotes, <, &, spaces and unicode: its node links to its own
    lineage page, which renders (200) with the name escaped."""
    page = client.get("/ui/lineage").text
    links = re.findall(r'href="([^"]*lineage\?name=model[^"]*)"', page)
    assert links
    import html
    answer = client.get(html.unescape(links[0]))
    assert answer.status_code == 200
    assert html.escape(MODEL, quote=False).split(" ")[0] in answer.text
    assert "<b>" not in answer.text


@pytest.mark.parametrize("query", [
    "q=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "tag=a%3D%3Cscript%3E", "q=%22%3E%3Cimg%20src%3Dx%3E",
])
def test_search_echo_is_escaped(client, query):
    answer = client.get(f"/ui/search?{query}")
    assert answer.status_code == 200
    assert "<script>" not in answer.text and "<img src=x>" not in answer.text


@pytest.mark.parametrize("url", [
    "/ui/search?tag=novalue", "/ui/search?tag=%3Dv", "/ui/search?kind=bogus", "/ui/search?q=%ff%fe&tag=%ff",
    "/ui/views/txn?since=garbage", "/ui/views/txn?until=%ff", "/ui/views/txn?period=month",
    "/ui/views/txn?since=99999-01-01", "/ui/views/txn?since=9999-12-31T23:59:59-01:00",
    "/ui/views/txn?until=0001-01-01T00:00:00%2B01:00", "/ui/views/txn?since=2026-01-02&until=2026-01-01",
    "/ui/views/txn?since=" + "9" * 3000,
])
def test_bad_query_parameters_give_a_400_page(client, url):
    answer = client.get(url)
    assert answer.status_code == 400, (url, answer.status_code)
    assert answer.headers["content-type"].startswith("text/html")
    assert "Traceback" not in answer.text


@pytest.mark.parametrize("url", [
    "/ui/views/nope", "/ui/views/%3Cscript%3E", "/ui/entities/nope", "/ui/services/nope",
    "/ui/on-demand-views/nope", "/ui/lineage?name=nope", "/ui/nowhere/%3Cb%3E", "/ui/views/fraud",
])
def test_unknown_names_give_an_escaped_404_page(client, url):
    answer = client.get(url)
    assert answer.status_code == 404, (url, answer.status_code)
    assert "<script>" not in answer.text and "<b>" not in answer.text and "Traceback" not in answer.text


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("page", ["/ui/", "/ui/views/txn", "/ui/search"])
def test_only_get_is_allowed(client, method, page):
    assert client.request(method, page).status_code == 405


@pytest.mark.parametrize("page", [*PAGES, "/ui/views/nope", "/ui/nowhere"])
def test_every_page_needs_the_token_and_leaks_nothing(hostile, page):
    with TestClient(create_ui_app(hostile, token=TOKEN), raise_server_exceptions=False) as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "featurelite_token=wrong"}):
            answer = anonymous.get(page, headers=headers)
            assert answer.status_code == 401
            assert "alert" not in answer.text and "amount" not in answer.text
        assert anonymous.get("/ui/static/style.css").status_code == 200


def test_serve_mounts_the_ui_behind_the_same_token(hostile):
    with TestClient(create_app(hostile, token=TOKEN), raise_server_exceptions=False) as c:
        assert c.get("/ui/views/txn").status_code == 401
        assert c.get("/ui/views/txn", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        first = c.get(f"/ui/views/txn?token={TOKEN}", follow_redirects=False)
        assert first.status_code == 303 and TOKEN not in first.headers["location"]
        assert TOKEN not in first.headers["set-cookie"]
        assert c.get("/ui/views/txn").status_code == 200  # the cookie now


def test_answers_without_the_token_do_not_name_the_store_file(hostile):
    """A client without the token learns nothing of the store: the 401 page (also for a
    method other than GET, checked after the token) names neither the file nor the version."""
    with TestClient(create_ui_app(hostile, token=TOKEN), raise_server_exceptions=False) as anonymous:
        assert "hostile.duckdb" not in anonymous.get("/ui/").text
        assert "hostile.duckdb" not in anonymous.post("/ui/views/txn").text


def _contents(store: fl.Store) -> str:
    """A digest of every table's rows but the statistics cache."""
    con = store.con
    digest = hashlib.sha256()
    tables = sorted(r[0] for r in con.execute(
        "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE table_name <> 'fl_stats'").fetchall())
    for table in tables:
        schema, _, name = table.partition(".")
        rows = con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
        digest.update(table.encode() + repr(sorted(map(repr, rows))).encode())
    return digest.hexdigest()


def test_get_never_writes_but_the_stats_cache(tmp_path):
    store = _store(tmp_path, [1.0, 2.0, None])
    try:
        before = _contents(store)
        with TestClient(create_app(store), raise_server_exceptions=False) as c:
            for page in ["/ui/", "/ui/views/ev", "/ui/views/ev?period=week&since=2026-01-01", "/ui/lineage",
                         "/ui/search?q=ev", "/ui/entities/user", "/ui/views/nope"]:
                assert c.get(page).status_code in (200, 404)
                assert c.head(page).status_code in (200, 404)
        assert _contents(store) == before
    finally:
        store.close()


# -- statistics against a numpy oracle -----------------------------------------------------


def test_median_of_tiny_values_matches_numpy(tmp_path):
    """Values 1e-20, 2e-20, 3e-20: numpy's median, 2e-20 (a shift of the values before the
    t-digest once rounded them all to the same double)."""
    values = [1e-20, 2e-20, 3e-20]
    store = _store(tmp_path, values)
    try:
        found = store.stats("ev").features["x"]
    finally:
        store.close()
    assert found.quantiles["0.5"] == pytest.approx(float(np.median(values)), rel=1e-6, abs=0)
    assert found.quantiles["0.99"] == pytest.approx(float(np.quantile(values, 0.99)), rel=0.05, abs=0)


@pytest.mark.parametrize("values", [[-1.7e308, 0.0, 1.7e308], [-1e20, 1.0, 1e20]])
def test_median_of_values_spanning_a_wide_range_matches_numpy(tmp_path, values):
    """Values -1.7e308, 0, 1.7e308 (median 0) and -1e20, 1, 1e20 (median 1): the median is
    numpy's, with no overflow or lost precision over a range wider than the largest double."""
    store = _store(tmp_path, values)
    try:
        found = store.stats("ev").features["x"]
    finally:
        store.close()
    assert found.quantiles["0.5"] == float(np.median(values))


def test_period_median_of_a_huge_value_is_not_dropped(tmp_path):
    """A day whose only value is 1.7e308, another's -1.7e308: each day's p50 is its one
    value (none is lost to an overflow)."""
    store = _store(tmp_path, [1.7e308, -1.7e308], days=[0, 1])
    try:
        periods = store.stats("ev", period="day").features["x"].periods
    finally:
        store.close()
    assert [p.p50 for p in periods] == [1.7e308, -1.7e308]


def test_drift_chart_has_no_nan_coordinates_for_huge_means(tmp_path):
    """Per-day means 1.7e308 and -1.7e308: the drift chart is drawn with finite
    coordinates ((value - low) / (high - low) would be inf / inf)."""
    store = _store(tmp_path, [1.7e308, -1.7e308], days=[0, 1])
    try:
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev?period=day")
    finally:
        store.close()
    assert answer.status_code == 200
    for svg in _svgs(answer.text):
        assert "nan" not in " ".join(_numbers_in_svg(svg)).lower()


@pytest.mark.parametrize("value", [1e20, -2.0**60])
def test_view_page_with_one_large_value_is_not_a_500(tmp_path, value):
    """One row with x = 1e20 (any constant beyond 2**53): the page renders (a flat series
    widened by +-1.0 once stayed flat and divided by zero)."""
    store = _store(tmp_path, [value])
    try:
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev")
    finally:
        store.close()
    assert answer.status_code == 200


def test_drift_chart_function_with_extreme_values_is_finite():
    """The same, on the chart function alone."""
    periods = [PeriodStats(T0, 1, 0, mean=1.7e308, p50=1.7e308), PeriodStats(T0 + timedelta(days=1), 1, 0,
                                                                              mean=-1.7e308, p50=-1.7e308)]
    svg = ui_charts.drift(periods, feature="x")
    ElementTree.fromstring(svg)
    assert "nan" not in " ".join(_numbers_in_svg(svg)).lower()


def test_stats_of_an_event_on_the_last_day_of_year_9999_is_not_a_500(tmp_path):
    """An event at 9999-12-31T12:00Z (a time the store accepts): the view page renders and
    store.stats answers (the last period's end is not computed past datetime.max)."""
    moment = datetime(9999, 12, 31, 12, tzinfo=timezone.utc)
    store = _store(tmp_path, [1.0], times=[moment])
    try:
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev")
        assert answer.status_code == 200
        assert store.stats("ev", period="day").rows == 1
    finally:
        store.close()


@pytest.mark.parametrize("values", [
    [], [None, None], [float("nan"), float("inf"), -float("inf")], [-0.0, 0.0], [42.0],
    [1e300, -1e300, 5.0], [1e-300, 2e-300], [-5.0, -1.0, -3.0, -2.0],
])
def test_numeric_edge_cases_match_numpy_and_render(tmp_path, values):
    """Empty, all-null, only non-finite, -0.0, one row, huge/tiny: count/nulls/min/max/mean
    match numpy over the finite values; the page renders with finite SVG."""
    store = _store(tmp_path, values) if values else fl.open(tmp_path / "s.duckdb")
    try:
        if not values:
            store.apply([user, _view()])
        found = store.stats("ev").features["x"]
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev")
    finally:
        store.close()
    finite = [v for v in values if v is not None and math.isfinite(v)]
    assert (found.count, found.nulls) == (len(values), values.count(None))
    if finite:
        assert (found.min, found.max) == (min(finite), max(finite))
        assert found.mean == pytest.approx(float(np.mean(finite)), rel=1e-9)
    else:
        assert found.mean is None and found.histogram is None
    assert answer.status_code == 200
    for svg in _svgs(answer.text):
        ElementTree.fromstring(svg)
        assert not re.search(r"nan|inf", " ".join(_numbers_in_svg(svg)), re.I)


def test_text_bool_and_timestamp_features_match_an_oracle_and_render(tmp_path):
    schema = {"s": "string", "b": "bool", "t": "timestamp", "i": "int64"}
    store = fl.open(tmp_path / "s.duckdb")
    try:
        store.apply([user, _view(schema)])
        strings = ["ünï", "<b>", "ünï", None, "😀"]
        bools = [True, False, True, None, True]
        times = [T0, None, T0 + timedelta(days=3), T0, T0 + timedelta(seconds=1)]
        ints = [2**62, -(2**62), 0, None, 7]
        store.ingest("ev", pa.table({
            "user_id": pa.array(range(5), pa.int64()), "s": pa.array(strings), "b": pa.array(bools),
            "t": pa.array(times, pa.timestamp("us", tz="UTC")), "i": pa.array(ints, pa.int64()),
            "ts": pa.array([T0 + timedelta(hours=i) for i in range(5)], pa.timestamp("us", tz="UTC")),
        }))
        found = store.stats("ev").features
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev")
    finally:
        store.close()
    assert {t.value: t.count for t in found["s"].top} == {"ünï": 2, "<b>": 1, "😀": 1}
    assert {t.value: t.count for t in found["b"].top} == {"true": 3, "false": 1}
    assert found["b"].mean == pytest.approx(0.75)
    assert found["t"].min == T0.isoformat() and found["t"].max == (T0 + timedelta(days=3)).isoformat()
    present = [v for v in ints if v is not None]
    assert (found["i"].min, found["i"].max) == (float(min(present)), float(max(present)))
    assert found["i"].mean == pytest.approx(float(np.mean(present)), rel=1e-9)
    assert answer.status_code == 200 and "<b>" not in answer.text
    for svg in _svgs(answer.text):
        ElementTree.fromstring(svg)


def test_a_view_with_aggregations_renders_its_stats_and_features(tmp_path):
    """A view with aggregations: the stored feature's statistics match the rows, every
    aggregate is listed as a feature, and the page renders (200)."""
    aggregated = fl.FeatureView("ev", entities=[user], timestamp_field="ts", schema={"x": "float64"},
                                aggregations=[fl.Aggregation("x", "sum", "1h"), fl.Aggregation("x", "mean", "1d")])
    store = fl.open(tmp_path / "s.duckdb")
    try:
        store.apply([user, aggregated])
        store.ingest("ev", pa.table({"user_id": pa.array([1, 1, 2], pa.int64()), "x": [1.0, 2.0, 4.0],
                                     "ts": pa.array([T0 + timedelta(minutes=i) for i in range(3)],
                                                    pa.timestamp("us", tz="UTC"))}))
        found = store.stats("ev").features["x"]
        with TestClient(create_ui_app(store), raise_server_exceptions=False) as c:
            answer = c.get("/ui/views/ev")
        names = list(store.get_feature_view("ev").aggregation_schema)
    finally:
        store.close()
    assert found.mean == pytest.approx(7.0 / 3) and found.count == 3
    assert answer.status_code == 200
    assert all(f'data-feature="{name}"' in answer.text for name in names)
