"""Losses, each written once against the Array API with its analytic derivative.

A model's outputs ``out`` are N × d_out: logits for the classification losses, predictions for
``mse``. Each :class:`Loss` gives its per-element ``terms``, with the derivative of their *sum*
with respect to ``out`` (``terms_and_grad``: one sigmoid or logsumexp for both), and the number
the sum is divided by (``count``: the rows, or every element for ``mse``). Training divides
summed losses and gradients by that count once, at the end, so row blocks and data-parallel
replicas add up exactly as one full batch does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import readable_here
from .errors import InvalidInput


def sigmoid(xp: Any, z: Any) -> Any:
    """The seed's ``1/(1+exp(-z))``."""
    return 1 / (1 + xp.exp(-z))


def _bce_of(xp: Any, y: Any, A: Any) -> Any:
    """The seed's per-row terms ``-(y·log(A) + (1-y)·log(1-A))`` of probabilities ``A``."""
    return -(y * xp.log(A) + (1 - y) * xp.log(1 - A))


def _bce_guarded(
    xp: Any, y: Any, A: Any, z: Any, G: Any, tail: Any = None, seed: Any = None
) -> Any:
    """The seed's terms (:func:`_bce_of`, bit for bit) wherever ``A = sigmoid(z)`` lies
    strictly between 0 and 1; where the sigmoid saturated (``A`` rounded to 0 or 1: log 0),
    the term from the logit, ``G·z + exp(-|z|)`` with ``G = A - y`` (``bce-logits``' form,
    whose ``log1p(exp(-|z|))`` is ``exp(-|z|)`` to rounding there), so unscaled data trains
    without NaN. ``tail``: ``exp(-|z|)`` where the caller has it (training: from the
    sigmoid's own ``exp(-z)``); then only values are needed and the seed's non-finite terms
    (``seed``, where the caller has them) are simply replaced. Without it, the saturated rows'
    ``A`` is replaced before the logs, so autodiff meets no inf."""
    if tail is not None:  # the seed's terms are finite exactly where A is inside (0, 1)
        seed = _bce_of(xp, y, A) if seed is None else seed
        return xp.where(xp.isfinite(seed), seed, G * z + tail)
    saturated = (A == 0) | (A == 1)
    inside = xp.where(saturated, xp.full_like(A, 0.5), A)
    edge = G * z + xp.exp(-xp.abs(z))
    return xp.where(saturated, edge, _bce_of(xp, y, inside))


def _bce_terms(xp: Any, y: Any, z: Any) -> Any:
    A = sigmoid(xp, z)
    return _bce_guarded(xp, y, A, z, A - y)


def _bce_both(xp: Any, y: Any, z: Any) -> tuple[Any, Any]:
    """The terms and the seed's ``dz = A - y`` from one ``A = sigmoid(z)``, computed as the
    seed does, ``1/(1 + exp(-z))``, keeping ``exp(-z)`` for the saturated rows' terms."""
    e = xp.exp(-z)
    A = 1 / (1 + e)
    G = A - y
    seed = _bce_of(xp, y, A)
    if _all_finite_on_host(seed):
        return seed, G  # what the guard would return, without its five operations
    return _bce_guarded(xp, y, A, z, G, xp.minimum(e, 1 / e), seed), G


def _all_finite_on_host(x: Any) -> bool:
    """Whether ``x``'s values can be read here for free (:func:`xptrain.backends.readable_here`:
    a NumPy array or an eager torch CPU tensor) and are all finite. A device's read would wait
    for its queue, a traced array (jit, autodiff) has no value, a lazy one would be computed:
    there the answer is False and the caller takes the branch-free path. The seed's terms are
    ≥ 0 (or inf, NaN), so their sum is finite when every one is (and where it is not, the
    guard's ``where`` returns the same terms anyway)."""
    return readable_here(x) and math.isfinite(float(x.sum()))


def _bce_logits_terms(xp: Any, y: Any, z: Any) -> Any:
    """The same terms from the logits ``z``, stably: ``max(z, 0) - z·y + log1p(exp(-|z|))``."""
    return xp.maximum(z, xp.zeros_like(z)) - z * y + xp.log1p(xp.exp(-xp.abs(z)))


def _bce_logits_both(xp: Any, y: Any, z: Any) -> tuple[Any, Any]:
    """The stable terms and ``A - y`` (the same ``dz`` as the seed's form)."""
    return _bce_logits_terms(xp, y, z), sigmoid(xp, z) - y


def _logsumexp(xp: Any, z: Any) -> Any:
    """``log Σ exp(z)`` per row (N × 1), stable: the row's largest logit taken out first."""
    top = xp.max(z, axis=1, keepdims=True)
    return top + xp.log(xp.sum(xp.exp(z - top), axis=1, keepdims=True))


def _softmax_ce_terms(xp: Any, y: Any, z: Any) -> Any:
    """``logsumexp(z_i) − z_i[y_i]`` per row (``y`` one-hot: see :func:`one_hot`)."""
    return _logsumexp(xp, z) - xp.sum(y * z, axis=1, keepdims=True)


def _softmax_ce_both(xp: Any, y: Any, z: Any) -> tuple[Any, Any]:
    """The terms and ``softmax(z) − onehot(y)`` from one logsumexp."""
    lse = _logsumexp(xp, z)
    return lse - xp.sum(y * z, axis=1, keepdims=True), xp.exp(z - lse) - y


def one_hot(y: np.ndarray, k: int) -> np.ndarray:
    """Class labels (N × 1, 0..k-1) as N × k rows of one 1, on the host: how softmax-ce's
    targets travel to a device (building them there would need the column numbers made on
    the device, which under torch.compile goes through array-api-compat's cached helpers)."""
    out = np.zeros((len(y), k))
    out[np.arange(len(y)), y[:, 0].astype(np.int64)] = 1.0
    return out


