"""Forward passes as pure functions of (params, X), written against the Array API.

``xp`` is the array namespace, looked up once per run and passed in, so no function here asks
which library it runs on.
"""

from __future__ import annotations

from typing import Any

Params = tuple[Any, Any]  # (W: D×1, b: 1×1)


def sigmoid(xp: Any, z: Any) -> Any:
    """The seed's ``1/(1+exp(-z))``."""
    return 1 / (1 + xp.exp(-z))


def logistic(xp: Any, params: Params, X: Any) -> Any:
    """Logistic regression: ``sigmoid(X·W + b)``, N×1."""
    W, b = params
    return sigmoid(xp, xp.matmul(X, W) + b)
