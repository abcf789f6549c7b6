"""Featurizers: plain Python functions compiled once with Numba, run by the same compiled
kernel on whole columns (training, backfills) and on single requests (serving).

An :class:`featurelite.OnDemandFeatureView` binds featurizers to stored features and
request data; the store runs :meth:`Featurizer.run_batch` after a point-in-time join and
:meth:`Featurizer.run_one` per online request.

The null rule: an input that is null makes the output null, unless the function gives that
input a default value (``def f(x: float = 0.0)``), which then stands in for the null. Both
paths apply the rule the same way, before the kernel runs.

Imports NumPy and Numba only (plus the errors module).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
import struct
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FeaturizerError

__all__ = ["Featurizer", "FeaturizerError", "Mismatch", "featurizer"]

#: Python annotation -> (featurelite dtype, NumPy dtype of its column).
#: Featurizers compiled from stored specs in this process, by content hash of the spec.
_REBUILT: dict[str, Featurizer] = {}

_CONVERT: dict[str, Callable[[Any], Any]] = {"float64": float, "int64": int, "bool": bool}

_HINTS: dict[Any, tuple[str, type]] = {
    float: ("float64", np.float64),
    int: ("int64", np.int64),
    bool: ("bool", np.bool_),
}


@dataclass(frozen=True, eq=False)
class Featurizer:
    """A compiled featurizer. Build one with :func:`featurizer`."""

    name: str
    func: Callable[..., Any] = field(repr=False)
    inputs: tuple[tuple[str, str], ...]
    output: str
    defaults: Mapping[str, Any]
    source: str = field(repr=False)
    globals_spec: Mapping[str, Any] = field(repr=False, default_factory=dict)
    _scalar: Any = field(repr=False, default=None)
    _batch: Any = field(repr=False, default=None)
    _convert: tuple[Callable[[Any], Any], ...] = field(repr=False, default=())

    @property
    def version(self) -> str:
        """Content hash of the source and signature: changing the body makes a new version."""
        text = json.dumps(self.spec(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def spec(self) -> dict[str, Any]:
        """A JSON-ready description, enough to rebuild the featurizer in another process
        from the store file alone (source, signature, the modules and constants it uses)."""
        return {
            "name": self.name,
            "source": self.source,
            "inputs": [list(item) for item in self.inputs],
            "output": self.output,
            "defaults": dict(self.defaults),
            "globals": self.globals_spec,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Featurizer:
        """Compile a featurizer from :meth:`spec` output, without its defining module.

        Compiled featurizers are kept per process by content, so reopening a store or
        applying the same definitions again does not compile twice."""
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        cached = _REBUILT.get(key)
        if cached is None:
            cached = _REBUILT.setdefault(key, cls._rebuild(spec))
        return cached

    @classmethod
    def _rebuild(cls, spec: Mapping[str, Any]) -> Featurizer:
        if not spec.get("source"):
            raise FeaturizerError(
                f"featurizer {spec['name']!r} has no source code (defined in a REPL or by exec?)",
                featurizer=spec["name"],
            )
        namespace: dict[str, Any] = {}
        for alias, module in spec.get("globals", {}).get("modules", {}).items():
            namespace[alias] = importlib.import_module(module)
        namespace.update(spec.get("globals", {}).get("constants", {}))
        try:
            exec(compile(spec["source"], f"<featurizer {spec['name']}>", "exec"), namespace)  # noqa: S102
            func = namespace[spec["name"]] if spec["name"] in namespace else _last_function(namespace)
        except Exception as exc:  # noqa: BLE001 - any failure here means the stored source is unusable
            raise FeaturizerError(
                f"featurizer {spec['name']!r} could not be rebuilt from its stored source: {exc}",
                featurizer=spec["name"],
            ) from exc
        return _build(func, spec["name"], source=spec["source"], globals_spec=spec.get("globals", {}))

    def run_one(self, values: Mapping[str, Any]) -> Any:
        """The per-request path: one row of inputs (None for a null) -> output or None.

        Inputs are converted to the declared types first, so the compiled kernel is the
        same one the batch path runs (Numba never compiles another specialisation)."""
        return self.run_args([values[name] for name, _ in self.inputs])

    def run_args(self, args: Sequence[Any]) -> Any:
        """:meth:`run_one` with the inputs given in declaration order."""
        converted = []
        for (name, _), convert, value in zip(self.inputs, self._convert, args):
            if value is None:
                if name not in self.defaults:
                    return None
                value = self.defaults[name]
            converted.append(convert(value))
        return self._scalar(*converted)

    def verify(self, *, examples: int = 1000, seed: int = 0, samples: Mapping[str, np.ndarray] | None = None) -> Mismatch | None:
        """Run generated inputs through both paths and compare the results bit for bit.

        Inputs mix special values (NaN, +-inf, -0.0, subnormals, integer extremes), random
        values over the whole range, ``samples`` (e.g. stored history) and nulls. The batch
        is also run shifted and reversed, so a result that depends on position or batch
        length is caught too. Returns the first mismatch as a one-row counterexample, or
        None when the paths agree."""
        rng = np.random.default_rng(seed)
        columns = {
            name: _generated(dtype, examples, rng, None if samples is None else samples.get(name))
            for name, dtype in self.inputs
        }
        out, ok = self.run_batch(columns)
        order = np.arange(examples)[::-1]
        shifted = {
            name: (np.concatenate([values[:1], values[order]]), np.concatenate([valid[:1], valid[order]]))
            for name, (values, valid) in columns.items()
        }
        out2, ok2 = self.run_batch(shifted)
        for i in range(examples):
            row = [columns[name][0][i].item() if columns[name][1][i] else None for name, _ in self.inputs]
            single = self.run_args(row)
            batched = out[i].item() if ok[i] else None
            j = examples - i  # the same row in the shifted, reversed batch
            moved = out2[j].item() if ok2[j] else None
            if not (_same_bits(single, batched) and _same_bits(single, moved)):
                return Mismatch(self.name, dict(zip((n for n, _ in self.inputs), row)), batched, single, moved)
        return None

    def run_batch(self, columns: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """The batch path: ``{input: (values, valid)}`` -> (values, valid), one compiled loop
        calling the same kernel as :meth:`run_one` on every row."""
        arrays: list[np.ndarray] = []
        out_valid: np.ndarray | None = None
        n: int | None = None
        for name, dtype in self.inputs:
            values, valid = columns[name]
            values = np.ascontiguousarray(values, dtype=_numpy_dtype(dtype))
            valid = np.asarray(valid, dtype=np.bool_)
            if n is None:
                n = len(values)
            if len(values) != n or len(valid) != n:
                raise ValueError(f"featurizer {self.name!r}: input columns differ in length")
            if name in self.defaults:
                if not valid.all():  # the default stands in for a null
                    values = np.where(valid, values, np.asarray(self.defaults[name], dtype=values.dtype))
            else:  # a null input makes the output null
                out_valid = valid.copy() if out_valid is None else np.logical_and(out_valid, valid, out=out_valid)
            arrays.append(values)
        out: np.ndarray = np.empty(n or 0, dtype=_numpy_dtype(self.output))
        # Every row runs through the kernel, null or not (a null row's result is masked
        # out): a branch-free loop, and each row still depends on its own inputs only.
        self._batch(*arrays, out)
        return out, (np.ones(n or 0, dtype=np.bool_) if out_valid is None else out_valid)


@dataclass(frozen=True)
class Mismatch:
    """One input row on which the batch and per-request paths disagree."""

    featurizer: str
    inputs: Mapping[str, Any]
    batch: Any  #: the batch path's result for this row
    request: Any  #: the per-request path's result
    moved: Any  #: the batch path's result with the row at another position

    def __str__(self) -> str:
        return (
            f"featurizer {self.featurizer!r} on {dict(self.inputs)!r}: batch gives {_show_bits(self.batch)}, "
            f"per-request gives {_show_bits(self.request)}, batch at another position gives {_show_bits(self.moved)}"
        )


def _same_bits(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return type(a) is type(b) and a == b


def _show_bits(value: Any) -> str:
    if isinstance(value, float):
        return f"{value!r} (0x{struct.unpack('<Q', struct.pack('<d', value))[0]:016x})"
    return repr(value)


_SPECIAL = {
    "float64": [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 5e-324, -5e-324, 2.2250738585072014e-308,
                1.7976931348623157e308, -1.7976931348623157e308, 1.0, -1.0, 0.5, 3.0],
    "int64": [0, 1, -1, 2, -2, 2**63 - 1, -(2**63), 2**31 - 1, -(2**31)],
    "bool": [False, True],
}


def _generated(dtype: str, n: int, rng: np.random.Generator, sample: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` values for an input: specials, random over the type's range, samples; ~10% null."""
    kind = _numpy_dtype(dtype)
    special: np.ndarray = np.array(_SPECIAL[dtype], dtype=kind)
    random: np.ndarray
    if dtype == "float64":
        random = rng.standard_normal(n) * np.power(10.0, rng.integers(-300, 300, n))
    elif dtype == "int64":
        random = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
    else:
        random = rng.random(n) < 0.5
    choice = rng.integers(0, 3 if sample is not None and len(sample) else 2, n)
    values = np.where(choice == 0, special[rng.integers(0, len(special), n)], random.astype(kind))
    if sample is not None and len(sample):
        picked: np.ndarray = np.asarray(sample, dtype=kind)[rng.integers(0, len(sample), n)]
        values = np.where(choice == 2, picked, values)
    return np.ascontiguousarray(values, dtype=kind), rng.random(n) >= 0.1


