"""TanhNet (good.py) with one planted mistake in its backward each."""

import numpy as np


class TanhNet:
    """good.py's network, correct."""

    def __init__(self, width=8):
        self.width = width

    def init(self, rng, d_in, d_out):
        return (
            rng.uniform(-0.5, 0.5, (d_in, self.width)),
            rng.uniform(-0.5, 0.5, (1, self.width)),
            rng.uniform(-0.5, 0.5, (self.width, d_out)),
            np.zeros((1, d_out)),
        )

    def forward(self, xp, params, X):
        W1, b1, W2, b2 = params
        return xp.matmul(xp.tanh(xp.matmul(X, W1) + b1), W2) + b2

    def backward(self, xp, params, X, G):
        W1, b1, W2, _ = params
        h = xp.tanh(xp.matmul(X, W1) + b1)
        dz = xp.matmul(G, W2.T) * (1 - h * h)
        return (
            xp.matmul(X.T, dz),
            xp.sum(dz, axis=0, keepdims=True),
            xp.matmul(h.T, G),
            xp.sum(G, axis=0, keepdims=True),
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
