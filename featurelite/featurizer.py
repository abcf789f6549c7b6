"""Featurizers: plain Python functions compiled once with Numba, run by the same compiled
kernel on whole columns (training, backfills, write-time features) and on single requests
(serving).

Types come from the hints: ``float``, ``int``, ``bool``, ``str`` and
:data:`Timestamp` (an ``int`` of microseconds since the epoch, UTC). A function returns
one value, or several as ``tuple[float, int, ...]``.

The null rule: an input that is null makes every output null, unless the function gives
that input a default value (``def f(x: float = 0.0)``), which then stands in for the null.
Both paths apply the rule the same way, before the kernel runs.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import operator
import re
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FeaturizerError, SchemaError
from .kernels import CompiledKernels, compile_kernels
from .types import DTYPE_OF, FEATURIZER_DTYPES, MAX_US, MIN_US, Timestamp, dtype_of_hint, from_micros, micros
from .verification import Mismatch, verify

__all__ = ["FEATURIZER_DTYPES", "Featurizer", "FeaturizerError", "Timestamp", "featurizer"]

#: Featurizers compiled from stored specs in this process, by content hash of the spec.
_REBUILT: dict[str, Featurizer] = {}


def _as_float(value: Any) -> float:
    if type(value) is float:  # the common case, checked first: this runs per request
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"expected a number, got {type(value).__name__}: {value!r}")
    return float(value)


def _as_int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected an integer, got a bool: {value!r}")
    return operator.index(value)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"expected a bool, got {type(value).__name__}: {value!r}")
    return bool(value)


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a str, got {type(value).__name__}: {value!r}")
    return value


def _as_timestamp(value: Any) -> int:
    if isinstance(value, datetime):
        return micros(value)
    raise TypeError(f"expected a datetime.datetime, got {type(value).__name__}: {value!r}")


#: Per-request conversion of an input value to what the kernel takes (functions per
#: featurizer dtype: what a Python value must be, not a fact about the dtype's types).
_CONVERT: dict[str, Callable[[Any], Any]] = {
    "float64": _as_float, "int64": _as_int, "bool": _as_bool, "string": _as_str, "timestamp": _as_timestamp,
}


def _timestamp_out(value: int | None) -> datetime | None:
    """A timestamp result as returned online; outside years 1-9999 it is null (both paths)."""
    if value is None or value < MIN_US or value > MAX_US:
        return None
    return from_micros(value)


def _string_out(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise FeaturizerError(f"a featurizer returned a string that is not valid Unicode: {value!r}") from None
    return value


@dataclass(frozen=True, eq=False)
class Featurizer:
    """A compiled featurizer. Build one with :func:`featurizer`.

    ``inputs``: (parameter, dtype) pairs in order. ``outputs``: the dtypes it returns (one,
    or several for a function returning a tuple). ``defaults``: values standing in for a
    null input. ``source``: the function's text, stored in the registry so another process
    can compile it without the defining module.
    """

    name: str
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    defaults: Mapping[str, Any]
    source: str = field(repr=False)
    globals_spec: Mapping[str, Any] = field(repr=False, default_factory=dict)
    _kernels: CompiledKernels | None = field(repr=False, default=None)
    # The per-request path's parts, prepared once by __post_init__: it runs millions of times.
    #: Input names in declaration order.
    _names: tuple[str, ...] = field(init=False, repr=False)
    #: Per input, the conversion of a Python value to what the kernel takes.
    _converters: tuple[Callable[[Any], Any], ...] = field(init=False, repr=False)
    #: The compiled kernel's entry point (None for a featurizer built without kernels).
    _call: Callable[..., Any] | None = field(init=False, repr=False)
    #: The result of a row with a null input and no default.
    _null: tuple[None, ...] | None = field(init=False, repr=False)
    #: What turns the kernel's result into the returned value, or None when it is returned as is.
    _finish: Callable[[Any], Any] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_names", tuple(name for name, _ in self.inputs))
        object.__setattr__(self, "_converters", tuple(_CONVERT[d] for _, d in self.inputs))
        object.__setattr__(self, "_call", self._kernels.call if self._kernels is not None else None)
        object.__setattr__(self, "_null", None if len(self.outputs) == 1 else (None,) * len(self.outputs))
        finish: Callable[[Any], Any] | None = None
        fixes: dict[str, Callable[[Any], Any]] = {"timestamp": _timestamp_out, "string": _string_out}  # per dtype
        post = tuple(fixes.get(d) for d in self.outputs)
        if len(self.outputs) == 1:
            finish = post[0]
        else:
            nulls = (None,) * len(self.outputs)

            def finish_all(result: tuple[Any, ...] | None) -> tuple[Any, ...]:
                if result is None:  # a function returning None: every output is null
                    return nulls
                return tuple(value if fix is None else fix(value) for fix, value in zip(post, result, strict=True))

            finish = finish_all
        object.__setattr__(self, "_finish", finish)
        fast = _fast_path(self)
        if fast is not None:
            object.__setattr__(self, "run_args", fast)

    @property
    def output(self) -> str:
        """The output dtype of a single-output featurizer."""
        if len(self.outputs) != 1:
            raise FeaturizerError(f"featurizer {self.name!r} returns {len(self.outputs)} values", featurizer=self.name)
        return self.outputs[0]

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
            "outputs": list(self.outputs),
            "defaults": dict(self.defaults),
            "globals": dict(self.globals_spec),
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Featurizer:
        """Compile a featurizer from :meth:`spec` output, without its defining module.

        Compiled featurizers are kept per process by content (and on disk by Numba's
        cache), so reopening a store does not compile twice."""
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        cached = _REBUILT.get(key)
        if cached is None:
            name = spec["name"]
            if not spec.get("source"):
                raise FeaturizerError(
                    f"featurizer {name!r} has no source code (defined in a REPL or by exec?)", featurizer=name
                )
            inputs = tuple((str(p), str(d)) for p, d in spec["inputs"])
            outputs = tuple(spec["outputs"])
            cached = _REBUILT.setdefault(
                key,
                _compile(
                    name, inputs, outputs, dict(spec.get("defaults", {})), spec["source"], spec.get("globals", {})
                ),
            )
        return cached

    # -- the per-request path ----------------------------------------------------------

    def run_one(self, values: Mapping[str, Any]) -> Any:
        """The per-request path: one row of inputs (None for a null) -> output (a tuple for
        several outputs), None for a null result."""
        return self.run_args([values[name] for name in self._names])

    def run_args(self, args: Sequence[Any]) -> Any:
        """:meth:`run_one` with the inputs given in declaration order.

        Values are converted to the declared types first (a timestamp from a datetime), so
        the compiled kernel is the very one the batch path runs. Raises TypeError for a
        value of the wrong kind."""
        converted: list[Any] = []
        defaults = self.defaults
        null = False
        for name, convert, value in zip(self._names, self._converters, args, strict=False):
            if value is None:
                if name not in defaults:
                    null = True  # the result is null; the other values are still checked
                    continue
                value = defaults[name]
            converted.append(convert(value))
        if null:
            return self._null
        assert self._call is not None, "a featurizer built without kernels"
        result = self._call(*converted)
        finish = self._finish
        return result if finish is None else finish(result)

    def verify(
        self,
        *,
        examples: int = 1000,
        seed: int = 0,
        samples: Mapping[str, Sequence[Any]] | None = None,
        search: bool = True,
    ) -> Mismatch | None:
        """Check that the batch and per-request paths give the same bits (see
        :func:`featurelite.verification.verify`); the simplest mismatch found, or None."""
        return verify(self, examples=examples, seed=seed, samples=samples, search=search)

    # -- the batch path ----------------------------------------------------------------

    def run_batch(self, columns: Mapping[str, Any]) -> list[pa.Array]:
        """The batch path: ``{input: column}`` (Arrow arrays or chunked arrays, NumPy
        arrays, lists) -> one Arrow array per output, null where the null rule says.

        One compiled loop calls the same kernel as :meth:`run_one` on every row; nulls and
        defaults are settled with Arrow compute before it."""
        assert self._kernels is not None
        args: list[np.ndarray] = []
        valid: np.ndarray | None = None
        n: int | None = None
        for name, dtype in self.inputs:
            column = _arrow(columns[name], dtype, f"input {name!r} of featurizer {self.name!r}")
            if n is None:
                n = len(column)
            elif len(column) != n:
                raise ValueError(f"featurizer {self.name!r}: input columns differ in length")
            if column.null_count:
                if name not in self.defaults:
                    given = column.is_valid().to_numpy(zero_copy_only=False)
                    valid = given if valid is None else np.logical_and(valid, given, out=valid)
                # Its row's result is masked out anyway; every row runs, so the loop has no branch.
                filler = self.defaults.get(name, DTYPE_OF[dtype].filler)
                column = pc.fill_null(column, pa.scalar(filler, type=column.type))
            if dtype == "string":
                offsets = np.frombuffer(column.buffers()[1], dtype=np.int64)[column.offset : column.offset + n + 1]
                data = column.buffers()[2]
                args += [offsets, np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)]
            else:
                args.append(np.ascontiguousarray(column.to_numpy(zero_copy_only=False), dtype=DTYPE_OF[dtype].numpy))
        rows = n or 0
        outs: list[np.ndarray] = []
        present: list[np.ndarray] = []
        for dtype in self.outputs:
            present.append(np.empty(rows, dtype=np.bool_))
            outs.append(present[-1])
            if dtype == "string":
                outs += [np.zeros(rows + 1, dtype=np.int64), np.empty(max(64, rows * 8), dtype=np.uint8)]
            else:
                outs.append(np.empty(rows, dtype=DTYPE_OF[dtype].numpy))
        returned = self._kernels.loop(*args, *outs)
        strings = iter(returned if isinstance(returned, tuple) else ())
        result: list[pa.Array] = []
        position = 0
        for dtype, ok in zip(self.outputs, present, strict=True):
            if valid is not None:
                ok &= valid
            position += 1
            if dtype == "string":
                result.append(self._strings(outs[position], next(strings), ok))
                position += 2
                continue
            values = outs[position]
            position += 1
            if dtype == "timestamp":
                ok &= (values >= MIN_US) & (values <= MAX_US)  # null outside years 1-9999, as per request
            mask = None if ok.all() else ~ok
            kind = DTYPE_OF[dtype]
            result.append(pa.array(values, mask=mask, type=kind.kernel_arrow).cast(kind.arrow))
        return result

    def _strings(self, offsets: np.ndarray, data: np.ndarray, ok: np.ndarray) -> pa.Array:
        """A string output as an Arrow array over the loop's buffers (no copy per row)."""
        nulls = None if ok.all() else pa.array(ok).buffers()[1]
        array = pa.LargeStringArray.from_buffers(len(ok), pa.py_buffer(offsets), pa.py_buffer(data), nulls)
        try:
            array.validate(full=True)
        except pa.ArrowInvalid:
            raise FeaturizerError(
                f"featurizer {self.name!r} returned a string that is not valid Unicode", featurizer=self.name
            ) from None
        return array.cast(pa.string())


