"""The seed's published loss sequence and the plain float64 NumPy loop that references come from.

``reference_run`` is a literal transcription of the seed's code, deliberately independent of the
Array API loop (:mod:`xptrain.steps`, :mod:`xptrain.loop`): a reference that shared code with
what it checks could not catch that code's mistakes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data import Problem, initial_weights
from .models import MLP

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
SEED_NP_RANDOM_SEED = 1  # the seed script's np.random.seed(1): its initial weights


@dataclass(frozen=True)
class Reference:
    """A host run: the loss of every epoch and the final parameters ``[W1, b1, ...]``."""

    losses: np.ndarray
    params: list[np.ndarray]

    @property
    def W(self) -> np.ndarray:
        """The output layer's weights."""
        return self.params[-2]

    @property
    def b(self) -> np.floating:
        """The output layer's bias."""
        return self.params[-1].reshape(())[()]


def reference_run(
    problem: Problem,
    epochs: int = SEED_EPOCHS,
    lr: float = SEED_LR,
    seed: int = SEED_NP_RANDOM_SEED,
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
    return Reference(np.array(losses, dtype=dtype), [W, b])


_ACT = {
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda h: h * (1 - h)),
    "tanh": (np.tanh, lambda h: 1 - h**2),
    "relu": (lambda z: np.maximum(z, 0), lambda h: (h > 0).astype(h.dtype)),
}


def reference_mlp_run(
    problem: Problem,
    hidden: tuple[int, ...],
    activation: str,
    epochs: int,
    lr: float,
    seed: int = SEED_NP_RANDOM_SEED,
    loss: str = "bce",
) -> Reference:
    """A textbook float64 NumPy MLP (hidden layers ``activation``, gradient descent) with a
    sigmoid output and the seed's BCE (``loss="bce"``), a softmax output and the multi-class
    cross-entropy (``"softmax-ce"``, y holding class labels), or a linear output and the mean
    squared error (``"mse"``), written apart from the Array API code it checks. It starts from
    the built-in MLP's ``init`` (so both start from the same numbers)."""
    act, act_grad = _ACT[activation]
    X, y = problem.X, problem.y
    k = int(y.max()) + 1 if loss == "softmax-ce" else y.shape[1]
    params = list(MLP(hidden, activation).init(np.random.default_rng(seed), X.shape[1], k))
    n, losses = len(y), []
    for _ in range(epochs):
        hs = [X]
        for layer in range(len(params) // 2):
            z = hs[-1] @ params[2 * layer] + params[2 * layer + 1]
            hs.append(z if layer == len(params) // 2 - 1 else act(z))
        value, delta = _OUTPUT[loss](hs.pop(), y)
        losses.append(value)
        grads = []
        for layer in reversed(range(len(params) // 2)):
            grads = [hs[layer].T @ delta / n, delta.sum(axis=0, keepdims=True) / n, *grads]
            if layer:
                delta = (delta @ params[2 * layer].T) * act_grad(hs[layer])
        params = [p - lr * g for p, g in zip(params, grads, strict=True)]
    return Reference(np.array(losses), params)


def _sigmoid_bce(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    A = 1 / (1 + np.exp(-z))
    return -np.mean(y * np.log(A) + (1 - y) * np.log(1 - A)), A - y


def _softmax_ce(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    shifted = z - z.max(axis=1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    onehot = np.eye(z.shape[1])[y[:, 0].astype(int)]
    return -np.mean(np.log(p[onehot == 1])), p - onehot


def _mse(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    # mean over all N·K elements; per row, the derivative 2(z - y)/K (the N comes after)
    return np.mean((z - y) ** 2), 2 * (z - y) / z.shape[1]


# the output layer and loss: (loss value, ∂(per-row loss)/∂z)
_OUTPUT = {"bce": _sigmoid_bce, "softmax-ce": _softmax_ce, "mse": _mse}
