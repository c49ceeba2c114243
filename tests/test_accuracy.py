"""Per-epoch training accuracy for a loss with classes: every gradient engine (full batch, row
blocks, autodiff, compiled and fused, minibatches) records the share of training rows that the
parameters each epoch starts from put in the right class, as the epoch's loss is theirs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import xptrain as cli

import xptrain
from xptrain import backends
from xptrain.api import train_problem
from xptrain.checkpoint import Checkpoint
from xptrain.data import load
from xptrain.options import Options

BINARY, CLASSES = load("blobs:300,5,2,3"), load("blobs:240,4,3,5")
EPOCHS, LR = 6, 0.5
MLP = {"hidden": (6,), "activation": "tanh"}


def _right(result: xptrain.TrainResult, problem, **options) -> list[float]:
    """Host float64 accuracy on the training rows of the NumPy run's parameters after each
    number of epochs 1 .. EPOCHS-1 (the parameters epochs 1 .. EPOCHS-1 start from)."""
    shares = []
    for k in range(1, EPOCHS):
        shorter = xptrain.train(problem.X, problem.y, epochs=k, lr=LR, **options)
        shares.append(shorter.evaluate(problem.X, problem.y)["accuracy"])
    return shares


@pytest.mark.parametrize(
    "problem, options",
    [
        (BINARY, {}),
        (BINARY, {"path": "block:64"}),
        (CLASSES, {"loss": "softmax-ce", **MLP}),
    ],
    ids=["logistic", "row-blocks", "softmax-mlp"],
)
def test_training_accuracy_is_that_of_the_epochs_starting_parameters(
    backend, grad, mode, problem, options
):
    if "path" in options and (grad == "autodiff" or mode == "jit"):
        pytest.skip("row blocks are the eager analytic engine's (JAX folds them the same way)")
    result = backend.train(
        problem.X, problem.y, epochs=EPOCHS, lr=LR, grad=grad, mode=mode, **options
    )
    assert len(result.accuracy) == len(result.losses) == EPOCHS
    want = _right(result, problem, **{k: v for k, v in options.items() if k != "path"})
    # float64: the same rows right as the host run's (a row exactly on a boundary is unlikely)
    assert result.accuracy[1:] == pytest.approx(want, abs=1e-12)
    assert 0 <= result.accuracy[0] <= 1


def test_minibatch_accuracy_is_the_batches_weighted_by_their_rows(backend):
    """An epoch of minibatches: each batch's accuracy under the parameters it starts from,
    weighted by its rows (as the loss is); the backends agree."""
    options = {"epochs": EPOCHS, "lr": LR, "batch_size": 64}  # 300 rows: 4 of 64, one of 44
    got = backend.train(BINARY.X, BINARY.y, **options)
    want = xptrain.train(BINARY.X, BINARY.y, **options)
    assert got.accuracy == pytest.approx(want.accuracy, abs=1e-12)
    assert all(round(a * 300) == pytest.approx(a * 300, abs=1e-9) for a in want.accuracy)


def test_a_regression_has_no_accuracy(tmp_path):
    target = np.column_stack([BINARY.X[:, 0] * 2.0])
    result = xptrain.train(BINARY.X, target, loss="mse", epochs=3, lr=0.1)
    assert result.accuracy == [] and "accuracy" not in result.to_dict()


def test_an_old_checkpoint_without_accuracy_resumes_with_null_epochs():
    """A checkpoint written before accuracy was recorded: the epochs it holds have no
    accuracy (NaN; null in the JSON), the resumed epochs do."""
    bk, saved = backends.get("numpy"), []
    train_problem(BINARY, bk, "cpu", Options(epochs=3), on_checkpoint=saved.append)
    old = saved[-1]
    old = Checkpoint(old.epoch, old.params, {"loss": old.losses}, old.meta, old.state)
    resumed = train_problem(BINARY, bk, "cpu", Options(epochs=EPOCHS), start=old)
    whole = train_problem(BINARY, bk, "cpu", Options(epochs=EPOCHS))
    assert resumed.losses == whole.losses
    assert np.isnan(resumed.accuracy[:3]).all() and resumed.accuracy[3:] == whole.accuracy[3:]
    assert resumed.to_dict()["accuracy"][:3] == [None] * 3


def test_cli_reports_training_accuracy_and_keeps_the_seeds_lines(tmp_path):
    out = tmp_path / "run.json"
    done = cli("train", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "Epoch: 19 Loss: 0.203407060401"  # the seed's line
    assert "training accuracy 1.0000" in done.stderr
    record = json.loads(out.read_text())
    assert len(record["accuracy"]) == 20 and record["accuracy"][-1] == 1.0
