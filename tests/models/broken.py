"""Models that break the protocol, one way each: every one must be refused in one line."""

import numpy as np
from good import Linear  # its neighbour: model files import theirs, as scripts do


class NoInit:
    def forward(self, xp, params, X):
        return X


class InitNotArrays(Linear):
    def init(self, rng, d_in, d_out):
        return [[0.0] * d_out] * d_in, [0.0] * d_out


class InitIntArrays(Linear):
    def init(self, rng, d_in, d_out):
        return np.zeros((d_in, d_out), dtype=np.int64), np.zeros((1, d_out), dtype=np.int64)


class InitOneArray(Linear):
    def init(self, rng, d_in, d_out):
        return np.zeros((d_in, d_out))


class WrongDIn(Linear):
    """The first layer takes d_in + 1 features: forward fails on the probe rows."""

    def init(self, rng, d_in, d_out):
        return np.zeros((d_in + 1, d_out)), np.zeros((1, d_out))


class ForwardWrongShape(Linear):
    def forward(self, xp, params, X):
        return xp.sum(super().forward(xp, params, X), axis=1)  # N, not N × d_out


class ForwardWrongDtype(Linear):
    def forward(self, xp, params, X):
        return xp.astype(super().forward(xp, params, X), xp.float32)


class BackwardTooFew(Linear):
    def backward(self, xp, params, X, G):
        return (xp.matmul(X.T, G),)


class BackwardWrongShape(Linear):
    def backward(self, xp, params, X, G):
        return xp.matmul(X.T, G), xp.sum(G, axis=0)  # the bias gradient without keepdims


class Needs:
    """A class whose argument has no default."""

    def __init__(self, width):
        self.width = width

    init = Linear.init
    forward = Linear.forward
    backward = Linear.backward
