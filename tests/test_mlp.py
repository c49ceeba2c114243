"""MLPs: analytic backprop through every layer on every backend, against a textbook NumPy MLP;
their options; their checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import initial_params
from helpers import xptrain as cli

import xptrain
from xptrain import backends, problems
from xptrain.api import train_problem
from xptrain.conformance import compare, tolerance
from xptrain.data import make_problem
from xptrain.options import Options
from xptrain.reference import reference_mlp_run

# Each activation in one depth and relu (the one with a kink) in both, not every pair: the
# layers' backward is the same code whatever the activation (the matrix of every backend ×
# dtype × engine × mode makes each pair cost about 50 s of the suite).
ARCHITECTURES = {
    "one-layer-sigmoid": ((8,), "sigmoid"),
    "two-layers-tanh": ((16, 8), "tanh"),
    "one-layer-relu": ((8,), "relu"),
    "two-layers-relu": ((16, 8), "relu"),
}


@pytest.mark.parametrize(("hidden", "activation"), ARCHITECTURES.values(), ids=ARCHITECTURES)
def test_every_backend_matches_the_textbook_mlp(
    backend, activation, hidden, dtype, grad, mode, breast_cancer
):
    # a chunked library builds a graph per epoch (Dask: ~0.2 s an epoch here): fewer epochs
    epochs = 10 if backend.impl.caps.chunked else 30
    result = backend.train(
        breast_cancer.X,
        breast_cancer.y,
        hidden=hidden,
        activation=activation,
        epochs=epochs,
        lr=0.5,
        dtype=dtype,
        grad=grad,
        mode=mode,
    )
    ref = reference_mlp_run(breast_cancer, hidden, activation, epochs, 0.5)
    tau = tolerance(dtype, breast_cancer.X.shape[0], max(breast_cancer.X.shape[1], *hidden))
    agreement = compare(result, ref, tau)
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err)
    assert [p.shape for p in result.params] == [p.shape for p in ref.params]


@pytest.mark.needs("autodiff")
@pytest.mark.parametrize("hidden", [(4,), (2, 2)])
def test_relu_autodiff_agrees_with_backprop_at_exact_zeros(backend, hidden, breast_cancer):
    """A row of zeros makes every first-layer pre-activation exactly 0 (the biases start at 0),
    where relu has no derivative: both gradient engines must take it as 0."""
    X = np.vstack([np.zeros((1, 30)), breast_cancer.X[:40]])
    y = np.vstack([[1.0], breast_cancer.y[:40]])
    runs = [
        backend.train(
            X,
            y,
            hidden=hidden,
            activation="relu",
            epochs=3,
            lr=0.5,
            grad=grad,
        )
        for grad in ("analytic", "autodiff")
    ]
    for a, b in zip(runs[0].params, runs[1].params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_float64_sequences_agree_within_1e_10_across_backends(backend, breast_cancer):
    """The experiments issue's bar: an MLP on standardised breast-cancer, every backend and
    device against NumPy's run."""
    X, y, options = breast_cancer.X, breast_cancer.y, dict(hidden=(16,), activation="tanh")
    numpy = np.array(xptrain.train(X, y, epochs=50, lr=0.5, **options).losses)
    losses = np.array(backend.train(X, y, epochs=50, lr=0.5, **options).losses)
    assert len(losses) == 50
    assert np.max(np.abs(losses - numpy) / numpy) < 1e-10


def test_glorot_initialisation_is_seeded_and_scaled(breast_cancer):
    a = initial_params(breast_cancer, (16, 8), seed=1)
    assert [p.shape for p in a] == [(30, 16), (1, 16), (16, 8), (1, 8), (8, 1), (1, 1)]
    assert np.abs(a[0]).max() <= np.sqrt(6 / (30 + 16))
    assert all(
        np.array_equal(p, q)
        for p, q in zip(a, initial_params(breast_cancer, (16, 8), 1), strict=True)
    )
    assert not np.array_equal(a[0], initial_params(breast_cancer, (16, 8), seed=2)[0])
    with pytest.raises(xptrain.InvalidInput, match="logistic model"):
        initial_params(make_problem(breast_cancer.X, breast_cancer.y, W=np.zeros(30)), (4,))


@pytest.mark.parametrize("hidden", [(0,), (4, -1), (2.5,)])
def test_bad_hidden_sizes(hidden):
    with pytest.raises(xptrain.InvalidInput, match="hidden layer sizes"):
        Options(hidden=hidden)


def test_mlp_with_adam_resumes_exactly(tmp_path, breast_cancer):
    saved = []
    bk = backends.get("numpy")
    half = Options(epochs=10, lr=0.01, optimizer="adam", hidden=(8,), activation="relu")
    train_problem(breast_cancer, bk, "cpu", half, on_checkpoint=saved.append)
    full = Options(epochs=20, lr=0.01, optimizer="adam", hidden=(8,), activation="relu")
    resumed = train_problem(breast_cancer, bk, "cpu", full, start=saved[-1])
    whole = train_problem(breast_cancer, bk, "cpu", full)
    assert resumed.losses == whole.losses
    other = Options(epochs=20, lr=0.01, optimizer="adam", hidden=(4,), activation="relu")
    with pytest.raises(xptrain.InvalidInput, match="same hidden"):
        train_problem(breast_cancer, bk, "cpu", other, start=saved[-1])


@pytest.mark.needs(*problems.get("breast_cancer").needs)
def test_cli_mlp(tmp_path):
    out = tmp_path / "mlp.json"
    run = cli(
        "train",
        "--data",
        "breast_cancer",
        "--standardize",
        "--model",
        "mlp",
        "--hidden",
        "8,4",
        "--activation",
        "tanh",
        "--epochs",
        "5",
        "--lr",
        "0.5",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert len(run.stdout.splitlines()) == 5
    record = json.loads(out.read_text())
    assert record["model"] == "mlp" and record["hidden"] == [8, 4] and record["standardize"]
    assert [np.array(p).shape for p in record["params"]] == [
        (30, 8),
        (1, 8),
        (8, 4),
        (1, 4),
        (4, 1),
        (1, 1),
    ]
    for args, message in (
        (["--model", "logistic", "--hidden", "4"], "need --model mlp"),
        (["--model", "mlp", "--hidden", "0"], "every value must be ≥ 1"),
        (["--model", "mlp", "--hidden", "a"], "whole numbers"),
        (["--model", "mlp", "--activation", "swish"], "invalid choice"),
    ):
        bad = cli("train", *args)
        assert bad.returncode == 2 and message in bad.stderr and len(bad.stderr.splitlines()) == 1
