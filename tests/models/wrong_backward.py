"""TanhNet (good.py) with one planted mistake in its backward each."""

import good  # its neighbour: model files import theirs, as scripts do
import numpy as np


class TanhNet(good.TanhNet):
    """good.py's network, correct, its first bias drawn too (not zero), so a mistake in its
    gradient is not hidden by a zero start."""

    def init(self, rng, d_in, d_out):
        return (
            rng.uniform(-0.5, 0.5, (d_in, self.width)),
            rng.uniform(-0.5, 0.5, (1, self.width)),
            rng.uniform(-0.5, 0.5, (self.width, d_out)),
            np.zeros((1, d_out)),
        )


class HalfBias(TanhNet):
    """The first bias's gradient misses a factor 2 (it is halved)."""

    def backward(self, xp, params, X, G):
        gW1, gb1, gW2, gb2 = super().backward(xp, params, X, G)
        return gW1, gb1 / 2, gW2, gb2


class DroppedBias(TanhNet):
    """The output bias's gradient dropped: zeros."""

    def backward(self, xp, params, X, G):
        gW1, gb1, gW2, gb2 = super().backward(xp, params, X, G)
        return gW1, gb1, gW2, xp.zeros_like(gb2)


class TransposedSquare(TanhNet):
    """The first weight's gradient transposed (square when width == d_in)."""

    def backward(self, xp, params, X, G):
        gW1, gb1, gW2, gb2 = super().backward(xp, params, X, G)
        return gW1.T, gb1, gW2, gb2
