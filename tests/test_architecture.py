"""Import contracts: the arrows between featurelite's modules point the way the guide draws them.

A small AST pass instead of import-linter (kept dependency-free, and some contracts are not about
imports alone): every module under featurelite/ is parsed, and every import is an edge, wherever
it is written: at module level, inside a function (lazy imports), under ``if TYPE_CHECKING:``, and
``importlib.import_module("...")`` with a constant name. An edge remembers its line and whether it
runs at import time (module level, not under TYPE_CHECKING), which the transitive contracts use.

One test per contract; docs/architecture.md draws what they keep true. A failure names the
offending module, line and import.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import featurelite

PACKAGE = "featurelite"
ROOT = Path(featurelite.__file__).resolve().parent


@dataclass(frozen=True)
class Edge:
    source: str  # featurelite module, short name ("store", "__init__", "__main__")
    target: str  # featurelite module (short name) or an outside top-level package ("click")
    internal: bool  # target is a featurelite module
    line: int
    function_level: bool  # inside a def: runs when called, not on import
    type_checking: bool  # under `if TYPE_CHECKING:`: never runs

    @property
    def at_import_time(self) -> bool:
        return not self.function_level and not self.type_checking

    def __str__(self) -> str:
        where = " (inside a function)" if self.function_level else ""
        where += " (under TYPE_CHECKING)" if self.type_checking else ""
        return f"featurelite/{self.source}.py:{self.line} imports {self.target}{where}"


@dataclass(frozen=True)
class PrivateAccess:
    module: str
    line: int
    expression: str

    def __str__(self) -> str:
        return f"featurelite/{self.module}.py:{self.line} reaches into a private attribute: {self.expression}"


@cache
def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        name = ".".join(relative.parts)
        found[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_internal(dotted: str) -> str | None:
    """'featurelite.db.x' -> 'db' (the longest prefix that is a module); 'featurelite' -> '__init__'."""
    if dotted == PACKAGE:
        return "__init__"
    if not dotted.startswith(PACKAGE + "."):
        return None
    parts = dotted[len(PACKAGE) + 1 :].split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules():
            return candidate
    return "__init__"


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.edges: list[Edge] = []
        self.imported_names: set[str] = set()  # names bound by import statements (modules, mostly)
        self._function_depth = 0
        self._type_checking_depth = 0

    def _add(self, dotted: str, line: int) -> None:
        internal = _resolve_internal(dotted)
        edge = Edge(
            source=self.module,
            target=internal if internal is not None else dotted.split(".")[0],
            internal=internal is not None,
            line=line,
            function_level=self._function_depth > 0,
            type_checking=self._type_checking_depth > 0,
        )
        if edge not in self.edges:  # `from .x import a, b` is one edge
            self.edges.append(edge)

    def _absolute(self, module: str | None, level: int) -> str:
        if level == 0:
            return module or ""
        package = [PACKAGE, *self.module.split(".")[:-1]]  # flat today; sub-packages would still resolve
        if self.module == "__init__":
            package = [PACKAGE]
        base = package[: len(package) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function_depth += 1
        self.generic_visit(node)
        self._function_depth -= 1

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking_depth += 1
            for child in node.body:
                self.visit(child)
            self._type_checking_depth -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)
            self.imported_names.add(alias.asname or alias.name.split(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = self._absolute(node.module, node.level)
        for alias in node.names:
            self.imported_names.add(alias.asname or alias.name)
            # `from featurelite import offline` imports the submodule; `from .store import Store` the module.
            as_module = f"{base}.{alias.name}"
            if _resolve_internal(base) is not None and as_module[len(PACKAGE) + 1 :] in modules():
                self._add(as_module, node.lineno)
            else:
                self._add(base, node.lineno)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        is_import_module = (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
            isinstance(func, ast.Name) and func.id in {"import_module", "__import__"}
        )
        if is_import_module and node.args and isinstance(node.args[0], ast.Constant):
            name = node.args[0].value
            if isinstance(name, str):
                if name.startswith("."):  # import_module(".server", __package__)
                    level = len(name) - len(name.lstrip("."))
                    name = self._absolute(name.lstrip(".") or None, level)
                self._add(name, node.lineno)
        self.generic_visit(node)


@cache
def _collected() -> dict[str, _Collector]:
    result = {}
    for name, tree in modules().items():
        collector = _Collector(name)
        collector.visit(tree)
        result[name] = collector
    return result


def edges() -> list[Edge]:
    return [edge for collector in _collected().values() for edge in collector.edges]


def internal_edges(source: str | None = None) -> list[Edge]:
    return [e for e in edges() if e.internal and e.target != e.source and (source is None or e.source == source)]


def path_to(
    start: str, goal: Callable[[str], bool], follow: Callable[[Edge], bool] = lambda e: True
) -> list[Edge] | None:
    """The shortest chain of internal imports from ``start`` to a module satisfying ``goal``."""
    seen = {start}
    frontier: list[tuple[str, list[Edge]]] = [(start, [])]
    while frontier:
        next_frontier = []
        for module, chain in frontier:
            for edge in internal_edges(module):
                if not follow(edge) or edge.target in seen:
                    continue
                if goal(edge.target):
                    return [*chain, edge]
                seen.add(edge.target)
                next_frontier.append((edge.target, [*chain, edge]))
        frontier = next_frontier
    return None


def routes(start: str, target: str) -> list[list[Edge]]:
    """One chain per import of ``start`` that leads to ``target`` (so every route is named, not
    just the shortest: cutting one still leaves the others visible)."""
    found = []
    for first in internal_edges(start):
        if first.target == target:
            found.append([first])
        elif first.target != start:
            rest = path_to(first.target, lambda m: m == target, follow=lambda e: e.source != start)
            if rest:
                found.append([first, *rest])
    return found


def _chain(chain: Iterable[Edge]) -> str:
    return "; ".join(str(e) for e in chain)


def _is_adapter(module: str) -> bool:
    # `ui*`: the web UI (pages and their charts) reads the store through its public API only.
    return module.split(".")[-1].startswith(("server", "cli", "http", "mlflow", "ui"))


# -- the contracts ------------------------------------------------------------------------------


def contract_types_and_errors_are_leaves() -> list[str]:
    """`types` and `errors` import no other featurelite module (types may import errors)."""
    allowed = {"types": {"errors"}, "errors": set()}
    return [
        f"{e}: `{e.source}` must not import other featurelite modules"
        for source, ok in allowed.items()
        for e in internal_edges(source)
        if e.target not in ok
    ]


def contract_offline_and_online_are_independent() -> list[str]:
    """`offline` and `online` never import each other, directly or through another module."""
    problems = []
    for a, b in (("offline", "online"), ("online", "offline")):
        problems.extend(f"`{a}` reaches `{b}`: {_chain(chain)}" for chain in routes(a, b))
    return problems


def contract_layout_does_not_import_featurizer() -> list[str]:
    """`layout` does not import `featurizer`, not even for types, nor anything that brings it in
    when `layout` is imported. (A type-only import of `definitions`, to name the view's type,
    never runs; what runs kernels at ingest is `writes`, which is allowed to.)"""
    return [
        f"`layout` reaches `featurizer`: {_chain(chain)}"
        for chain in routes("layout", "featurizer")
        if len(chain) == 1 or not chain[0].type_checking
    ]


def contract_only_main_and_cli_import_the_entry_points() -> list[str]:
    """Nothing imports `cli` or `server`, except `__main__` (-> cli) and cli's lazy import of server."""
    allowed = {("__main__", "cli"): False, ("cli", "server"): True}  # (source, target): must be lazy
    problems = []
    for e in internal_edges():
        if e.target not in {"cli", "server"}:
            continue
        key = (e.source, e.target)
        if key not in allowed:
            problems.append(f"{e}: only __main__ imports cli, and only cli imports server (lazily)")
        elif allowed[key] and not e.function_level:
            problems.append(f"{e}: cli must import server lazily (inside `serve`), so the CLI works without it")
    return problems


