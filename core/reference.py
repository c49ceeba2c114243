"""The seed's published loss sequence and the plain float64 NumPy loop that references come from.

``reference_run`` is a literal transcription of the seed's code, deliberately independent of the
Array API loop in :mod:`xptrain.train`: a reference that shared code with what it checks could not
catch that code's mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Problem, initial_weights

# As the seed prints them (12 significant digits): epochs 0..19, alpha 1, np.random.seed(1).
SEED_PRINTED_LOSSES = (
    0.822322582088,
    0.722897448125,
    0.646837651208,
    0.584116122241,
    0.530908161024,
    0.48523717872,
    0.445747750118,
    0.411391164148,
    0.381326093762,
    0.354869998127,
    0.331466036109,
    0.310657702141,
    0.292068863232,
    0.275387990352,
    0.260355695915,
    0.246754868981,
    0.234402844624,
    0.22314516463,
    0.21285058467,
    0.203407060401,
)
SEED_EPOCHS = 20
SEED_LR = 1.0
SEED_SEED = 1


@dataclass(frozen=True)
class Reference:
    """A float64 host run: the loss of every epoch and the final parameters."""

    losses: np.ndarray
    W: np.ndarray
    b: np.floating


def reference_run(
    problem: Problem,
    epochs: int = SEED_EPOCHS,
    lr: float = SEED_LR,
    seed: int = SEED_SEED,
    dtype: type = np.float64,
) -> Reference:
    """The seed's training loop in plain NumPy on the host, in ``dtype`` (float64; the tests
    also run it in np.longdouble to check the float64 reference itself)."""
    X, y = problem.X.astype(dtype), problem.y.astype(dtype)
    W = problem.W if problem.W is not None else initial_weights(X.shape[1], seed)
    W, b = W.astype(dtype), np.full((1, 1), problem.b or 0.0, dtype=dtype)
    N, lr, one = y.shape[0], dtype(lr), dtype(1)
    losses = []
    for _ in range(epochs):
        z = X.dot(W) + b
        A = one / (one + np.exp(-z))
        losses.append(-one / N * np.sum(y * np.log(A) + (one - y) * np.log(one - A)))
        dz = A - y
        W = W - lr * (one / N * np.dot(X.T, dz))
        b = b - lr * (one / N * np.sum(dz, axis=0, keepdims=True))
    return Reference(np.array(losses, dtype=dtype), W, b.reshape(())[()])