#: Exact Python types a per-request value may have to skip conversion, per input dtype.
_EXACT = {"float64": "float", "int64": "int", "bool": "bool"}


def _fast_path(fz: Featurizer) -> Callable[[Sequence[Any]], Any] | None:
    """A per-request entry for featurizers whose inputs are all numbers or bools: when every
    value already has the exact Python type (what online reads return), call the compiled
    kernel straight away; anything else (a null, a numpy scalar, the wrong length) takes
    the checked path, :meth:`Featurizer.run_args`. Generated, so there is no loop."""
    if fz._kernels is None or any(d not in _EXACT for _, d in fz.inputs):
        return None
    names = [f"x{i}" for i in range(len(fz.inputs))]
    checks = " and ".join(f"type({n}) is {_EXACT[d]}" for n, (_, d) in zip(names, fz.inputs, strict=True))
    call = f"_call({', '.join(names)})"
    code = (
        "def run_args(args):\n"
        "    try:\n"
        f"        {', '.join(names)}, = args\n"
        "    except (TypeError, ValueError):\n"
        "        return _checked(args)\n"
        f"    if {checks}:\n"
        f"        return {call if fz._finish is None else '_finish(' + call + ')'}\n"
        "    return _checked(args)\n"
    )
    env: dict[str, Any] = {
        "_call": fz._call, "_finish": fz._finish,
        "_checked": Featurizer.run_args.__get__(fz),
    }
    exec(compile(code, f"<featurizer {fz.name} per-request>", "exec"), env)  # noqa: S102 - our own code, generated above
    run: Callable[[Sequence[Any]], Any] = env["run_args"]
    return run


