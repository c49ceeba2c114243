"""A user's model for xptrain: a two-layer softplus network with its own backward.

    xptrain train --model examples/softplus_net.py:SoftplusNet --model-arg width=32 \
        --data digits10 --standardize --loss softmax-ce --lr 0.5 --epochs 50
    xptrain check --model examples/softplus_net.py:SoftplusNet --data digits10 --loss softmax-ce

Everything is written against the Array API namespace ``xp`` it is given, so the same code runs
on NumPy, torch, JAX, CuPy, array-api-strict and dask.
"""

import numpy as np


class SoftplusNet:
    """``X → softplus(X·W1 + b1) → ·W2 + b2``: N × d_out logits (or predictions)."""

    rowwise = True  # each row's outputs depend on that row alone: the CPU's row blocks may be used

    def __init__(self, width: int = 32):
        self.width = width

    def init(self, rng, d_in, d_out):
        """Glorot-uniform weights from ``rng`` (numpy.random.default_rng(seed)), zero biases."""

        def glorot(fan_in, fan_out):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, (fan_in, fan_out))

        return (
            glorot(d_in, self.width),
            np.zeros((1, self.width)),
            glorot(self.width, d_out),
            np.zeros((1, d_out)),
        )

    def forward(self, xp, params, X):
        W1, b1, W2, b2 = params
        return xp.matmul(softplus(xp, xp.matmul(X, W1) + b1), W2) + b2

    def backward(self, xp, params, X, G):
        """The gradients of the loss for G = ∂loss/∂outputs, one per parameter."""
        W1, b1, W2, _ = params
        z = xp.matmul(X, W1) + b1
        h = softplus(xp, z)
        dh = xp.matmul(G, W2.T) * sigmoid(xp, z)  # softplus' = sigmoid
        return (
            xp.matmul(X.T, dh),
            xp.sum(dh, axis=0, keepdims=True),
            xp.matmul(h.T, G),
            xp.sum(G, axis=0, keepdims=True),
        )


def softplus(xp, z):
    """log(1 + e^z), stable for large |z|."""
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def sigmoid(xp, z):
    return 1 / (1 + xp.exp(-z))
