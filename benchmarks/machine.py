"""Describe the machine and software a run happened on."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import numba
import numpy as np
import pyarrow as pa

import featurelite

__all__ = ["describe", "load", "rss_bytes", "source"]


def _proc_field(path: str, field: str) -> str | None:
    """The value of ``field: value`` in a /proc text file (Linux), if present."""
    try:
        text = Path(path).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return None


def _memory_bytes() -> int | None:
    total = _proc_field("/proc/meminfo", "MemTotal")  # "24684092 kB"
    return None if total is None else int(total.split()[0]) * 1024


def rss_bytes() -> int | None:
    """Resident set size of this process (Linux), or None."""
    rss = _proc_field("/proc/self/status", "VmRSS")
    return None if rss is None else int(rss.split()[0]) * 1024


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process (Linux ``VmHWM``), or None.

    Not ``getrusage().ru_maxrss``: Linux carries that over ``execve`` from the process that
    forked, so a child started by a large benchmark process would report the parent's peak."""
    peak = _proc_field("/proc/self/status", "VmHWM")
    return None if peak is None else int(peak.split()[0]) * 1024


def describe() -> dict[str, Any]:
    """Cores, memory, CPU model, OS and the versions of everything measured."""
    con = duckdb.connect()
    try:
        ((threads,),) = con.execute("SELECT current_setting('threads')").fetchall()
    finally:
        con.close()
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "featurelite": featurelite.__version__,
        "duckdb": duckdb.__version__,
        "duckdb_threads": int(threads),
        "pyarrow": pa.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def load() -> dict[str, Any]:
    """How busy the machine is: load averages and CPU pressure (share of time some task
    waited for a CPU, Linux PSI), so a noisy run shows as one."""
    pressure = None
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0].split()
        pressure = {k: float(v) for k, v in (field.split("=") for field in some[1:4])}
    except (OSError, IndexError, ValueError):
        pass
    return {"loadavg": list(os.getloadavg()), "cpu_pressure_pct": pressure}


def source() -> dict[str, Any]:
    """Which featurelite code was measured: git revision, whether the package folder has
    uncommitted changes, and a hash of its sources."""
    package = Path(featurelite.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())

    def git(*args: str) -> str | None:
        try:
            return subprocess.run(
                ["git", *args], cwd=package, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None

    status = git("status", "--porcelain", "--", ".")
    return {
        "git_revision": git("rev-parse", "HEAD"),
        "package_modified": None if status is None else bool(status),
        "package_sha256": digest.hexdigest()[:16],
    }
