"""The training loop, written once against the Array API, and the public ``train`` function."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from . import backends
from .data import Problem, initial_weights, make_problem
from .errors import InvalidInput, TrainingDiverged
from .grad import logistic_bce_grads
from .loss import bce
from .model import Params, logistic
from .optim import sgd
from .runinfo import versions

GRADS = ("analytic", "autodiff")
# Without a per-epoch callback, losses stay on the device and are checked this many at a time:
# one host round trip per block instead of one per epoch.
_CHECK_EVERY = 64

EpochCallback = Callable[[int, float], None]
Step = Callable[[Params, Any, Any], tuple[Params, Any]]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced, on the host, with what is needed to reproduce and compare it.

    ``seconds`` is the wall time of the epochs (compilation included, ending with a device
    sync); moving the data to the device is not in it.
    """

    losses: list[float]
    W: np.ndarray
    b: float
    seconds: float
    backend: str
    device: str
    device_name: str
    dtype: str
    epochs: int
    lr: float
    jit: bool
    grad: str
    versions: dict[str, str] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` file)."""
        return {
            "backend": self.backend,
            "device": self.device,
            "device_name": self.device_name,
            "dtype": self.dtype,
            "epochs": self.epochs,
            "lr": self.lr,
            "jit": self.jit,
            "grad": self.grad,
            "losses": self.losses,
            "W": self.W.tolist(),
            "b": self.b,
            "seconds": self.seconds,
            "versions": self.versions,
            "precision": self.precision,
        }


def analytic_step(xp: Any, lr: float) -> Step:
    """One epoch with the seed's backprop: forward, loss, ``dz = A - y`` gradients, update."""

    def step(params: Params, X: Any, y: Any) -> tuple[Params, Any]:
        A = logistic(xp, params, X)
        loss = bce(xp, y, A)
        return sgd(params, logistic_bce_grads(xp, X, y, A), lr), loss

    return step


def autodiff_step(xp: Any, lr: float, value_and_grad: Callable) -> Step:
    """One epoch with the backend's automatic differentiation of the same loss."""

    def loss_fn(params: Params, X: Any, y: Any) -> Any:
        return bce(xp, y, logistic(xp, params, X))

    loss_and_grads = value_and_grad(loss_fn)

    def step(params: Params, X: Any, y: Any) -> tuple[Params, Any]:
        loss, grads = loss_and_grads(params, X, y)
        return sgd(params, tuple(grads), lr), loss

    return step


@functools.lru_cache(maxsize=64)
def make_step(bk: backends.Backend, xp: Any, grad: str, lr: float, jit: bool) -> Step:
    """The epoch step for a configuration, built once: the same function object on every run,
    so compiled steps (jax.jit, torch.compile) are reused instead of recompiled."""
    step = autodiff_step(xp, lr, bk.value_and_grad) if grad == "autodiff" else analytic_step(xp, lr)
    return bk.jit(step) if jit else step


def fit(
    step: Step,
    params: Params,
    X: Any,
    y: Any,
    epochs: int,
    to_numpy: Callable[[Any], np.ndarray],
    on_epoch: EpochCallback | None = None,
) -> tuple[Params, list[float]]:
    """Run ``epochs`` steps; return the final parameters and the host losses.

    Stops with :class:`TrainingDiverged` naming the first epoch whose loss is NaN or inf.
    """
    xp = array_namespace(X)
    losses: list[float] = []
    pending: list[Any] = []
    for epoch in range(epochs):
        params, loss = step(params, X, y)
        pending.append(loss)
        if on_epoch is not None or len(pending) == _CHECK_EVERY or epoch == epochs - 1:
            first = len(losses)
            for i, value in enumerate(to_numpy(xp.stack(pending)).tolist(), start=first):
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"the loss became {value} at epoch {i}; try a smaller learning rate"
                    )
                losses.append(value)
                if on_epoch is not None:
                    on_epoch(i, value)
            pending = []
    return params, losses


def train(
    X: Any,
    y: Any,
    *,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str = "float64",
    epochs: int = 20,
    lr: float = 1.0,
    W: Any = None,
    b: Any = None,
    seed: int = 1,
    jit: bool = False,
    grad: str = "analytic",
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train the seed's logistic regressor on any backend; by default, the seed's run exactly.

    ``X`` (N×D) and ``y`` (N or N×1, 0/1) may be NumPy arrays or arrays of any backend; they
    are validated on the host and moved to ``device`` as ``dtype``. Without ``W`` the seed's
    rule draws it from ``seed``; ``b`` defaults to 0. ``on_epoch(epoch, loss)`` is called after
    every epoch (this syncs the device each epoch).
    """
    check_options(dtype=dtype, epochs=epochs, lr=lr, grad=grad)
    bk = backends.get(backend)
    device_name = bk.resolve_device(device)
    problem = make_problem(*(backends.to_numpy(a) if a is not None else None for a in (X, y, W, b)))
    return train_problem(
        problem,
        bk,
        device_name,
        dtype=dtype,
        epochs=epochs,
        lr=lr,
        seed=seed,
        jit=jit,
        grad=grad,
        on_epoch=on_epoch,
    )


def check_options(*, dtype: str, epochs: int, lr: float, grad: str) -> None:
    """Refuse options no run could use, before any data is touched."""
    if dtype not in backends.DTYPES:
        raise InvalidInput(f"unknown dtype {dtype!r}; choose from {', '.join(backends.DTYPES)}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidInput(f"epochs must be a whole number ≥ 1, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise InvalidInput(f"the learning rate must be a finite number > 0, got {lr!r}")
    if grad not in GRADS:
        raise InvalidInput(f"unknown gradient engine {grad!r}; choose from {', '.join(GRADS)}")


def train_problem(
    problem: Problem,
    bk: backends.Backend,
    device: str,
    *,
    dtype: str,
    epochs: int,
    lr: float,
    seed: int,
    jit: bool,
    grad: str,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train a validated host problem on a backend and device already resolved."""
    lr = float(lr)
    W0 = problem.W if problem.W is not None else initial_weights(problem.X.shape[1], seed)
    b0 = np.full((1, 1), problem.b or 0.0)
    dev = bk.native_device(device)
    X, y, W, b = (bk.asarray(a, dtype, dev) for a in (problem.X, problem.y, W0, b0))
    xp = array_namespace(X, W)
    with bk.float_scope(dtype):
        step = make_step(bk, xp, grad, lr, jit)
        start = time.perf_counter()
        (W, b), losses = fit(step, (W, b), X, y, epochs, bk.to_numpy, on_epoch)
        bk.sync(W)
        seconds = time.perf_counter() - start
        precision = bk.precision(dtype)
    return TrainResult(
        losses=losses,
        W=bk.to_numpy(W).astype(np.float64),
        b=float(bk.to_numpy(b).reshape(())),
        seconds=seconds,
        backend=bk.name,
        device=device,
        device_name=bk.device_name(device),
        dtype=dtype,
        epochs=epochs,
        lr=lr,
        jit=jit,
        grad=grad,
        versions=versions(bk),
        precision=precision,
    )
