"""How far a run is from its reference, and how far it may be: the one tolerance model that
``xptrain check`` and the test suite share.

The model. A run in a dtype with unit roundoff u = eps/2 differs from the float64 reference
through rounding: in each sample's dot product of length D, and in the sums over the N samples
(loss and gradients). Such errors grow like the square root of the number of operations (the
probabilistic bound of Higham & Mary, 2019), which gives the run's base tolerance

    τ = SAFETY · u · (√N + √D),        SAFETY = 2

and, from it, what each number may be off by:

* the loss of epoch k: |ΔL_k| ≤ τ · (|L_k| + 1). Each term log(p) is computed with an absolute
  error of about u however small it is, so as the loss falls towards 0 its relative error
  grows like 1/L: the relative tolerance is τ · (1 + 1/L_k).
* the final parameters (normwise relative): ≤ τ · √E after E epochs. Each update rounds, and
  on separable data (the seed's) nothing pulls the rounding back, so it accumulates as a random
  walk.

Calibration: on every CPU backend, grad and mode, in both dtypes, on the three reference
problems and on 500-epoch seed runs (loss down to 0.009), the largest errors are 0.33 of
u·(√N+√D)·(1 + 1/L) for losses and 0.09 of u·(√N+√D)·√E for parameters: SAFETY = 2 leaves a
factor of 6 and more. With K outputs and the other losses nothing changes but D, which is the
longest dot product of the model (its widest parameter or the features: K counts when it is the
widest): on digits10 (a softmax MLP, K = 10) and diabetes (an MLP on mse), every CPU backend,
grad, mode and dtype, the largest errors are 0.035 and 0.077 of u·(√N+√D)·(1 + 1/L) for losses
and 0.027 and 0.034 of u·(√N+√D)·√E for parameters (``xptrain check --problems
digits10,diabetes --json``, 2-core AMD EPYC): well inside. A float32 run passed off as
float64 (error ~1e-7 against τ ~1e-15), a TF32 matmul, or an ``exp`` off by 1e-10 all fail
it. The float64 reference itself agrees with an np.longdouble run to a few float64 ulps
(tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .reference import Reference

if TYPE_CHECKING:
    from .api import TrainResult

SAFETY = 2.0
MODEL = (
    f"tau = {SAFETY:g} · (eps/2) · (√N + √D); loss of epoch k within tau·(|L_k| + 1), "
    "final parameters within tau·√epochs (relative)"
)


def tolerance(dtype: str, n: int, d: int) -> float:
    """τ, the base tolerance of a run in ``dtype`` on an N×D problem (see the module doc)."""
    return SAFETY * float(np.finfo(dtype).eps) / 2 * (math.sqrt(n) + math.sqrt(d))


@dataclass(frozen=True)
class Agreement:
    """A run compared with its reference."""

    rel_err: list[float]  # per epoch, |ΔL| / |L|
    loss_tol: list[float]  # per epoch, τ·(1 + 1/|L|)
    max_ulp: float
    param_err: float
    param_tol: float  # τ·√epochs

    @property
    def max_rel_err(self) -> float:
        """The largest relative loss error over all epochs (NaN if any loss was NaN)."""
        return max(self.rel_err, key=lambda e: (math.isnan(e), e))

    @property
    def first_bad_epoch(self) -> int | None:
        """The first epoch whose loss is outside its tolerance, or None."""
        pairs = zip(self.rel_err, self.loss_tol, strict=True)
        return next((i for i, (e, t) in enumerate(pairs) if not e <= t), None)

    @property
    def margin(self) -> float:
        """The largest error over its tolerance, losses and parameters: ≤ 1 passes."""
        ratios = [e / t for e, t in zip(self.rel_err, self.loss_tol, strict=True)]
        return max([*ratios, self.param_err / self.param_tol], key=lambda r: (math.isnan(r), r))

    @property
    def passed(self) -> bool:
        """Within tolerance, for every epoch and the final parameters."""
        return self.margin <= 1.0


def compare(result: TrainResult, ref: Reference, tau: float, steps: int | None = None) -> Agreement:
    """Per-epoch relative loss error (also in ulps of the run's dtype) and the normwise
    relative error of the final parameters, against base tolerance ``tau``. ``steps`` is the
    number of parameter updates when it is not one per epoch (minibatches): the parameters'
    rounding accumulates per update."""
    losses = np.asarray(result.losses, dtype=np.float64)
    ref_losses = np.asarray(ref.losses, dtype=np.float64)
    if losses.shape != ref_losses.shape:
        raise ValueError(f"{losses.size} losses against a reference of {ref_losses.size}")
    diff = np.abs(losses - ref_losses)
    ulps = diff / np.spacing(np.abs(ref_losses).astype(result.dtype)).astype(np.float64)
    ref_params = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in ref.params])
    params = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in result.params])
    return Agreement(
        rel_err=(diff / np.abs(ref_losses)).tolist(),
        loss_tol=(tau * (1 + 1 / np.abs(ref_losses))).tolist(),
        max_ulp=float(np.max(ulps)),
        param_err=float(np.max(np.abs(params - ref_params)) / np.max(np.abs(ref_params))),
        param_tol=tau * math.sqrt(steps or losses.size),
    )