def _arrow(column: Any, dtype: str, what: str) -> pa.Array:
    """A column as one Arrow array of the type the batch loop reads."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    elif not isinstance(column, pa.Array):
        column = pa.array(column)
    try:
        if dtype == "timestamp" and pa.types.is_timestamp(column.type):
            if column.type.unit != "us":
                column = column.cast(pa.timestamp("us", tz=column.type.tz))
            return column.cast(pa.int64())  # the stored integers are UTC microseconds
        if dtype == "timestamp" and not (pa.types.is_integer(column.type) or pa.types.is_null(column.type)):
            raise TypeError(f"a timestamp column is needed, not {column.type}")
        if dtype == "string" and not (
            pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_null(column.type)
        ):
            raise TypeError(f"a string column is needed, not {column.type}")
        return column.cast(DTYPE_OF[dtype].kernel_arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, TypeError) as exc:
        # Input of the wrong kind is the caller's data, not the featurizer failing.
        raise SchemaError(f"{what} cannot be read as {dtype}: {exc}") from None


def featurizer(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Compile a plain Python function into a :class:`Featurizer`.

    Inputs and outputs come from the type hints: ``float``, ``int``, ``bool``, ``str``,
    :data:`Timestamp`, and ``tuple[...]`` of those for several outputs. The function is
    compiled with Numba in nopython mode, with NumPy's error model (division by zero gives
    inf or nan, not an exception) and without fastmath, so its result does not depend on
    the batch. A function Numba cannot compile is refused here with a short reason.
    Usable as ``@featurizer`` or ``@featurizer(name="...")``.
    """

    def build(fn: Callable[..., Any]) -> Featurizer:
        if hasattr(fn, "py_func") or not inspect.isfunction(fn):
            raise FeaturizerError(
                f"featurizer {getattr(fn, '__name__', fn)!r}: pass a plain Python function, not {type(fn).__name__}; "
                "featurelite compiles it itself (no fastmath, NumPy's error model) so both paths agree",
                featurizer=str(getattr(fn, "__name__", fn)),
            )
        fname = name or fn.__name__
        inputs, outputs, defaults = _signature(fn, fname)
        source = _source(fn)
        if not source:
            raise FeaturizerError(
                f"featurizer {fname!r}: its source code cannot be read (defined in a REPL or by exec?); "
                "define it in a file or a notebook cell",
                featurizer=fname,
            )
        return _compile(fname, inputs, outputs, defaults, source, _globals_spec(fn))

    return build(func) if func is not None else build


