"""A regression model for mse: an affine map ``X·W + b`` to any number of targets."""

import numpy as np


class Affine:
    """``X·W + b`` with W drawn small from ``rng`` and b = ``bias``."""

    def __init__(self, scale=0.1, bias=0.0):
        self.scale = scale
        self.bias = bias

    def init(self, rng, d_in, d_out):
        return rng.normal(0.0, self.scale, (d_in, d_out)), np.full((1, d_out), float(self.bias))

    def forward(self, xp, params, X):
        W, b = params
        return xp.matmul(X, W) + b

    def backward(self, xp, params, X, G):
        return xp.matmul(X.T, G), xp.sum(G, axis=0, keepdims=True)
