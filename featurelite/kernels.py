"""Compiling a featurizer's source into Numba kernels, cached on disk.

A featurizer is compiled from its *stored source*, never from the live function object:
the source (plus the modules and constants it reads) is written once to a small module
file named by its content hash, imported, and compiled with ``numba.njit(cache=True)``.
So the process that defined the featurizer, a server that only has the store file and a
teammate's notebook all compile the same text, and every process after the first loads
the machine code from Numba's on-disk cache instead of compiling it again (about 1 s per
function saved).

Two kernels come out of one module:

* ``kernel(x0, x1, ...)``: the function itself, compiled for the declared types; the
  per-request path calls it;
* ``loop(...)``: a generated branch-free loop that calls ``kernel`` on every row of NumPy
  columns (strings as Arrow's UTF-8 buffer plus offsets); the batch path calls it. It is
  compiled on first use, so a process that only serves requests never pays for it.

The cache folder is ``$FEATURELITE_CACHE_DIR``, else ``$XDG_CACHE_HOME/featurelite``, else
``~/.cache/featurelite``; when none is writable, a folder under the system temp dir.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import math
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from .types import DTYPE_OF

__all__ = ["CompiledKernels", "cache_dir", "compile_kernels"]

#: Bump when the generated module text changes meaning, so old cache entries are unused.
_KERNEL_FORMAT = 4
_lock = threading.Lock()


def cache_dir() -> Path:
    """The folder holding generated kernel modules and Numba's cache of them."""
    configured = os.environ.get("FEATURELITE_CACHE_DIR")
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "featurelite"


def _writable_dir() -> Path:
    for folder in (
        cache_dir(),
        Path(tempfile.gettempdir()) / f"featurelite-{os.getuid() if hasattr(os, 'getuid') else 'user'}",
    ):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / f".probe-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
            return folder
        except OSError:
            continue
    raise OSError("no writable folder for featurelite's kernel cache; set FEATURELITE_CACHE_DIR")


def _constant(value: Any) -> str:
    """A Python literal for a constant, exact for every float (nan, inf, -0.0 included)."""
    if isinstance(value, float):
        return f"float.fromhex({value.hex()!r})" if math.isfinite(value) else f"float({str(value)!r})"
    return repr(value)


def function_name(source: str) -> str:
    """The name of the last top-level function ``source`` defines."""
    names = [node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)]
    if not names:
        raise ValueError("the source defines no function")
    return names[-1]


def _loop_source(inputs: Sequence[str], outputs: Sequence[str]) -> str:
    """``_fl_loop``: ``_fl_kernel`` applied to every row. A string input arrives as
    (offsets, UTF-8 bytes); a string output is written as UTF-8 into a growable buffer plus
    offsets, and the loop returns the final buffers. ``v{j}[i]`` records whether output
    ``j`` of row ``i`` is a value (a function may return None, or Numba may type the
    result as optional)."""
    params: list[str] = []
    args: list[str] = []
    for i, dtype in enumerate(inputs):
        if dtype == "string":
            params += [f"x{i}_off", f"x{i}_data"]
            args.append(f"_fl.decode_utf8(x{i}_data, x{i}_off[i], x{i}_off[i + 1])")
        else:
            params.append(f"x{i}")
            args.append(f"x{i}[i]")
    several = len(outputs) > 1
    store: list[str] = []
    returns: list[str] = []
    for j, dtype in enumerate(outputs):
        value = f"r[{j}]" if several else "r"
        params.append(f"v{j}")
        if dtype == "string":
            params += [f"o{j}_off", f"o{j}_data"]
            write = [f"o{j}_data, p{j}  = _fl.put_utf8({value}, o{j}_data, p{j})"]
            returns.append(f"o{j}_data[:p{j}]")
        else:
            params.append(f"o{j}")
            write = [f"o{j}[i] = {value}"]
        store += [f"if {value} is None:", f"    v{j}[i] = False", "else:", f"    v{j}[i] = True"]
        store += [f"    {line}" for line in write]
        if dtype == "string":
            store.append(f"o{j}_off[i + 1] = p{j}")
    lines = [f"def _fl_loop({', '.join(params)}):"]
    lines += [f"    p{j} = 0" for j, d in enumerate(outputs) if d == "string"]
    lines.append("    for i in range(v0.shape[0]):")
    lines.append(f"        r = _fl_kernel({', '.join(args)})")
    lines += [f"        {line}" for line in store]
    lines.append(f"    return ({', '.join(returns)}{',' if len(returns) == 1 else ''})" if returns else "    return 0")
    return "\n".join(lines) + "\n"


def _cast(output: str) -> str:
    """The name of the helper casting a result to dtype ``output``."""
    cast = DTYPE_OF[output].cast
    if cast is None:
        raise ValueError(f"a featurizer cannot return dtype {output!r}")
    return cast


