"""A virtual environment with Feast, the peer of the side-by-side benchmark.

Feast is never a featurelite dependency: it goes into its own venv inside the benchmark
working folder, and :mod:`benchmarks.feast_driver` runs with that venv's interpreter.

    python -m benchmarks.feast_setup      # creates benchmarks/work/feast-venv, prints its python

A second venv, ``feast-spark-venv``, holds Feast with its Spark offline store (pyspark 4;
Feast caps pandas below 3, so it cannot share featurelite's venv either):
``ensure_feast_venv(root, spark=True)``, driven by :mod:`benchmarks.feast_spark_driver`.

:func:`ensure_feast_venv` creates the venv once and reuses it while it imports the pinned
Feast; installation is quiet unless pip fails, and then the tail of pip's output is raised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["FEAST_VERSION", "REQUIREMENTS", "SPARK_REQUIREMENTS", "ensure_feast_venv", "venv_python"]

FEAST_VERSION = "0.67.0"
#: What the venv holds: Feast with its DuckDB offline store (ibis), and the two libraries
#: the driver imports directly (Feast pulls them in anyway; named so the driver's needs
#: are explicit).
REQUIREMENTS: tuple[str, ...] = (f"feast[duckdb]=={FEAST_VERSION}", "pyarrow", "numpy")
VENV_NAME = "feast-venv"
#: The Spark venv: Feast's Spark offline store (its ``spark`` extra requires pyspark 4).
SPARK_REQUIREMENTS: tuple[str, ...] = (f"feast[spark]=={FEAST_VERSION}", "pyspark>=4.0,<5", "pyarrow", "numpy")
SPARK_VENV_NAME = "feast-spark-venv"
#: Written after a successful install; holds the requirements it satisfied.
_MARKER = "featurelite-feast-setup.txt"
#: What a working venv must be able to do.
_PROBE = (
    "import feast, pyarrow, numpy, pandas, duckdb, ibis, sqlite3; "
    f"assert feast.__version__ == {FEAST_VERSION!r}, feast.__version__"
)
_SPARK_PROBE = (
    "import feast, pyarrow, pyspark; "
    "from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource; "
    f"assert feast.__version__ == {FEAST_VERSION!r}, feast.__version__"
)


def venv_python(venv: Path) -> Path:
    """The interpreter of the venv at ``venv``."""
    if os.name == "nt":  # pragma: no cover - the benchmarks run on Linux
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _run(args: list[str], what: str, timeout: float) -> None:
    # pip's own output goes to a pipe: quiet on success, its tail in the error on failure.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}
    try:
        proc = subprocess.run(
            args, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode(errors="replace")
        raise RuntimeError(f"{what} timed out after {timeout:.0f} s; last output:\n{out[-4000:]}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}); last output:\n{proc.stdout[-4000:]}")


def _works(python: Path, probe: str = _PROBE) -> bool:
    if not python.exists():
        return False
    try:
        proc = subprocess.run(
            [str(python), "-c", probe], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=300, env={**os.environ, "PYTHONNOUSERSITE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def ensure_feast_venv(root: Path, *, spark: bool = False) -> Path:
    """Create (once) a venv at ``root / "feast-venv"`` with Feast and return its python
    (``spark``: ``root / "feast-spark-venv"`` with Feast's Spark offline store).

    A venv already there is reused when it was installed by this function with the same
    requirements and still imports them; otherwise it is removed and made anew with the
    current interpreter (``sys.executable -m venv``) and that venv's pip.
    """
    root = Path(root)
    venv = root / (SPARK_VENV_NAME if spark else VENV_NAME)
    requirements = SPARK_REQUIREMENTS if spark else REQUIREMENTS
    probe = _SPARK_PROBE if spark else _PROBE
    python = venv_python(venv)
    marker = venv / _MARKER
    wanted = "\n".join(requirements) + "\n"
    if marker.exists() and marker.read_text() == wanted and _works(python, probe):
        return python
    if venv.exists():
        shutil.rmtree(venv)
    root.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "venv", str(venv)], f"creating the venv {venv}", timeout=600)
    _run(
        [str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"],
        "upgrading pip in the Feast venv", timeout=900,
    )
    _run(
        [str(python), "-m", "pip", "install", "--quiet", *requirements],
        f"installing {' '.join(requirements)} into {venv}", timeout=3600,
    )
    if not _works(python, probe):
        raise RuntimeError(f"the Feast venv {venv} was installed but cannot import Feast {FEAST_VERSION}: {probe}")
    marker.write_text(wanted)
    return python


def main() -> int:
    from .config import WORK_DIR

    print(ensure_feast_venv(WORK_DIR))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
