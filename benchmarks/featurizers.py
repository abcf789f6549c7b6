"""The featurizer under test and its hand-written limit.

featurelite stores a featurizer's source in the store file (and refuses a function without
one), so the featurizer lives here, in a real module. Importing this module compiles it.
"""

from __future__ import annotations

import numba
import numpy as np

import featurelite as fl

from .config import FEATURES, VIEW

__all__ = ["ODFV", "ODFV_REF", "basket_share", "on_demand_view", "ratio", "ratio_loop"]

#: The on-demand feature view over the benchmark view, and its one feature.
ODFV = "ratios"
ODFV_FEATURE = "ratio"
ODFV_REF = f"{ODFV}:{ODFV_FEATURE}"
#: The stored features the featurizer reads (bound by parameter name).
INPUTS: tuple[str, str] = (FEATURES[0], FEATURES[1])


@fl.featurizer
def ratio(f0: float, f1: float) -> float:
    return f0 / (f1 + 1.0)


@fl.featurizer
def spread(f0: float, f1: float) -> tuple[float, bool]:
    return abs(f0 - f1), f0 > f1


@fl.featurizer
def scaled(f0: float, f1: float = 0.0) -> float:
    return f0 * 2.0 + f1


@fl.featurizer
def basket_share(f0: float, basket: float) -> float:
    """The on-demand feature of the service workloads (``benchmarks/services.py``): a stored
    feature and a request field."""
    return basket / (abs(f0) + 1.0)


def on_demand_view() -> fl.OnDemandFeatureView:
    """``ratios``: the featurizer under test bound to ``f0`` and ``f1`` of the benchmark
    view, plus two more a store would typically carry (the cold start loads all three)."""
    return fl.OnDemandFeatureView(
        ODFV, sources=[VIEW], featurizers={ODFV_FEATURE: ratio, ("gap", "f0_larger"): spread, "scaled": scaled}
    )


@numba.njit(nogil=True, error_model="numpy")
def ratio_loop(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """The limit of the batch path: the same expression, into a preallocated array, no
    validity masks. NumPy's error model (no zero-division check) and no fastmath, like
    featurelite, so the results are the same bits."""
    for i in range(out.shape[0]):
        out[i] = a[i] / (b[i] + 1.0)