def _mse_terms(xp: Any, y: Any, out: Any) -> Any:
    return (out - y) * (out - y)


def _mse_both(xp: Any, y: Any, out: Any) -> tuple[Any, Any]:
    return _mse_terms(xp, y, out), 2 * (out - y)


def _binary_hits(xp: Any, y: Any, z: Any) -> Any:
    """1 where a logit > 0 (class 1) matches the label, per row."""
    return xp.astype((z > 0) == (y > 0.5), z.dtype)


def _class_hits(xp: Any, y: Any, z: Any) -> Any:
    """1 where the largest logit's column is the label's (``y`` one-hot), per row (N × 1)."""
    return xp.astype(
        xp.argmax(z, axis=1, keepdims=True) == xp.argmax(y, axis=1, keepdims=True), z.dtype
    )


def _binary_labels(name: str, y: np.ndarray) -> int:
    if y.shape[1] != 1:
        raise InvalidInput(f"loss {name} needs one column of 0/1 labels; y has {y.shape[1]}")
    bad = (y != 0) & (y != 1)  # np.isin's answer, without its ~30 µs of set logic a call
    if bad.any():
        raise InvalidInput(
            f"labels must be 0 or 1 for loss {name}; y holds {y[bad][0]:g} "
            "(class labels 0..K-1: --loss softmax-ce; numbers: --loss mse)"
        )
    return 1


def _class_labels(name: str, y: np.ndarray) -> int:
    if y.shape[1] != 1:
        raise InvalidInput(f"loss {name} needs one column of class labels; y has {y.shape[1]}")
    bad = (y != np.round(y)) | (y < 0)
    if bad.any():
        raise InvalidInput(
            f"labels must be whole numbers 0..K-1 for loss {name}; y holds {y[bad][0]:g}"
        )
    return int(y.max()) + 1 if y.size else 1


def _any_targets(name: str, y: np.ndarray) -> int:
    return y.shape[1]


@dataclass(frozen=True)
class Loss:
    """A loss: its name, per-element ``terms(xp, y, out)`` (what autodiff differentiates), and
    ``terms_and_grad(xp, y, out)``: the terms with ∂Σterms/∂out, sharing what both need (the
    sigmoid, the logsumexp), what analytic training calls; whether the mean is over every
    element (``per_element``) or over rows, ``hits`` (per-row 1/0 of a correct class; None for
    regression) and ``outputs(y)``: d_out for targets ``y`` (N × columns, host), after
    checking them."""

    name: str
    terms: Callable[[Any, Any, Any], Any]
    terms_and_grad: Callable[[Any, Any, Any], tuple[Any, Any]]
    check: Callable[[str, np.ndarray], int]
    hits: Callable[[Any, Any, Any], Any] | None = None
    per_element: bool = False
    encode: Callable[[np.ndarray, int], np.ndarray] | None = None  # host targets → device's

    def targets(self, y: np.ndarray, d_out: int) -> np.ndarray:
        """The host targets as the loss reads them on a device (softmax-ce: one-hot rows of
        ``d_out`` columns; the others: as they are)."""
        return y if self.encode is None else self.encode(y, d_out)

    def outputs(self, y: np.ndarray) -> int:
        """The model's d_out for targets ``y`` (refused, one line, when they do not fit)."""
        return self.check(self.name, np.asarray(y).reshape(len(y), -1))

    def count(self, y: Any) -> int:
        """What the summed terms are divided by: the rows of ``y``, or its elements."""
        return y.shape[0] * (y.shape[1] if self.per_element else 1)

    def value(self, xp: Any, y: Any, out: Any) -> Any:
        """The loss: ``1/count · Σ terms`` (the seed's ``1/N * sum(...)``: its bits)."""
        return 1 / self.count(y) * xp.sum(self.terms(xp, y, out))

    @property
    def classifies(self) -> bool:
        """Whether the loss has classes (and so an accuracy)."""
        return self.hits is not None


LOSSES: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("bce", _bce_terms, _bce_both, _binary_labels, _binary_hits),
        Loss("bce-logits", _bce_logits_terms, _bce_logits_both, _binary_labels, _binary_hits),
        Loss(
            "softmax-ce",
            _softmax_ce_terms,
            _softmax_ce_both,
            _class_labels,
            _class_hits,
            encode=one_hot,
        ),
        Loss("mse", _mse_terms, _mse_both, _any_targets, per_element=True),
    )
}


AUTO = "auto"  # the option's default: the loss the targets call for (see for_labels)


def get(name: str) -> Loss:
    """The loss called ``name``."""
    if name == AUTO:  # a caller skipped Options.for_labels: a bug, not a user's mistake
        raise ValueError("loss 'auto' names no loss until the labels choose one (for_labels)")
    return LOSSES[name]


def for_labels(y: np.ndarray) -> str:
    """The loss ordinary targets ``y`` call for: ``bce`` for 0/1 labels (the seed's),
    ``softmax-ce`` for one column of class labels 0..K-1 (K ≥ 3, every class present: a
    regression's whole-number targets, such as counts or scikit-learn's diabetes, leave gaps),
    and ``mse`` for any other numbers."""
    y = np.asarray(y).reshape(len(y), -1)
    if y.shape[1] != 1 or not y.size:
        return "mse" if y.size else "bce"
    if ((y == 0) | (y == 1)).all():
        return "bce"
    if (y >= 0).all() and (y == np.round(y)).all():
        classes = int(y.max()) + 1
        if np.unique(y).size == classes:
            return "softmax-ce"
    return "mse"
