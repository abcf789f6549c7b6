"""Waiting for a `featurelite serve` subprocess to answer, shared by the server tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


def wait_until_healthy(url: str, proc: subprocess.Popen, output: Callable[[], str], *, timeout: float = 60) -> None:
    """Return once ``url``/health answers 200; if the process exits or ``timeout`` passes
    first, kill it and fail with the end of its ``output()``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the server did not start: {output()[-3000:]}")
        time.sleep(0.1)
