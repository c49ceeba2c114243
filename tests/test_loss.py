"""The stable BCE from logits: the seed's loss where the seed's is finite, and finite where the
seed's is not."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import on_backends
from helpers import xptrain as cli

import xptrain
from xptrain.conformance import compare, tolerance
from xptrain.data import SEED_X, SEED_Y, initial_weights, seed_problem
from xptrain.loss import get
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


@pytest.mark.parametrize("loss", ["bce", "bce-logits"])
def test_both_bce_forms_stay_finite_where_the_seeds_formula_saturates(backend, loss):
    """lr 1e4 saturates the sigmoid from epoch 1 (the seed's literal formula: log 0, NaN):
    the default bce takes those rows from the logit form, bce-logits is that form."""
    result = backend.train(SEED_X, SEED_Y, lr=1e4, epochs=5, loss=loss)
    assert np.isfinite(result.losses).all()
    np.testing.assert_allclose(result.losses, _stable_reference(1e4, 5), rtol=1e-12, atol=1e-300)


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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("data", ["breast_cancer", "digits", "linear:10000,64", "blobs:500,8,2"])
def test_the_default_loss_trains_unscaled_data_without_nan(data, dtype):
    """The seed's bce saturates on ordinary unscaled data (log 0 at epoch 0); the default bce
    takes those rows' terms from the stable logit form and keeps every other bit."""
    if data in ("breast_cancer", "digits"):
        pytest.importorskip("sklearn", reason="scikit-learn's packaged data")
    problem = xptrain.load(data)
    result = xptrain.train(problem.X, problem.y, dtype=dtype, epochs=20)
    assert np.isfinite(result.losses).all()


@pytest.mark.parametrize("name", on_backends("numpy", "torch", "jax"))
def test_saturated_rows_take_the_stable_terms_and_autodiff_stays_finite(name):
    bk = xptrain.backends.get(name)
    z = np.array([[40.0], [-800.0], [0.3]])  # A rounds to 1, exp(800) overflows, an ordinary row
    y = np.array([[0.0], [1.0], [1.0]])
    with bk.float_scope("float64"):
        on = [bk.asarray(a, "float64", bk.native_device("cpu")) for a in (y, z)]
        terms = bk.to_numpy(get("bce").terms(bk.xp, *on))
    np.testing.assert_allclose(terms[:2, 0], [40.0, 800.0], rtol=1e-15)
    A = 1 / (1 + np.exp(-0.3))
    assert terms[2, 0] == -(1 * np.log(A) + 0 * np.log(1 - A))  # the seed's bits elsewhere
    if bk.caps.autodiff:  # rows whose A rounds to 1 (exp(-z) > 0: the sigmoid's own
        # derivative is finite; at exp overflow, z < -709, it is inf/inf in the seed's sigmoid)
        grad = bk.value_and_grad(lambda z, y: (get("bce").value(bk.xp, y, z),) * 2)
        with bk.float_scope("float64"):
            (_, _), dz = grad(on[1][::2, ...], on[0][::2, ...])
        np.testing.assert_allclose(bk.to_numpy(dz)[:, 0], [0.5, (A - 1) / 2], rtol=1e-12)


@pytest.mark.backends("torch")
def test_only_arrays_read_here_for_free_skip_the_guard():
    """The guard's five extra operations are skipped where the terms are all finite and can be
    read for free: NumPy arrays and eager torch CPU tensors (12% of torch's epoch at N = 2**20);
    a traced tensor (torch.compile, torch.func) has no value and must take the branch-free path."""
    import torch

    from xptrain.backends import readable_here

    def scaled(x):
        return x * (2.0 if readable_here(x) else 3.0)

    assert readable_here(np.ones(2)) and scaled(torch.ones(2)).tolist() == [2.0, 2.0]
    assert torch.compile(scaled)(torch.ones(2)).tolist() == [3.0, 3.0]
    assert torch.func.grad(lambda x: scaled(x).sum())(torch.ones(2)).tolist() == [3.0, 3.0]
    assert not readable_here(np.float64(1.0)) and not readable_here([1.0])
