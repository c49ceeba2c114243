"""A user's regression model for xptrain: linear and squared features, with its own backward.

    xptrain train --model examples/regression.py:Quadratic --data diabetes --standardize \
        --loss mse --lr 0.05 --epochs 200
    xptrain check --model examples/regression.py:Quadratic --data diabetes --loss mse --lr 0.05

``outputs = X·A + (X⊙X)·B + c``: N × d_out predictions, trained on the mean squared error.
Written against the Array API namespace ``xp`` it is given, so it runs on every backend.
"""

import numpy as np


class Quadratic:
    """Linear regression on X and X², every feature's square its own term."""

    def __init__(self, scale: float = 0.01):
        self.scale = scale  # the initial weights' spread

    def init(self, rng, d_in, d_out):
        return (
            self.scale * rng.standard_normal((d_in, d_out)),
            self.scale * rng.standard_normal((d_in, d_out)),
            np.zeros((1, d_out)),
        )

    def forward(self, xp, params, X):
        A, B, c = params
        return xp.matmul(X, A) + xp.matmul(X * X, B) + c

    def backward(self, xp, params, X, G):
        """For G = ∂loss/∂outputs: ∂/∂A = XᵀG, ∂/∂B = (X²)ᵀG, ∂/∂c = ΣG."""
        return xp.matmul(X.T, G), xp.matmul((X * X).T, G), xp.sum(G, axis=0, keepdims=True)