def _typed_source(arity: int, outputs: Sequence[str]) -> str:
    """``_fl_typed``: the user's function with its results cast to the declared types.
    This is the kernel both paths call."""
    params = ", ".join(f"x{i}" for i in range(arity))
    lines = [f"def _fl_typed({params}):", f"    r = _fl_user({params})"]
    if len(outputs) == 1:
        lines.append(f"    return _fl.{_cast(outputs[0])}(r)")
    else:
        lines.append("    return (" + ", ".join(f"_fl.{_cast(d)}(r[{j}])" for j, d in enumerate(outputs)) + ",)")
    return "\n".join(lines) + "\n"


def module_source(source: str, inputs: Sequence[str], outputs: Sequence[str], globals_spec: Mapping[str, Any]) -> str:
    """The text of the generated module: imports and constants the featurizer reads, its
    source, and the batch loop. Annotations stay unevaluated (they were read already)."""
    lines = [
        "# Generated by featurelite from a featurizer's stored source. Do not edit.",
        "from __future__ import annotations",
        "from featurelite import _kernel_support as _fl",
    ]
    for alias, module in sorted(globals_spec.get("modules", {}).items()):
        lines.append(f"import {module} as {alias}" if alias != module else f"import {module}")
    for name, value in sorted(globals_spec.get("constants", {}).items()):
        lines.append(f"{name} = {_constant(value)}")
    lines += ["", "", source.rstrip(), "", "", _typed_source(len(inputs), outputs), "", _loop_source(inputs, outputs)]
    return "\n".join(lines)


class CompiledKernels:
    """The per-request kernel (compiled now) and the batch loop (compiled on first use)."""

    def __init__(
        self, module: ModuleType, func_name: str, inputs: Sequence[str], outputs: Sequence[str],
        check: Callable[[Any], None] | None = None,
    ) -> None:
        import numba

        self._module = module
        self._cache = _can_cache(module)
        cache = self._cache

        def jit(func: Any) -> Any:
            return numba.njit(nogil=True, error_model="numpy", cache=cache)(func)

        self._jit = jit
        signature = tuple(DTYPE_OF[d].numba_type() for d in inputs)
        # No fastmath, NumPy's error model (x / 0 gives inf or nan, not an exception): the
        # kernel's result then depends only on its arguments.
        user = jit(getattr(module, func_name))
        user.compile(signature)  # for its return type; from the disk cache when it is there
        #: What Numba infers the function itself returns (before the casts).
        self.user_return_type = user.overloads[signature].signature.return_type
        if check is not None:
            check(self.user_return_type)
        module.__dict__["_fl_user"] = user  # read by _fl_typed when it compiles
        self.kernel = jit(module._fl_typed)
        self.kernel.compile(signature)
        self.kernel.disable_compile()  # another argument type fails instead of compiling a second kernel
        #: The compiled function without Numba's type dispatch: the per-request fast path.
        self.call = self.kernel.overloads[signature].entry_point
        self.return_type = self.kernel.overloads[signature].signature.return_type
        module.__dict__["_fl_kernel"] = self.kernel  # read by _fl_loop when it compiles
        self._loop: Any = None

    @property
    def loop(self) -> Any:
        if self._loop is None:
            with _lock:
                if self._loop is None:
                    self._loop = self._jit(self._module._fl_loop)
        return self._loop


def _can_cache(module: ModuleType) -> bool:
    folder = Path(module.__file__ or "").parent / "__pycache__"
    try:
        folder.mkdir(exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


#: Kernels compiled in this process, by generated module.
_COMPILED: dict[str, CompiledKernels] = {}


def compile_kernels(
    source: str, inputs: Sequence[str], outputs: Sequence[str], globals_spec: Mapping[str, Any],
    check: Callable[[Any], None] | None = None,
) -> CompiledKernels:
    """Write (once) and import the generated module for a featurizer, and compile it.

    ``check`` sees the return type Numba infers for the function, before the kernel that
    casts it to the declared types is compiled, and may raise. Raises numba's errors for a
    function it cannot compile and ``ValueError`` /
    ``SyntaxError`` / ``ImportError`` / ``NameError`` for source that does not load."""
    text = module_source(source, inputs, outputs, globals_spec)
    digest = hashlib.sha256(f"{_KERNEL_FORMAT}\n{text}".encode()).hexdigest()[:20]
    module_name = f"_featurelite_kernel_{digest}"
    compiled = _COMPILED.get(module_name)
    if compiled is not None:
        return compiled
    with _lock:
        module = sys.modules.get(module_name)
        if module is None:
            folder = _writable_dir() / "kernels"
            folder.mkdir(exist_ok=True)
            path = folder / f"{module_name}.py"
            if not path.exists() or path.read_text() != text:
                # Write then rename, so a concurrent process never imports half a file; the
                # file never changes afterwards, which keeps Numba's cache (keyed on the
                # file's time stamp) valid.
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(text)
                os.replace(tmp, path)
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            sys.modules[module_name] = module
    compiled = CompiledKernels(module, function_name(source), inputs, outputs, check)
    return _COMPILED.setdefault(module_name, compiled)
