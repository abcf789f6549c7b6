"""Measured figures quoted in prose pages come from the committed benchmark results, never
typed in by hand: every time in bold (``**27.9 s**``) or in a table cell of a page's
measured section is a figure of its results file, rounded as the page writes it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: (page, the section holding measured figures, the results file they come from)
PAGES = [("docs/scaling-out.md", "## How fast", "benchmarks/results/only-spark-full.json")]

_BOLD = re.compile(r"\*\*(\d[\d,]*(?:\.\d+)?) ?(s|ms|x)\b")
_CELL = re.compile(r"\|\s*(\d[\d,]*(?:\.\d+)?) ?(s|ms|x)\s*(?=\|)")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _numbers(value: Any) -> Iterator[float]:
    """Every number anywhere in a JSON document."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def _quoted(section: str) -> list[tuple[str, str]]:
    return [m.groups() for m in _BOLD.finditer(section)] + [m.groups() for m in _CELL.finditer(section)]


@pytest.mark.parametrize(("page", "heading", "source"), PAGES)
def test_every_quoted_figure_is_in_the_results_file(page: str, heading: str, source: str) -> None:
    section = _section((ROOT / page).read_text(encoding="utf-8"), heading)
    results = json.loads((ROOT / source).read_text(encoding="utf-8"))
    known = list(_numbers(results["workloads"]))
    quoted = _quoted(section)
    assert quoted, f"{page}: no figures found under {heading!r}"
    for text, unit in quoted:
        decimals = len(text.split(".")[1]) if "." in text else 0
        value = float(text.replace(",", ""))
        scale = 1000.0 if unit == "ms" else 1.0
        assert any(round(n * scale, decimals) == value for n in known), (
            f"{page}: {text} {unit} under {heading!r} is not a figure of {source}; run the benchmark and quote it"
        )


def test_the_check_finds_bold_figures_and_table_cells() -> None:
    text = ("## How fast\n\ntakes **27.9 s** and **0.50x**\n\n| rows | time |\n|---|---|\n| 1,000 | 12.4 s |\n\n"
            "## Next\n**1.0 s**")
    assert _quoted(_section(text, "## How fast")) == [("27.9", "s"), ("0.50", "x"), ("12.4", "s")]
