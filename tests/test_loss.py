"""The stable BCE from logits: the seed's loss where the seed's is finite, and finite where the
seed's is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import xptrain as cli

import xptrain
from xptrain.conformance import compare, tolerance
from xptrain.data import SEED_X, SEED_Y, initial_weights, seed_problem
from xptrain.reference import reference_run


def test_logits_form_is_the_seeds_loss(backend, grad, mode):
    result = backend.train(
        SEED_X,
        SEED_Y,
        loss="bce-logits",
        grad=grad,
        mode=mode,
    )
    assert compare(result, reference_run(seed_problem()), tolerance("float64", 4, 3)).passed


def test_logits_form_stays_finite_where_the_seeds_saturates(backend):
    with pytest.raises(xptrain.TrainingDiverged):
        backend.train(SEED_X, SEED_Y, lr=1e4)
    result = backend.train(
        SEED_X,
        SEED_Y,
        lr=1e4,
        epochs=5,
        loss="bce-logits",
    )
    assert np.isfinite(result.losses).all()
    np.testing.assert_allclose(result.losses, _stable_reference(1e4, 5), rtol=1e-12)


def _stable_reference(lr: float, epochs: int) -> list[float]:
    """The seed's loop in plain float64 NumPy with the loss from the logits, written apart:
    BCE = log(1 + e^z) - z·y, and sigmoid(z) = e^-log(1 + e^-z), both finite when saturated."""
    X, y = SEED_X.astype(np.float64), SEED_Y.astype(np.float64).reshape(-1, 1)
    W, b, n, losses = initial_weights(X.shape[1], 1), 0.0, len(y), []
    for _ in range(epochs):
        z = X @ W + b
        losses.append(float(np.mean(np.logaddexp(0, z) - z * y)))
        dz = np.exp(-np.logaddexp(0, -z)) - y
        W, b = W - lr * (X.T @ dz) / n, b - lr * float(np.sum(dz)) / n
    return losses


def test_cli_records_loss_and_batch_size(tmp_path):
    out = tmp_path / "r.json"
    run = cli("train", "--loss", "bce-logits", "--batch-size", "2", "--quiet", "--json", str(out))
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert record["loss"] == "bce-logits" and record["batch_size"] == 2
    bad = cli("train", "--loss", "hinge")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
