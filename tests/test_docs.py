"""Every ```python block in README.md and docs/*.md runs, so the docs cannot rot.

Blocks of one page run in order in one shared namespace, in a fresh temporary directory.
A block whose fence reads ```python no-run is shown but not run.
"""

from __future__ import annotations

import linecache
import re
import textwrap
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

import featurelite as fl

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]

# An opening fence (optionally indented) whose info string starts with "python", the code,
# and the closing fence at the same indentation.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)```[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


@dataclass(frozen=True)
class Block:
    number: int  #: 1-based, counting every python block of the page
    line: int  #: line of the opening fence
    code: str
    run: bool


def python_blocks(text: str) -> list[Block]:
    """The ```python blocks of a Markdown text, in order."""
    blocks = []
    for number, match in enumerate(_FENCE.finditer(text), start=1):
        info = match.group("info").split()
        blocks.append(
            Block(
                number=number,
                line=text.count("\n", 0, match.start()) + 1,
                code=textwrap.dedent(match.group("code")),
                run="no-run" not in info,
            )
        )
    return blocks


def test_python_blocks_are_found() -> None:
    text = (
        "# Title\n\n```python\nx = 1\n```\n\ntext\n\n```bash\nls\n```\n\n"
        "```python no-run\nraise SystemExit\n```\n\n- item\n\n  ```python\n  y = x + 1\n  ```\n"
    )
    blocks = python_blocks(text)
    assert [(b.number, b.line, b.code, b.run) for b in blocks] == [
        (1, 3, "x = 1\n", True),
        (2, 13, "raise SystemExit\n", False),
        (3, 19, "y = x + 1\n", True),
    ]


def test_docs_pages_exist() -> None:
    for page in ("index.md", "quickstart.md", "concepts.md", "python-api.md"):
        assert (ROOT / "docs" / page).is_file(), page
    assert python_blocks((ROOT / "docs" / "quickstart.md").read_text(encoding="utf-8"))


def test_python_api_page_covers_all_public_names() -> None:
    text = (ROOT / "docs" / "python-api.md").read_text(encoding="utf-8")
    missing = [name for name in fl.__all__ if f"`{name}" not in text]
    assert not missing, f"docs/python-api.md does not mention {missing}"


@pytest.mark.parametrize("page", PAGES)
def test_page_code_runs(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / page
    if not path.is_file():
        pytest.skip(f"{page} does not exist")
    blocks = [b for b in python_blocks(path.read_text(encoding="utf-8")) if b.run]
    if not blocks:
        pytest.skip(f"{page} has no python blocks to run")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    failure = None
    try:
        for block in blocks:
            try:
                filename = f"{page} block {block.number}"
                # Register the block as a source file, as Jupyter does for cells, so that
                # featurizers defined in the docs have source code to store.
                linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
                exec(compile(block.code, filename, "exec"), namespace)  # noqa: S102 - the docs' own code
            except Exception as exc:  # noqa: BLE001 - reported below with the page and block
                details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
                failure = (
                    f"{page} block {block.number} (line {block.line}) failed: "
                    f"{type(exc).__name__}: {exc}\n\n{details}"
                )
                break
    finally:
        for value in namespace.values():
            if isinstance(value, fl.Store):
                value.close()
    if failure is not None:
        pytest.fail(failure, pytrace=False)
