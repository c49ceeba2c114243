"""Good user models for the tests: a one-hidden-layer tanh network with its own backward, the
same without backward (autodiff only), and a linear regressor for mse."""

import numpy as np


class TanhNet:
    """``X → tanh(X·W1 + b1) → ·W2 + b2``."""

    def __init__(self, width=8):
        self.width = width

    def init(self, rng, d_in, d_out):
        return (
            rng.uniform(-0.5, 0.5, (d_in, self.width)),
            np.zeros((1, self.width)),
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


class NoBackward(TanhNet):
    """The same network for autodiff only."""

    backward = None


class Linear:
    """``X·W + b``: linear regression (mse), or logits."""

    def init(self, rng, d_in, d_out):
        return rng.normal(0.0, 0.1, (d_in, d_out)), np.zeros((1, d_out))

    def forward(self, xp, params, X):
        W, b = params
        return xp.matmul(X, W) + b

    def backward(self, xp, params, X, G):
        return xp.matmul(X.T, G), xp.sum(G, axis=0, keepdims=True)


tanh_net = TanhNet(width=6)  # an instance, as a model spec may name one


# a module-level model: this module itself keeps the protocol with these two functions
def init(rng, d_in, d_out):
    return Linear().init(rng, d_in, d_out)


def forward(xp, params, X):
    return Linear().forward(xp, params, X)


def backward(xp, params, X, G):
    return Linear().backward(xp, params, X, G)
