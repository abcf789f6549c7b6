"""Screenshots of the web UI for the docs: ``python scripts/screenshots.py [--output DIR]``.

Builds the demo store (``featurelite.demo``'s definitions and events, with per-feature
metadata, a second version of the view, a feature service and a recorded model) in a
temporary directory, starts ``featurelite ui`` on it on a free loopback port, and saves PNG
screenshots (1280 px wide, whole pages) of the home page, a view, a service, search results
and the lineage graph into ``docs/images/`` (or ``--output``). Needs Playwright
(``pip install '.[test]'``) and Debian's Chromium (``apt-get install -y chromium``):
Playwright's own browser download does not work on machines without internet.

The browser tests (``tests/test_ui_browser.py``) use the same store, server and browser
settings, from this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pyarrow as pa

import featurelite as fl
from featurelite import demo

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "images"

#: Where Debian's package puts Chromium; ``$FEATURELITE_CHROMIUM`` points elsewhere.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "FEATURELITE_CHROMIUM"
#: Headless Chromium on a machine with a closed network: no sandbox (the tests run as root
#: in CI), no GPU, and none of the background connections it would try at every start.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)
INSTALL_HINT = (
    "install Debian's Chromium with `apt-get install -y chromium` (.ci/run does) and Playwright with "
    "`pip install '.[test]'`; Playwright's own browser download does not work here"
)
WIDTH, HEIGHT = 1280, 800

#: The pages the docs show: (file name, path under the server, whole page?).
PAGES = (
    ("ui-home.png", "/ui/", True),
    ("ui-view.png", "/ui/views/user_stats", True),
    ("ui-service.png", "/ui/services/checkout", True),
    ("ui-search.png", "/ui/search?q=spend", True),
    ("ui-lineage.png", "/ui/lineage", True),
)

#: Per-feature metadata of the demo view (``fl.Field``): what the UI, search and the docs show.
FIELDS = {
    "spend_7d": fl.Field(
        "float64", description="Total spend of the user in the last seven days, in euros, net of refunds",
        tags={"unit": "EUR", "pii": "no"}, owner="growth@shop.example",
    ),
    "orders_7d": fl.Field("int64", description="Orders the user placed in the last seven days", tags={"pii": "no"}),
    "country": fl.Field("string", description="Shipping country of the user's latest order (ISO 3166, lower case)",
                        tags={"pii": "yes"}),
}


def find_chromium() -> str | None:
    """The Chromium binary to drive: ``$FEATURELITE_CHROMIUM``, ``chromium`` on the PATH, or
    Debian's ``/usr/bin/chromium``; None when there is none."""
    given = os.environ.get(CHROMIUM_ENV)
    if given:
        return given if os.access(given, os.X_OK) else None
    found = shutil.which("chromium")
    if found:
        return found
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None


def launch_chromium(playwright: Any, executable: str) -> Any:
    """A headless Chromium browser started by Playwright (``sync_playwright()``'s object)
    from ``executable`` with :data:`CHROMIUM_ARGS` (Playwright gives it a fresh profile)."""
    return playwright.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_store(path: str | os.PathLike[str], *, end: datetime | None = None) -> None:
    """The demo store at ``path``: the demo's entity, view (first without, then with
    per-feature metadata, so it has two versions), on-demand view and events; a profile
    view with a boolean; the feature service ``checkout``; and a model recorded as trained
    on a training set of that service."""
    end = datetime.now(timezone.utc).replace(microsecond=0) if end is None else end
    _, demo_stats, demo_shares = demo.definitions()
    assert isinstance(demo_stats, fl.FeatureView) and isinstance(demo_shares, fl.OnDemandFeatureView)
    user = fl.Entity("user", join_keys=["user_id"], description="A customer of the shop")

    def user_stats(schema: dict[str, Any], **metadata: Any) -> fl.FeatureView:
        return fl.FeatureView(
            demo_stats.name, entities=[user], timestamp_field="ts", schema=schema, ttl="30d",
            description=demo_stats.description, featurizers=dict(demo_stats.featurizers),
            aggregations=list(demo_stats.aggregations), **metadata,
        )

    plain_stats = user_stats({name: field.dtype for name, field in FIELDS.items()})
    stats = user_stats(dict(FIELDS), owner="growth", tags={"team": "growth"}, freshness="1d")
    basket = fl.RequestSource("checkout", schema={"basket": "float64"})
    shares = fl.OnDemandFeatureView(demo_shares.name, sources=[plain_stats, basket],
                                    featurizers=dict(demo_shares.featurizers),
                                    description="Request-time share of the basket in the week's spend")
    profile = fl.FeatureView(
        "user_profile", entities=[user], timestamp_field="ts",
        schema={
            "is_member": fl.Field("bool", description="Whether the user has a paid membership"),
            "signup_channel": fl.Field("string", description="Where the user signed up: web, app or a partner"),
            "age_days": fl.Field("int64", description="Days since the user signed up"),
        },
        description="Slowly changing facts about a user", owner="crm", tags={"team": "crm"},
    )
    checkout = fl.FeatureService(
        "checkout",
        ["user_stats:spend_7d", "user_stats:spend_per_order", "user_stats:spend_7d_max_30d", "user_stats:country",
         "shares:basket_share"],
        description="What the checkout fraud model reads", owner="risk", tags={"team": "risk"},
    )
    with fl.open(path) as store:
        store.apply([user, plain_stats, shares, checkout])
        store.ingest("user_stats", demo.example_events(end=end))
        # The service pinned the first version; the metadata makes a second one (never breaking).
        store.apply([user, stats, profile])
        store.ingest("user_profile", _profiles(end))
        # A model trained on a training set of the service (featurelite.mlflow.log_model records its own).
        train = store.get_historical_features(demo.example_spine(rows=200, end=end), service="checkout")
        store.record_model("fraud-model", train, uri="models:/fraud-model/1", description="Checkout fraud score",
                           tags={"team": "risk"})


