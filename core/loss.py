"""Losses, written against the Array API."""

from __future__ import annotations

from typing import Any


def _bce_terms(xp: Any, y: Any, A: Any) -> Any:
    """The seed's per-row terms ``-(y·log(A) + (1-y)·log(1-A))``, kept in its exact form (no
    clipping) so its numbers are reproduced; a saturated ``A`` gives inf, which the loop
    reports as divergence."""
    return -(y * xp.log(A) + (1 - y) * xp.log(1 - A))


def _bce_logits_terms(xp: Any, y: Any, z: Any) -> Any:
    """The same terms from the logits ``z``, stably: ``max(z, 0) - z·y + log1p(exp(-|z|))``,
    finite where the seed's form saturates (``log(0)`` once a probability rounds to 0 or 1)."""
    return xp.maximum(z, xp.zeros_like(z)) - z * y + xp.log1p(xp.exp(-xp.abs(z)))


def bce(xp: Any, y: Any, y_hat: Any) -> Any:
    """The seed's binary cross-entropy: ``-1/N * sum(y*log(y_hat) + (1-y)*log(1-y_hat))``
    (written ``1/N * sum(-(...))``: negation is exact, so the bits are the seed's)."""
    n = y.shape[0]
    return 1 / n * xp.sum(_bce_terms(xp, y, y_hat))


def bce_logits(xp: Any, y: Any, z: Any) -> Any:
    """The same loss from the logits ``z``, stable when saturated."""
    n = y.shape[0]
    return 1 / n * xp.sum(_bce_logits_terms(xp, y, z))


LOSSES = ("bce", "bce-logits")


def loss_sum(xp: Any, name: str, y: Any, z: Any, A: Any, keep: Any = None) -> Any:
    """``name``'s terms *summed*, not meaned (the one-pass and data-parallel gradients divide
    by the global N once, at the end). ``keep`` (N×1 booleans, optional) drops the rows it is
    False for: a data-parallel run's padding rows."""
    terms = _bce_terms(xp, y, A) if name == "bce" else _bce_logits_terms(xp, y, z)
    if keep is not None:
        terms = xp.where(keep, terms, xp.zeros_like(terms))
    return xp.sum(terms)


def loss_from_logits(xp: Any, name: str, y: Any, z: Any, A: Any) -> Any:
    """``name``'s value, given the logits ``z`` and the probabilities ``A = sigmoid(z)``."""
    return bce(xp, y, A) if name == "bce" else bce_logits(xp, y, z)
