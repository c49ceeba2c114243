"""How far a run is from a reference, and how far it may be: the one tolerance model that the
tests (and later ``xptrain check``) use.

Tolerances are relative, per dtype: float64 runs must match the float64 reference to 1e-12
(about 4500 eps: room for the few-ulp differences between libraries' exp/log/sum over tens of
epochs, and nothing more), float32 runs to 1e-6 (about 8 eps of float32). Errors are also given
in units of the dtype's eps, and as margin = error / tolerance (≤ 1 passes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .reference import Reference

TOLERANCE = {"float64": 1e-12, "float32": 1e-6}


def tolerance(dtype: str) -> float:
    """Largest relative error, per epoch and for the final parameters, a run may have."""
    return TOLERANCE[dtype]


@dataclass(frozen=True)
class Agreement:
    """A run compared with a reference."""

    dtype: str
    max_rel_err: float
    first_bad_epoch: int | None
    param_err: float

    @property
    def tolerance(self) -> float:
        """The largest relative error this run may have."""
        return tolerance(self.dtype)

    @property
    def max_eps(self) -> float:
        """The largest loss error in units of the dtype's machine epsilon."""
        return self.max_rel_err / float(np.finfo(self.dtype).eps)

    @property
    def margin(self) -> float:
        """Error over tolerance: ≤ 1 passes."""
        return max(self.max_rel_err, self.param_err) / self.tolerance

    @property
    def passed(self) -> bool:
        """Within tolerance, for every epoch and the final parameters."""
        return self.margin <= 1.0


def compare(result: Any, ref: Reference) -> Agreement:
    """Per-epoch relative loss error and normwise relative error of the final (W, b)."""
    losses = np.asarray(result.losses, dtype=np.float64)
    if losses.shape != ref.losses.shape:
        raise ValueError(f"{losses.size} losses against a reference of {ref.losses.size}")
    rel = np.abs(losses - ref.losses) / np.abs(ref.losses)
    tol = tolerance(result.dtype)
    bad = np.flatnonzero(~(rel <= tol))  # NaN counts as bad
    ref_params = np.append(ref.W.ravel(), ref.b)
    params = np.append(np.asarray(result.W, dtype=np.float64).ravel(), result.b)
    param_err = float(np.max(np.abs(params - ref_params)) / np.max(np.abs(ref_params)))
    return Agreement(
        dtype=result.dtype,
        max_rel_err=float(np.max(rel)),
        first_bad_epoch=int(bad[0]) if bad.size else None,
        param_err=param_err,
    )