FORBIDDEN_FOR_ADAPTERS = {"db", "online", "offline", "layout", "registry", "retrieval", "keyindex"}


def contract_adapters_use_only_the_public_store_api() -> list[str]:
    """cli/server/http*/mlflow/ui modules import none of the storage internals and touch no private attribute."""
    problems = [
        f"{e}: the CLI, the server and the MLflow model use only the public Store API"
        for e in internal_edges()
        if _is_adapter(e.source) and e.target in FORBIDDEN_FOR_ADAPTERS
    ]
    for module, tree in modules().items():
        if _is_adapter(module):
            problems.extend(str(access) for access in private_accesses(module, tree))
    return problems


@cache
def store_private_names() -> frozenset[str]:
    """The private members of ``Store``: its ``_methods`` and the ``self._x`` it assigns."""
    names = set()
    for node in ast.walk(modules()["store"]):
        if isinstance(node, ast.ClassDef) and node.name == "Store":
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)) and inner.name.startswith("_"):
                    names.add(inner.name)
                targets = inner.targets if isinstance(inner, ast.Assign) else [getattr(inner, "target", None)]
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                        and target.attr.startswith("_")
                    ):
                        names.add(target.attr)
    return frozenset(name for name in names if not (name.startswith("__") and name.endswith("__")))


