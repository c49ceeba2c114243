"""Models that run on NumPy but not everywhere."""

import numpy as np
from good import Linear  # its neighbour: model files import theirs, as scripts do


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
