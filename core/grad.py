"""Analytic backpropagation, written against the Array API."""

from __future__ import annotations

from typing import Any

from .model import Params, activation_grad


def bce_grads(
    xp: Any, params: Params, outputs: list[Any], A: Any, y: Any, activation: str
) -> Params:
    """Gradients of the binary cross-entropy (the seed's, or from logits: the same function)
    through the sigmoid output ``A`` and every layer below.

    ``outputs`` is :func:`xptrain.model.forward`'s list. At the output ``dz = A - y``; each
    layer's ``dW = 1/N·aᵀdz`` and ``db = 1/N·Σdz`` as the seed writes them (so one layer rounds
    exactly as the seed does); below it ``dz = (dz·Wᵀ) ⊙ f'(a)``.
    """
    n = y.shape[0]
    dz = A - y
    grads: list[Any] = []
    for i in reversed(range(len(params) // 2)):
        a = outputs[i]
        grads[:0] = [1 / n * xp.matmul(a.T, dz), 1 / n * xp.sum(dz, axis=0, keepdims=True)]
        if i > 0:
            dz = xp.matmul(dz, params[2 * i].T) * activation_grad(xp, activation, a)
    return tuple(grads)