def private_accesses(module: str, tree: ast.Module) -> list[PrivateAccess]:
    """``x._private`` on a Store from outside it: x is not self/cls, and x looks like a store (its
    text says "store") or ``_private`` is one of Store's private members. An AST cannot know types,
    so a handler's ``handler._mark`` is not flagged, and ``s._index`` on a Store is."""
    private = store_private_names()
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        receiver = node.value
        if isinstance(receiver, ast.Name) and receiver.id in {"self", "cls"}:
            continue
        if "store" in ast.unparse(receiver).lower() or name in private:
            found.append(PrivateAccess(module, node.lineno, ast.unparse(node)))
    return found


def contract_featurizer_and_verification_no_cycle() -> list[str]:
    """`featurizer` and `verification` import each other in one direction at most."""
    there = [e for e in internal_edges("featurizer") if e.target == "verification"]
    back = [e for e in internal_edges("verification") if e.target == "featurizer"]
    if there and back:
        return [f"both directions: {_chain(there)}; and {_chain(back)}"]
    return []


def contract_hypothesis_only_lazily_in_verification() -> list[str]:
    """`hypothesis` is imported only inside `verification`, at function level."""
    return [
        f"{e}: hypothesis belongs in verification, imported inside the function that needs it"
        for e in edges()
        if not e.internal
        and e.target == "hypothesis"
        and not (e.source == "verification" and e.function_level and not e.type_checking)
    ]


def contract_store_knows_no_cli_or_http() -> list[str]:
    """`store` does not import click, starlette or uvicorn (nor does anything it imports on import)."""
    banned = {"click", "starlette", "uvicorn"}
    problems = [f"{e}: the Store knows nothing of the CLI or HTTP" for e in edges() if e.source == "store" and e.target in banned]
    for module in sorted(_reachable_at_import_time("store") - {"store"}):
        problems.extend(
            f"{e}: imported by `store` (at import time), so importing the Store would import {e.target}"
            for e in edges()
            if e.source == module and e.target in banned and e.at_import_time
        )
    return problems


def contract_rules_and_plans_run_no_sql() -> list[str]:
    """The rules (`rules`), the planner (`planning`), the online index (`onlineindex`) and the
    pure helpers of pinning and manifests (`compatibility`, `references`, `manifest`, `digest`)
    do no I/O: they import neither duckdb nor the modules that run SQL (`db` only for quoting
    names)."""
    sql = {"offline", "online", "registry", "writes", "historical", "lookup", "store", "connection"}
    problems = []
    for module in ("rules", "planning", "onlineindex", "compatibility", "references", "manifest", "digest"):
        for e in edges():
            if e.source != module or e.type_checking:
                continue
            if e.target == "duckdb" or (e.internal and e.target in sql):
                problems.append(f"{e}: `{module}` is pure; SQL belongs to the modules that run it")
    return problems


