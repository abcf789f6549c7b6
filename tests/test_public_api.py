"""The public surface is pinned: ``featurelite.__all__`` is exactly the package's public names,
sorted (the httpx habit: https://github.com/encode/httpx/blob/master/tests/test_exported_members.py).

Every non-underscore name bound in the ``featurelite`` namespace must be in ``__all__``, and
``__all__`` names nothing else (``__version__`` is the one dunder it carries).

Submodules: importing ``featurelite.x`` binds ``x`` in the package namespace, so which modules
show up in ``vars(featurelite)`` depends on what else has been imported. They are not part of
the surface ``__all__`` describes (``from featurelite import *`` must not hand out ``db`` or
``online``), so module objects that are featurelite's own submodules are left out of the
comparison. Any other module bound in the namespace (``import os`` in ``__init__.py``) is a leak
and counts as a public name, so it fails the test.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import featurelite

INCLUDED_DUNDERS = {"__version__"}


def _isort_key(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps ``__all__`` in: SCREAMING_CASE, then CamelCase, then the rest."""
    if len(name) > 1 and name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def _own_submodule(value: object) -> bool:
    return isinstance(value, types.ModuleType) and value.__name__.startswith("featurelite.")


def _public_names() -> set[str]:
    return {
        name
        for name, value in vars(featurelite).items()
        if (not name.startswith("_") or name in INCLUDED_DUNDERS) and not _own_submodule(value)
    }


@pytest.fixture(scope="module", autouse=True)
def _every_submodule_imported() -> None:
    """Import every submodule first, so the answer does not depend on which tests ran before."""
    for info in pkgutil.walk_packages(featurelite.__path__, "featurelite."):
        if info.name not in {"featurelite.__main__", "featurelite.demo"}:  # both run on import
            importlib.import_module(info.name)


def test_all_is_sorted() -> None:
    assert featurelite.__all__ == sorted(featurelite.__all__, key=_isort_key), "sort it with `ruff check --fix`"


def test_all_has_no_duplicates() -> None:
    assert len(featurelite.__all__) == len(set(featurelite.__all__))


def test_every_public_name_is_exported() -> None:
    missing = _public_names() - set(featurelite.__all__)
    assert not missing, f"public names bound in featurelite but not in __all__: {sorted(missing)}"


def test_all_names_only_public_names() -> None:
    extra = set(featurelite.__all__) - _public_names()
    assert not extra, f"__all__ names what featurelite does not bind (or binds as a submodule): {sorted(extra)}"


def test_every_exported_name_resolves() -> None:
    for name in featurelite.__all__:
        assert getattr(featurelite, name) is not None, name