def _numpy_dtype(dtype: str) -> type:
    return next(np_type for fl_type, np_type in _HINTS.values() if fl_type == dtype)


def _dtype_of(hint: Any, what: str, name: str) -> str:
    if hint not in _HINTS:
        raise FeaturizerError(
            f"featurizer {name!r}: {what} has type hint {hint!r}; use float, int or bool",
            featurizer=name,
        )
    return _HINTS[hint][0]


def _source(func: Callable[..., Any]) -> str:
    try:
        lines = inspect.getsource(func).splitlines()
    except (OSError, TypeError):
        return ""
    body = [line for line in textwrap.dedent("\n".join(lines)).splitlines()]
    while body and body[0].lstrip().startswith("@"):
        body.pop(0)  # the decorator is not part of what the function computes
    return "\n".join(body)


def _short_reason(message: str) -> str:
    """The informative lines of a Numba error: what failed and where, without colour codes
    or the pipeline chatter around them."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    lines = [line.strip() for line in plain.splitlines() if line.strip()]
    what = next((line for line in lines if not line.startswith(("Failed in", "File ", "During:", "<source"))), "")
    where = next((line.rstrip(":") for line in lines if line.startswith("File ")), "")
    return "; ".join(part for part in (what or (lines[0] if lines else "unknown reason"), where) if part)


def _batch_kernel(scalar: Any, inputs: tuple[tuple[str, str], ...], defaults: Mapping[str, Any]) -> Any:
    """Generate ``loop(x0, x1, ..., out)``: ``out[i] = kernel(x0[i], x1[i], ...)`` for every
    row. Nulls and defaults are settled before the loop (:meth:`Featurizer.run_batch`).
    Compiled on first use, so a process that only serves requests never pays for it."""
    import numba

    params = [f"x{i}" for i in range(len(inputs))]
    code = (
        f"def loop({', '.join(params + ['out'])}):\n"
        f"    for i in range(out.shape[0]):\n"
        f"        out[i] = kernel({', '.join(p + '[i]' for p in params)})\n"
    )
    env: dict[str, Any] = {"kernel": scalar}
    exec(compile(code, "<featurelite batch kernel>", "exec"), env)  # noqa: S102 - generated above
    return numba.njit(nogil=True, error_model="numpy")(env["loop"])


def featurizer(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Compile a plain Python function into a :class:`Featurizer`.

    Inputs and output come from the type hints (float, int, bool). The function is
    compiled with Numba in nopython mode, with NumPy's error model (division by zero gives
    inf or nan, not an exception) and without fastmath, so results do not depend on the
    batch; a function Numba cannot compile is refused here with a short reason.
    """

    def build(fn: Callable[..., Any]) -> Featurizer:
        return _build(fn, name or fn.__name__, source=_source(fn), globals_spec=_globals_spec(fn))

    return build(func) if func is not None else build