def contract_one_home_per_rule() -> list[str]:
    """The rules that decide a value are used from their one home: nothing outside `rules`
    spells the winner order's SQL (``epoch_us(...) * 2**64``, ``'-infinity'``) or the ttl
    arithmetic (``to_microseconds``), and nothing outside `rules` and `onlineindex` compares
    the order's terms in NumPy."""
    spellings = {"'-infinity'": "rules", "18446744073709551616": "rules", "to_microseconds(": "rules"}
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for spelling, home in spellings.items():
                if spelling in line and module != home:
                    problems.append(f"featurelite/{module}.py:{number} spells {spelling!r}, a rule whose home is `{home}`")
    return problems


def _reachable_at_import_time(start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for e in internal_edges(todo.pop()):
            if e.at_import_time and e.target not in seen:
                seen.add(e.target)
                todo.append(e.target)
    return seen


CONTRACTS = [
    pytest.param(contract_types_and_errors_are_leaves, id="types-and-errors-are-leaves"),
    pytest.param(contract_offline_and_online_are_independent, id="offline-online-independent"),
    pytest.param(contract_layout_does_not_import_featurizer, id="layout-not-featurizer"),
    pytest.param(contract_only_main_and_cli_import_the_entry_points, id="entry-points-imported-only-by-main-and-cli"),
    pytest.param(contract_adapters_use_only_the_public_store_api, id="cli-and-server-use-only-public-store-api"),
    pytest.param(contract_featurizer_and_verification_no_cycle, id="featurizer-verification-one-direction"),
    pytest.param(contract_hypothesis_only_lazily_in_verification, id="hypothesis-only-lazily-in-verification"),
    pytest.param(contract_store_knows_no_cli_or_http, id="store-knows-no-cli-or-http"),
    pytest.param(contract_rules_and_plans_run_no_sql, id="rules-and-plans-run-no-sql"),
    pytest.param(contract_one_home_per_rule, id="one-home-per-rule"),
]


@pytest.mark.parametrize("contract", CONTRACTS)
def test_import_contract(contract: Callable[[], list[str]]) -> None:
    problems = contract()
    assert not problems, f"{contract.__doc__}\n" + "\n".join(f"  - {p}" for p in problems)


# -- the checker itself: a contract test that cannot fail is a defect --------------------------------


def test_the_graph_sees_every_kind_of_import() -> None:
    by_pair = {(e.source, e.target): e for e in edges()}
    assert by_pair[("__init__", "store")].at_import_time  # from .store import Store
    assert by_pair[("store", "offline")].at_import_time  # from . import arguments, offline, online
    assert by_pair[("__main__", "cli")].internal
    assert by_pair[("cli", "server")].function_level  # importlib.import_module(".server", __package__)
    assert ("verification", "hypothesis") in by_pair
    assert {"store", "cli", "server", "types", "errors", "offline", "online", "layout"} <= set(modules())


def test_the_checks_catch_a_violation() -> None:
    member = sorted(store_private_names())[0]  # a real private member of Store
    source = (
        "import featurelite.db\n"
        "from . import online as on\n"
        "from .registry import Registry\n"
        "def f(store, self, s, handler):\n"
        "    import hypothesis\n"
        f"    return store._index, self.store._x, self._fine, on.__name__, s.{member}, handler._mark\n"
    )
    tree = ast.parse(source)
    collector = _Collector("server")
    collector.visit(tree)
    targets = {(e.target, e.function_level) for e in collector.edges}
    assert {("db", False), ("online", False), ("registry", False), ("hypothesis", True)} <= targets
    modules()["__probe_server"] = tree
    _collected()["__probe_server"] = collector
    try:
        flagged = {a.expression for a in private_accesses("__probe_server", tree)}
    finally:
        del modules()["__probe_server"]
        del _collected()["__probe_server"]
    assert flagged == {"store._index", "self.store._x", f"s.{member}"}
