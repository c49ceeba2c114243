"""Update rules as pure functions: new parameters are returned, nothing is changed in place
(JAX arrays are immutable)."""

from __future__ import annotations

from typing import Any


def sgd(params: tuple[Any, ...], grads: tuple[Any, ...], lr: float) -> tuple[Any, ...]:
    """Plain gradient descent, the seed's ``p -= alpha * dp``."""
    return tuple(p - lr * g for p, g in zip(params, grads, strict=True))