def _compile(
    fname: str,
    inputs: tuple[tuple[str, str], ...],
    outputs: tuple[str, ...],
    defaults: dict[str, Any],
    source: str,
    globals_spec: Mapping[str, Any],
) -> Featurizer:
    """Compile a featurizer from its source with Numba (or load it from the disk cache)."""
    import numba

    try:
        kernels = compile_kernels(
            source, [d for _, d in inputs], list(outputs), globals_spec,
            check=lambda returned: _check_return_type(fname, returned, outputs),
        )
    except FeaturizerError:
        raise
    except numba.core.errors.NumbaError as exc:
        reason = _short_reason(str(exc))
        if "NameError" in reason or "Untyped global name" in reason:
            reason += " (a featurizer may use its parameters, imported modules and plain constants only)"
        raise FeaturizerError(
            f"featurizer {fname!r} cannot be compiled by Numba in nopython mode: {reason}", featurizer=fname
        ) from None
    except Exception as exc:  # noqa: BLE001 - the stored source does not even load, whatever it raises
        raise FeaturizerError(
            f"featurizer {fname!r} cannot be compiled from its source on its own: {type(exc).__name__}: {exc}; "
            "a featurizer may use its parameters, imported modules and plain constants only",
            featurizer=fname,
        ) from None
    return Featurizer(fname, inputs, outputs, defaults, source, globals_spec, kernels)


