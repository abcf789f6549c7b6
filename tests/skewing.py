"""Build a deliberately broken featurizer: the same function, with its batch loop compiled
under other Numba options (fastmath), as a second implementation of a feature would be.
Used to prove the equivalence check catches what breaks equivalence."""

from __future__ import annotations

import dataclasses
import inspect
import types

import numba


def skewed(fz, **options):
    """A copy of ``fz`` whose batch loop is compiled with other Numba options (e.g.
    fastmath), as a second implementation of the same feature would be."""
    module = fz._kernels._module
    namespace = dict(vars(module))
    source = inspect.getsource(module)
    exec(compile(source, module.__file__, "exec"), namespace)  # noqa: S102
    name = [n for n, v in namespace.items() if inspect.isfunction(v) and n not in ("_fl_loop",) and not n.startswith("_")][-1]
    namespace["_fl_kernel"] = numba.njit(error_model="numpy", **options)(namespace[name])
    loop = numba.njit(error_model="numpy", **options)(namespace["_fl_loop"])
    kernels = types.SimpleNamespace(call=fz._kernels.call, loop=loop, return_type=fz._kernels.return_type)
    return dataclasses.replace(fz, _kernels=kernels)
