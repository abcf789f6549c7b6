"""``python -m benchmarks`` -> :func:`benchmarks.cli.main`."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