def _last_function(namespace: Mapping[str, Any]) -> Callable[..., Any]:
    functions = [v for v in namespace.values() if inspect.isfunction(v)]
    if not functions:
        raise ValueError("the source defines no function")
    return functions[-1]


def _globals_spec(fn: Callable[..., Any]) -> dict[str, Any]:
    """The modules and plain constants ``fn`` reads from its module, so it can be rebuilt
    from its source alone."""
    modules: dict[str, str] = {}
    constants: dict[str, Any] = {}
    for name in fn.__code__.co_names:
        if name not in fn.__globals__:
            continue
        value = fn.__globals__[name]
        if inspect.ismodule(value):
            modules[name] = value.__name__
        elif isinstance(value, (bool, int, float, str)):
            constants[name] = value
    return {"modules": modules, "constants": constants}


def _build(fn: Callable[..., Any], fname: str, *, source: str, globals_spec: Mapping[str, Any]) -> Featurizer:
    signature = inspect.signature(fn)
    hints = inspect.get_annotations(fn, eval_str=True)
    if "return" not in hints:
        raise FeaturizerError(f"featurizer {fname!r} needs a return type hint (float, int or bool)", featurizer=fname)
    inputs = []
    defaults: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise FeaturizerError(f"featurizer {fname!r}: parameter {param.name!r} must be a plain positional parameter", featurizer=fname)
        if param.name not in hints:
            raise FeaturizerError(f"featurizer {fname!r}: parameter {param.name!r} needs a type hint", featurizer=fname)
        dtype = _dtype_of(hints[param.name], f"parameter {param.name!r}", fname)
        inputs.append((param.name, dtype))
        if param.default is not param.empty:
            defaults[param.name] = _HINTS[hints[param.name]][1](param.default).item()
    output = _dtype_of(hints["return"], "the return value", fname)
    if not inputs:
        raise FeaturizerError(f"featurizer {fname!r} needs at least one input", featurizer=fname)
    import numba

    scalar = numba.njit(nogil=True, error_model="numpy")(fn)
    signature_types = tuple(numba.from_dtype(np.dtype(_numpy_dtype(d))) for _, d in inputs)
    try:
        scalar.compile(signature_types)
        batch = _batch_kernel(scalar, tuple(inputs), defaults)
    except numba.core.errors.NumbaError as exc:
        reason = _short_reason(str(exc))
        raise FeaturizerError(
            f"featurizer {fname!r} cannot be compiled by Numba in nopython mode: {reason}",
            featurizer=fname,
        ) from None
    scalar.disable_compile()  # a call with other types fails instead of compiling a second kernel
    convert = tuple(_CONVERT[d] for _, d in inputs)
    return Featurizer(fname, fn, tuple(inputs), output, defaults, source, globals_spec, scalar, batch, convert)
