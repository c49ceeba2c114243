"""Forward passes as pure functions of (params, X), written against the Array API.

``params`` is a flat tuple ``(W1, b1, ..., WL, bL)``: one layer (``(W, b)``) is the seed's
logistic regressor, more are an MLP whose hidden layers use ``activation``; the output is always
a sigmoid, for the binary cross-entropy. ``xp`` is the backend's namespace, passed in, so no
function here asks which library it runs on.
"""

from __future__ import annotations

import itertools
from typing import Any

Params = tuple[Any, ...]


def layer_shapes(d_in: int, hidden: tuple[int, ...]) -> list[tuple[int, int]]:
    """The shapes of ``(W1, b1, ..., WL, bL)`` for ``d_in`` features, these hidden layers and
    one output."""
    sizes = [d_in, *hidden, 1]
    return [shape for a, b in itertools.pairwise(sizes) for shape in ((a, b), (1, b))]


def sigmoid(xp: Any, z: Any) -> Any:
    """The seed's ``1/(1+exp(-z))``."""
    return 1 / (1 + xp.exp(-z))


def _relu(xp: Any, z: Any) -> Any:
    # where, not maximum: autodiff of maximum gives 1/2 at z = 0 (torch, JAX), the analytic
    # derivative 0; with where both give 0, so the two gradient engines agree.
    return xp.where(z > 0, z, xp.zeros_like(z))


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": lambda xp, z: xp.tanh(z), "relu": _relu}


def activation_grad(xp: Any, name: str, h: Any) -> Any:
    """The activation's derivative, from its output ``h``."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return xp.astype(h > 0, h.dtype)


def forward(xp: Any, params: Params, X: Any, activation: str = "sigmoid") -> list[Any]:
    """Every layer's output, the input first and the output layer's logits ``z`` last (what
    backprop and the losses need); the probabilities are ``sigmoid(z)``."""
    outputs = [X]
    layers = len(params) // 2
    for i in range(layers):
        z = xp.matmul(outputs[-1], params[2 * i]) + params[2 * i + 1]
        outputs.append(z if i == layers - 1 else ACTIVATIONS[activation](xp, z))
    return outputs


def logits(xp: Any, params: Params, X: Any, activation: str = "sigmoid") -> Any:
    """The output layer's logits, N×1 (one layer: the seed's ``X·W + b``)."""
    return forward(xp, params, X, activation)[-1]
