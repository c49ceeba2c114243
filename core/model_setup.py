"""A model made ready for a run, on the host: its starting parameters, and a check that it keeps
the protocol of :mod:`xptrain.models` (on a few rows, with NumPy) before anything is moved to a
device, so a wrong model is a one-line error naming it, not a traceback from a backend."""

from __future__ import annotations

import functools
from typing import Any

import array_api_compat.numpy as xp_numpy
import numpy as np

from .data import Problem
from .errors import InvalidInput, OptionError
from .loss import get as get_loss
from .models import backward, describe, forward_for_backward, has_backward

PROBE_ROWS = 3  # the rows a model is tried on


def starting_params(model: Any, problem: Problem, d_out: int, seed: int) -> list[np.ndarray]:
    """The model's ``init(default_rng(seed), D, d_out)`` as float64 host arrays, checked; the
    data's own ``W`` and ``b`` (a .npz may hold them) replace the first two parameters, whose
    shapes they must have."""
    label = describe(model)
    d = problem.X.shape[1]
    try:
        made = model.init(np.random.default_rng(seed), d, d_out)
    except Exception as err:
        raise InvalidInput(f"model {label}: init failed: {type(err).__name__}: {err}") from None
    params = _as_arrays(label, made)
    if problem.W is not None or problem.b is not None:
        params = _with_data_weights(label, params, problem)
    # made-up rows, not the data's: a lazy X (dask, a memory-mapped file) is not read for it
    check_protocol(model, label, _probe(d).copy(), d_out, params)
    return params


@functools.lru_cache(maxsize=16)
def _probe(d: int) -> np.ndarray:
    """:data:`PROBE_ROWS` made-up rows of ``d`` features (read-only: kept between calls, as
    drawing them took ~25 µs a call; each call gets a copy, which a model may write to)."""
    rows = np.random.default_rng(0).standard_normal((PROBE_ROWS, d))
    rows.flags.writeable = False
    return rows


def check_ready(model: Any, loss: str, problem: Problem, seed: int) -> list[np.ndarray]:
    """The model's starting parameters for ``problem``, after its targets (for ``loss``) and
    the model's protocol are checked on the host (one-line errors, before anything is
    written)."""
    d_out = get_loss(loss).outputs(problem.y)
    return starting_params(model, Problem(problem.X, problem.y), d_out, seed)


def longest_dot(d: int, params: list[np.ndarray]) -> int:
    """The longest dot product a model of these parameters likely takes (what the tolerance
    grows with): the features, or its widest parameter."""
    return max((d, *(max(p.shape) for p in params)))


def _as_arrays(label: str, made: Any) -> list[np.ndarray]:
    if isinstance(made, np.ndarray) or not isinstance(made, (tuple, list)) or not made:
        raise InvalidInput(
            f"model {label}: init must return a tuple of NumPy arrays, got {type(made).__name__}"
        )
    params = []
    for i, p in enumerate(made):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            kind = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
            raise InvalidInput(
                f"model {label}: init's parameter {i} must be a float NumPy array, got {kind}"
            )
        if not np.isfinite(p).all():
            raise InvalidInput(f"model {label}: init's parameter {i} holds NaN or inf")
        params.append(p.astype(np.float64))
    return params


def _with_data_weights(label: str, params: list[np.ndarray], problem: Problem) -> list:
    W = problem.W if problem.W is not None else params[0]
    b = np.full((1, 1), problem.b) if problem.b is not None else params[1]
    if len(params) < 2 or W.shape != params[0].shape or b.shape != params[1].shape:
        raise InvalidInput(
            f"the data's W and b are for the logistic model (shapes {W.shape}, {b.shape}); "
            f"model {label} starts from {[p.shape for p in params]}: drop them from the data"
        )
    return [W, b, *params[2:]]


def check_protocol(
    model: Any, label: str, X: np.ndarray, d_out: int, params: list[np.ndarray]
) -> None:
    """Run ``forward`` (and ``backward``, where there is one) on a few rows with NumPy and
    refuse, in one line, outputs or gradients of the wrong shape or kind."""
    X = np.asarray(X, dtype=np.float64)
    n, d = X.shape
    try:
        out, residuals = forward_for_backward(model, xp_numpy, tuple(params), X)
        out = np.asarray(out)
    except Exception as err:
        shapes = [p.shape for p in params]
        raise InvalidInput(
            f"model {label}: forward fails on {n} rows of D = {d} features with init's "
            f"parameters {shapes}: {type(err).__name__}: {err}"
        ) from None
    if out.shape != (n, d_out) or out.dtype != np.float64:
        raise InvalidInput(
            f"model {label}: forward must return N × d_out = ({n}, {d_out}) in the input's "
            f"dtype (float64), got {out.dtype} {out.shape}"
        )
    if has_backward(model):
        _check_backward(model, label, X, params, np.ones_like(out), residuals)


def _check_backward(
    model: Any, label: str, X: np.ndarray, params: list, G: np.ndarray, residuals: Any
) -> None:
    try:
        grads = backward(model, xp_numpy, tuple(params), X, G, residuals)
    except Exception as err:
        raise InvalidInput(f"model {label}: backward fails: {type(err).__name__}: {err}") from None
    if len(grads) != len(params):
        raise InvalidInput(
            f"model {label}: backward returned {len(grads)} gradients for {len(params)} "
            "parameters (one per parameter, in init's order)"
        )
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        shape = getattr(g, "shape", None)
        if shape != p.shape:
            raise InvalidInput(
                f"model {label}: backward's gradient {i} has shape {shape}, its parameter {p.shape}"
            )


def check_engine(model: Any, backend: str, can_autodiff: bool, grad: str) -> None:
    """Refuse, in one line, a gradient engine the model and backend cannot give together."""
    label = describe(model)
    if grad == "analytic" and not has_backward(model):
        if can_autodiff:
            raise OptionError(
                lambda s: f"model {label} has no backward: use {s('grad', 'autodiff')}"
            )
        raise OptionError(
            lambda s: (
                f"model {label} has no backward, and {backend} has no autodiff: run it on "
                f"torch or jax with {s('grad', 'autodiff')}, or give the model a backward"
            )
        )