def _profiles(end: datetime, users: int = 1_000, seed: int = 3) -> pa.Table:
    """One seeded profile row per user, at times in the demo's window."""
    rng = np.random.default_rng(seed)
    start_s = int(end.timestamp()) - demo.DAYS * 24 * 3600
    return pa.table({
        "user_id": np.arange(users, dtype=np.int64),
        "is_member": rng.random(users) < 0.3,
        "signup_channel": pa.array(rng.choice(["web", "app", "partner"], users, p=[0.5, 0.4, 0.1])),
        "age_days": rng.integers(0, 900, users),
        "ts": pa.array((start_s + rng.integers(0, demo.DAYS * 24 * 3600, users)) * 1_000_000,
                       pa.timestamp("us", tz="UTC")),
    })


@contextlib.contextmanager
def running(command: Sequence[str], url: str, log: IO[str], *, env: dict[str, str] | None = None,
            timeout: float = 60) -> Iterator[subprocess.Popen[str]]:
    """Run ``command`` (a server) with its output going to ``log`` until ``url`` answers
    (any HTTP status), yield it, and stop it at the end. If it exits or does not answer
    within ``timeout`` seconds, raise RuntimeError with the end of its output."""
    proc = subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                with open(log.name, encoding="utf-8", errors="replace") as text:
                    output = text.read()[-3000:]
                raise RuntimeError(f"{' '.join(command)} did not start: {output}")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ui_command(store: str | os.PathLike[str], port: int) -> list[str]:
    """``featurelite ui STORE --port PORT`` run by this Python."""
    return [sys.executable, "-m", "featurelite", "ui", str(store), "--port", str(port)]


def server_env(token: str | None = None) -> dict[str, str]:
    """This process's environment for a server, with ``$FEATURELITE_TOKEN`` set to
    ``token`` or removed."""
    env = {k: v for k, v in os.environ.items() if k != "FEATURELITE_TOKEN"}
    if token is not None:
        env["FEATURELITE_TOKEN"] = token
    return env


def take_screenshots(base_url: str, output: Path, executable: str) -> list[Path]:
    """Save :data:`PAGES` of the UI at ``base_url`` as PNG files in ``output``."""
    from playwright.sync_api import sync_playwright

    output.mkdir(parents=True, exist_ok=True)
    saved = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
            for name, path, full_page in PAGES:
                response = page.goto(base_url + path, wait_until="load")
                if response is None or response.status != 200:
                    status = None if response is None else response.status
                    raise RuntimeError(f"{base_url + path} answered {status}, not 200")
                target = output / name
                page.screenshot(path=str(target), full_page=full_page)
                saved.append(target)
        finally:
            browser.close()
    return saved


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"folder for the PNG files (default: {DEFAULT_OUTPUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    executable = find_chromium()
    if executable is None:
        print(f"screenshots: no Chromium found; {INSTALL_HINT}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="featurelite-screenshots-") as tmp:
        store = Path(tmp) / "shop.duckdb"
        build_store(store)
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        with open(Path(tmp) / "server.log", "w+", encoding="utf-8") as log, \
                running(ui_command(store, port), base_url + "/ui/", log, env=server_env()):
            for path in take_screenshots(base_url, args.output, executable):
                print(f"saved {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
