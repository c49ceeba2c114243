"""A model's ``backward`` against a framework's autodiff, on the same parameters and rows.

For every backend that has autodiff (torch, JAX), in float64, the analytic gradient (the
model's ``backward`` through :func:`xptrain.grad.loss_and_grads`) and the backend's own
gradient of the same loss are computed at two points: the initial parameters and the
float64 reference's final ones. A correct ``backward`` differs from autodiff by rounding only
(about 1e-15 relative in float64); a wrong one (a missing factor, a transposed gradient, a
dropped bias term) by order 1. :data:`GRAD_TOL` = 1e-6 sits between them, six orders of
magnitude from each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import Backend
from .data import Problem
from .grad import loss_and_grads
from .loss import get as get_loss
from .model_setup import starting_params
from .options import Options
from .steps import autodiff_loss_and_grads, model_of

GRAD_TOL = 1e-6  # relative, float64: rounding is ~1e-15, a wrong backward ~1


@dataclass(frozen=True)
class GradCheck:
    """One parameter's analytic gradient compared with a backend's autodiff."""

    problem: str
    backend: str
    device: str
    point: str  # "initial" or "trained" parameters
    param: int  # its index in init's order
    shape: list[int]
    max_rel_err: float | None  # max |analytic - autodiff| / max |autodiff|
    passed: bool
    error: str | None = None

    @property
    def label(self) -> str:
        """Where and which parameter, as the summary names it."""
        return (
            f"{self.problem}: backward's gradient of parameter {self.param} (shape "
            f"{tuple(self.shape)}) on {self.backend}/{self.device}, {self.point} parameters"
        )


def gradient_checks(
    name: str,
    data: Problem,
    options: Options,
    bk: Backend,
    device: str,
    trained: list[np.ndarray],
) -> list[GradCheck]:
    """The model's backward against ``bk``'s autodiff, parameter by parameter, at the initial
    parameters and at ``trained`` (float64 throughout)."""
    loss = get_loss(options.loss)
    model = model_of(options)
    d_out = loss.outputs(data.y)
    initial = starting_params(model, data, d_out, options.seed)
    on_device = Problem(data.X, loss.targets(data.y, d_out))
    out = []
    for point, params in (("initial", initial), ("trained", trained)):
        analytic, autodiff = _both(bk, device, model, loss, params, on_device)
        for i, (a, b) in enumerate(zip(analytic, autodiff, strict=True)):
            err = _rel_err(a, b)
            out.append(
                GradCheck(name, bk.name, device, point, i, list(b.shape), err, err <= GRAD_TOL)
            )
    return out


def _both(
    bk: Backend, device: str, model: Any, loss: Any, params: list, data: Problem
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The analytic and the autodiff gradients on ``bk``, back on the host."""
    with bk.float_scope("float64"):
        dev = bk.native_device(device)
        put = [bk.asarray(a, "float64", dev) for a in (data.X, data.y, *params)]
        X, y, on_device = put[0], put[1], tuple(put[2:])
        _, analytic = loss_and_grads(bk.xp, model, loss, on_device, X, y)
        grad = autodiff_loss_and_grads(bk.xp, model, loss, bk.value_and_grad)
        _, autodiff = grad(on_device, X, y)
        return [bk.to_numpy(g) for g in analytic], [bk.to_numpy(g) for g in autodiff]


def _rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """Normwise: max |got - want| / max |want| (the absolute difference where want is 0)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    return diff / scale if scale > 0 else diff
