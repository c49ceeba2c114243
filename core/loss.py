"""Losses, written against the Array API."""

from __future__ import annotations

from typing import Any


def bce(xp: Any, y: Any, y_hat: Any) -> Any:
    """The seed's binary cross-entropy: ``-1/N * sum(y*log(y_hat) + (1-y)*log(1-y_hat))``.

    Kept in the seed's exact form (no clipping) so its numbers are reproduced; a saturated
    ``y_hat`` gives inf, which the loop reports as divergence.
    """
    n = y.shape[0]
    return -1 / n * xp.sum(y * xp.log(y_hat) + (1 - y) * xp.log(1 - y_hat))


def bce_logits(xp: Any, y: Any, z: Any) -> Any:
    """The same loss from the logits ``z``, stably: ``mean(max(z, 0) - z·y + log1p(exp(-|z|)))``.
    Finite where the seed's form saturates (``log(0)`` once a probability rounds to 0 or 1)."""
    n = y.shape[0]
    return 1 / n * xp.sum(xp.maximum(z, xp.zeros_like(z)) - z * y + xp.log1p(xp.exp(-xp.abs(z))))


LOSSES = ("bce", "bce-logits")


def loss_sum(xp: Any, name: str, y: Any, z: Any, A: Any, keep: Any = None) -> Any:
    """``name``'s terms *summed*, not meaned (the one-pass and data-parallel gradients divide
    by the global N once, at the end). ``keep`` (N×1 booleans, optional) drops the rows it is
    False for: a data-parallel run's padding rows."""
    if name == "bce":
        terms = -(y * xp.log(A) + (1 - y) * xp.log(1 - A))
    else:
        terms = xp.maximum(z, xp.zeros_like(z)) - z * y + xp.log1p(xp.exp(-xp.abs(z)))
    if keep is not None:
        terms = xp.where(keep, terms, xp.zeros_like(terms))
    return xp.sum(terms)


def loss_from_logits(xp: Any, name: str, y: Any, z: Any, A: Any) -> Any:
    """``name``'s value, given the logits ``z`` and the probabilities ``A = sigmoid(z)``."""
    return bce(xp, y, A) if name == "bce" else bce_logits(xp, y, z)
