"""Models that run on NumPy but not everywhere."""

import numpy as np


class Linear:
    """``X·W + b``, correct (each model below breaks one thing of it)."""

    def init(self, rng, d_in, d_out):
        return rng.normal(0.0, 0.1, (d_in, d_out)), np.zeros((1, d_out))

    def forward(self, xp, params, X):
        W, b = params
        return xp.matmul(X, W) + b

    def backward(self, xp, params, X, G):
        return xp.matmul(X.T, G), xp.sum(G, axis=0, keepdims=True)


class NumpyOnlyMethod(Linear):
    """``.dot``: a NumPy (and torch) array method array-api-strict's arrays lack."""

    def forward(self, xp, params, X):
        W, b = params
        return X.dot(W) + b


class NumpyFunction(Linear):
    """np.tanh on whatever array it is given."""

    def forward(self, xp, params, X):
        return np.tanh(super().forward(xp, params, X))

    def backward(self, xp, params, X, G):
        return super().backward(xp, params, X, G * (1 - self.forward(xp, params, X) ** 2))