def _check_return_type(fname: str, returned: Any, outputs: tuple[str, ...]) -> None:
    """Refuse a function whose results cannot be cast exactly to its declared types
    (an int to a float is fine; a float to an int would silently truncate)."""
    from numba.core import types

    if isinstance(returned, types.Optional) and isinstance(returned.type, types.BaseTuple):
        raise FeaturizerError(
            f"featurizer {fname!r} returns several values but sometimes None; return a tuple every time",
            featurizer=fname,
        )
    found = (
        list(typing.cast(Any, returned).types)
        if isinstance(returned, types.BaseTuple) and len(outputs) > 1
        else [returned]
    )

    def fits(found_type: Any, name: str) -> bool:
        declared = DTYPE_OF[name].numba_type()
        if found_type == declared or isinstance(found_type, types.NoneType):
            return True
        if isinstance(found_type, types.Optional):  # None sometimes: the rest must be exact
            return bool(found_type.type == declared)
        return isinstance(found_type, DTYPE_OF[name].numba_castable())

    ok = len(found) == len(outputs) and all(fits(t, d) for t, d in zip(found, outputs, strict=True))
    if not ok:
        raise FeaturizerError(
            f"featurizer {fname!r} is declared to return {', '.join(outputs)} but returns {returned} "
            "(Numba's inference); fix the type hint or the returned value",
            featurizer=fname,
        )


def _dtype_of(hint: Any, what: str, fname: str) -> str:
    declared = dtype_of_hint(hint)
    if declared is None:
        raise FeaturizerError(
            f"featurizer {fname!r}: {what} has type hint {hint!r}; use float, int, bool, str or "
            "featurelite.Timestamp (microseconds since the epoch, UTC)",
            featurizer=fname,
        )
    return declared.name


def _signature(
    fn: Callable[..., Any], fname: str
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], dict[str, Any]]:
    """(inputs, outputs, defaults) from the function's type hints and default values."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 - an unresolvable hint (any error evaluating it), reported as such
        raise FeaturizerError(f"featurizer {fname!r}: its type hints cannot be read: {exc}", featurizer=fname) from None
    if "return" not in hints:
        raise FeaturizerError(
            f"featurizer {fname!r} needs a return type hint (float, int, bool, str, Timestamp or a tuple of them)",
            featurizer=fname,
        )
    inputs: list[tuple[str, str]] = []
    defaults: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            raise FeaturizerError(
                f"featurizer {fname!r}: parameter {param.name!r} must be a plain positional parameter", featurizer=fname
            )
        if param.name not in hints:
            raise FeaturizerError(f"featurizer {fname!r}: parameter {param.name!r} needs a type hint", featurizer=fname)
        dtype = _dtype_of(hints[param.name], f"parameter {param.name!r}", fname)
        inputs.append((param.name, dtype))
        if param.default is not param.empty:
            try:
                defaults[param.name] = _CONVERT[dtype](param.default)
            except TypeError as exc:
                raise FeaturizerError(
                    f"featurizer {fname!r}: default of {param.name!r}: {exc}", featurizer=fname
                ) from None
    if not inputs:
        raise FeaturizerError(f"featurizer {fname!r} needs at least one input", featurizer=fname)
    returned = hints["return"]
    if typing.get_origin(returned) is tuple:
        parts = typing.get_args(returned)
        if not parts or Ellipsis in parts:
            raise FeaturizerError(
                f"featurizer {fname!r}: a tuple return hint must list each output's type", featurizer=fname
            )
        outputs = tuple(_dtype_of(p, f"output {i}", fname) for i, p in enumerate(parts))
    else:
        outputs = (_dtype_of(returned, "the return value", fname),)
    return tuple(inputs), outputs, defaults


def _source(func: Callable[..., Any]) -> str:
    try:
        lines = inspect.getsource(func).splitlines()
    except (OSError, TypeError):
        return ""
    body = textwrap.dedent("\n".join(lines)).splitlines()
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
    where = re.sub(r'File "[^"]*_featurelite_kernel_[0-9a-f]+\.py"', "File <featurizer source>", where)
    return "; ".join(part for part in (what or (lines[0] if lines else "unknown reason"), where) if part)


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
