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
