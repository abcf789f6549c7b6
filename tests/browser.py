"""Headless Chromium for the browser tests: finding it (or failing with the fix), and the
store, server and browser settings shared with ``scripts/screenshots.py`` (loaded from
there, so the docs' screenshots and the tests see the same store)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshots.py"
#: Set to 1 to skip the browser tests on purpose (never done by CI, which installs Chromium).
SKIP_ENV = "FEATURELITE_SKIP_BROWSER"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("featurelite_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None, SCRIPT
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


#: ``scripts/screenshots.py``: build_store, running, ui_command, launch_chromium, ...
shots = _load_script()


def require_chromium() -> str:
    """The Chromium binary for Playwright to drive. Without one (or without Playwright) the
    test fails and says how to install it; it is skipped only when ``$FEATURELITE_SKIP_BROWSER``
    is 1."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"browser tests skipped: ${SKIP_ENV}=1")
    try:
        import playwright.sync_api  # noqa: F401 - only checking it is installed
    except ImportError:
        pytest.fail(f"the browser tests need Playwright: {shots.INSTALL_HINT} (or set {SKIP_ENV}=1 to skip them)",
                    pytrace=False)
    executable = shots.find_chromium()
    if executable is None:
        where = os.environ.get(shots.CHROMIUM_ENV) or shots.CHROMIUM
        pytest.fail(f"the browser tests need Chromium and found none at {where}: {shots.INSTALL_HINT} "
                    f"(or set {SKIP_ENV}=1 to skip them)", pytrace=False)
    return str(executable)
