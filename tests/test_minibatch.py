"""Minibatch SGD: the row order is drawn on the host from (seed, epoch), so every backend sees
the same batches; checked against a textbook NumPy minibatch loop, and resumed exactly."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import xptrain as cli

import xptrain
from xptrain import backends
from xptrain.api import train_problem
from xptrain.conformance import compare, tolerance
from xptrain.data import batch_order, initial_weights
from xptrain.options import Options
from xptrain.reference import Reference

EPOCHS, LR, BATCH = 6, 0.1, 100


def _textbook(data, batch: int) -> Reference:
    X, y = data.X, data.y
    n = len(y)
    W, b = initial_weights(X.shape[1], 1), np.zeros((1, 1))
    losses = []
    for epoch in range(EPOCHS):
        idx = batch_order(n, 1, epoch)
        total = 0.0
        for start in range(0, n, batch):
            Xb, yb = X[idx[start : start + batch]], y[idx[start : start + batch]]
            A = 1 / (1 + np.exp(-(Xb @ W + b)))
            total += -np.sum(yb * np.log(A) + (1 - yb) * np.log(1 - A))
            dz = A - yb
            W, b = W - LR * (Xb.T @ dz / len(yb)), b - LR * dz.sum(0, keepdims=True) / len(yb)
        losses.append(total / n)
    return Reference(np.array(losses), [W, b])


def test_every_backend_sees_the_same_batches(backend, grad, mode, breast_cancer):
    result = backend.train(
        breast_cancer.X,
        breast_cancer.y,
        epochs=EPOCHS,
        lr=LR,
        batch_size=BATCH,
        grad=grad,
        mode=mode,
    )
    agreement = compare(
        result, _textbook(breast_cancer, BATCH), tolerance("float64", *breast_cancer.X.shape)
    )
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err)


def test_batch_order_is_a_seeded_permutation():
    a = batch_order(10, 1, 0)
    assert sorted(a) == list(range(10))
    assert np.array_equal(a, batch_order(10, 1, 0))
    assert not np.array_equal(a, batch_order(10, 1, 1))
    assert not np.array_equal(a, batch_order(10, 2, 0))


def test_one_batch_of_everything_is_full_batch_reordered(breast_cancer):
    full = xptrain.train(breast_cancer.X, breast_cancer.y, epochs=EPOCHS, lr=LR)
    one = xptrain.train(
        breast_cancer.X, breast_cancer.y, epochs=EPOCHS, lr=LR, batch_size=len(breast_cancer.y)
    )
    ref = Reference(np.array(full.losses), full.params)
    assert compare(one, ref, tolerance("float64", *breast_cancer.X.shape)).passed


def test_minibatch_runs_resume_exactly_and_refuse_another_batch_size(breast_cancer):
    bk, saved = backends.get("numpy"), []
    half = Options(epochs=3, lr=LR, batch_size=BATCH)
    train_problem(breast_cancer, bk, "cpu", half, on_checkpoint=saved.append)
    full = Options(epochs=EPOCHS, lr=LR, batch_size=BATCH)
    assert (
        train_problem(breast_cancer, bk, "cpu", full, start=saved[-1]).losses
        == train_problem(breast_cancer, bk, "cpu", full).losses
    )
    with pytest.raises(xptrain.InvalidInput, match="same batch_size"):
        train_problem(
            breast_cancer, bk, "cpu", Options(epochs=EPOCHS, lr=LR, batch_size=50), start=saved[-1]
        )


@pytest.mark.parametrize(
    "size, message",
    [
        ("0", "whole number ≥ 1"),
        ("5", "larger than the 4 training samples"),
        ("x", "invalid int value"),
    ],
)
def test_bad_batch_sizes(size, message):
    run = cli("train", "--batch-size", size)
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.splitlines()) == 1


def test_a_minibatch_resume_needs_the_same_seed(breast_cancer):
    bk, saved = backends.get("numpy"), []
    train_problem(
        breast_cancer,
        bk,
        "cpu",
        Options(epochs=3, lr=LR, batch_size=BATCH, seed=5),
        on_checkpoint=saved.append,
    )
    with pytest.raises(xptrain.InvalidInput, match="same seed"):
        train_problem(
            breast_cancer, bk, "cpu", Options(epochs=6, lr=LR, batch_size=BATCH), start=saved[-1]
        )
