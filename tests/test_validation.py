"""``--val-split``: held-out rows drawn on the host, their loss and accuracy after every epoch,
the same on every backend, kept across a resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import xptrain as cli

import xptrain
from xptrain import backends
from xptrain.api import train_problem
from xptrain.data import load, split
from xptrain.options import Options
from xptrain.reference import reference_run

DATA = load("blobs:300,5,2,3")
EPOCHS, LR, SPLIT = 8, 0.5, 0.25


def _host_metrics(params: list[np.ndarray], X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The seed's BCE and the accuracy of a logistic model, in plain NumPy."""
    W, b = params
    z = X @ W + b
    A = 1 / (1 + np.exp(-z))
    loss = -np.mean(y * np.log(A) + (1 - y) * np.log(1 - A))
    return float(loss), float(np.mean((z > 0) == (y > 0.5)))


def test_split_is_seeded_disjoint_and_ordered():
    train, val = split(DATA, SPLIT, 1)
    assert (len(train.y), len(val.y)) == (225, 75)
    rows = {tuple(r) for r in DATA.X}
    assert {tuple(r) for r in train.X} | {tuple(r) for r in val.X} == rows
    assert not {tuple(r) for r in train.X} & {tuple(r) for r in val.X}
    again, _ = split(DATA, SPLIT, 1)
    assert np.array_equal(train.X, again.X)
    assert not np.array_equal(train.X, split(DATA, SPLIT, 2)[0].X)
    index = [int(np.flatnonzero((r == DATA.X).all(1))[0]) for r in val.X]
    assert index == sorted(index)  # the original row order is kept


def test_validation_metrics_after_each_epoch(backend, dtype, mode):
    """Epoch k's validation numbers are those of the parameters after k+1 updates, on the
    held-out rows only: checked against a host computation from a run of k+1 epochs."""
    result = backend.train(
        DATA.X, DATA.y, epochs=EPOCHS, lr=LR, val_split=SPLIT, dtype=dtype, mode=mode
    )
    assert len(result.val_losses) == len(result.val_accuracy) == len(result.losses) == EPOCHS
    train, val = split(DATA, SPLIT, 1)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    # float64 classifies every held-out row as the reference does; float32 may flip one that
    # lies on the boundary
    flips = 0 if dtype == "float64" else 1
    for k in (0, EPOCHS - 1):
        shorter = reference_run(train, epochs=k + 1, lr=LR)  # the host float64 reference
        loss, accuracy = _host_metrics(shorter.params, val.X, val.y)
        assert result.val_losses[k] == pytest.approx(loss, rel=rtol)
        right, expected = (round(a * len(val.y)) for a in (result.val_accuracy[k], accuracy))
        assert abs(right - expected) <= flips, f"epoch {k}: {right} of {len(val.y)} right"
    # the training loss is over the other rows: not the full-data run's
    assert result.losses[0] != pytest.approx(xptrain.train(DATA.X, DATA.y, epochs=1).losses[0])


def test_mlp_minibatch_validation_agrees_across_backends(backend):
    """The last epoch's validation numbers are the final parameters' on the held-out rows,
    computed apart in plain NumPy (numpy's own run included); every epoch's are numpy's."""
    options = dict(epochs=4, lr=0.1, val_split=0.2, hidden=(6,), activation="tanh", batch_size=64)
    ours = backend.train(DATA.X, DATA.y, **options)
    _, val = split(DATA, 0.2, 1)
    W1, b1, W2, b2 = (np.asarray(p, dtype=np.float64) for p in ours.params)
    z = np.tanh(val.X @ W1 + b1) @ W2 + b2
    A = 1 / (1 + np.exp(-z))
    loss = -np.mean(val.y * np.log(A) + (1 - val.y) * np.log(1 - A))
    assert ours.val_losses[-1] == pytest.approx(loss, rel=1e-12)
    assert round(ours.val_accuracy[-1] * len(val.y)) == np.sum((z > 0) == (val.y > 0.5))
    numpy = xptrain.train(DATA.X, DATA.y, **options)
    np.testing.assert_allclose(ours.val_losses, numpy.val_losses, rtol=1e-12)
    np.testing.assert_allclose(ours.val_accuracy, numpy.val_accuracy, rtol=0, atol=1e-12)


def test_resume_keeps_the_validation_history_and_refuses_another_split():
    bk, saved = backends.get("numpy"), []
    train_problem(DATA, bk, "cpu", Options(epochs=3, val_split=SPLIT), on_checkpoint=saved.append)
    whole = train_problem(DATA, bk, "cpu", Options(epochs=EPOCHS, val_split=SPLIT))
    resumed = train_problem(
        DATA, bk, "cpu", Options(epochs=EPOCHS, val_split=SPLIT), start=saved[-1]
    )
    assert resumed.val_losses == whole.val_losses and resumed.losses == whole.losses
    assert resumed.val_accuracy == whole.val_accuracy
    for other in (0.5, None):
        with pytest.raises(xptrain.InvalidInput, match="same val_split"):
            options = Options(epochs=EPOCHS, val_split=other)
            train_problem(DATA, bk, "cpu", options, start=saved[-1])
    with pytest.raises(xptrain.InvalidInput, match="same seed"):
        options = Options(epochs=EPOCHS, val_split=SPLIT, seed=2)
        train_problem(DATA, bk, "cpu", options, start=saved[-1])


def test_cli_prints_and_records_validation(tmp_path):
    out = tmp_path / "r.json"
    run = cli(
        "train",
        "--data",
        "blobs:300,5,2,3",
        "--val-split",
        "0.25",
        "--epochs",
        "3",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3 and all("Val loss: " in ln and "Val accuracy: " in ln for ln in lines)
    record = json.loads(out.read_text())
    assert record["val_split"] == 0.25
    assert len(record["val_losses"]) == len(record["val_accuracy"]) == 3
    # without a split, the seed's output and record are as before
    plain = cli("train", "--json", str(out))
    assert "Val" not in plain.stdout and "val_losses" not in json.loads(out.read_text())


@pytest.mark.parametrize(
    "value, message",
    [
        ("0", "between 0 and 1"),
        ("1", "between 0 and 1"),
        ("-0.2", "between 0 and 1"),
        ("nan", "between 0 and 1"),
        ("0.1", "no validation sample"),  # 0.1 of the seed's 4 rows rounds to 0
        ("0.9", "no training sample"),
        ("x", "invalid float value"),
    ],
)
def test_bad_validation_splits(value, message):
    run = cli("train", "--val-split", value)
    assert run.returncode == 2 and message in run.stderr and len(run.stderr.splitlines()) == 1


def test_standardize_scales_with_the_training_rows_only():
    """The held-out rows are scaled with the training rows' mean and deviation: nothing of
    them leaks into training."""
    from xptrain.data import make_problem, standardize

    data = make_problem(DATA.X * 10 + 3, DATA.y)
    result = xptrain.train(data.X, data.y, epochs=1, lr=LR, val_split=SPLIT, standardize=True)
    train, val = split(data, SPLIT, 1)
    loss, _ = _host_metrics(result.params, standardize(val, like=train).X, val.y)
    assert result.val_losses[0] == pytest.approx(loss, rel=1e-12)
    leaked, _ = _host_metrics(result.params, standardize(val, like=data).X, val.y)
    assert leaked != pytest.approx(loss, rel=1e-6)


@pytest.mark.needs("matplotlib")
def test_the_plot_draws_the_held_out_curves_and_accuracy():
    from xptrain.plot import history_figure, loss_figure

    result = xptrain.train(DATA.X, DATA.y, epochs=EPOCHS, lr=LR, val_split=SPLIT)
    fig = loss_figure(result.to_dict(), "t")
    loss_ax, accuracy_ax = fig.axes
    assert [len(line.get_ydata()) for line in loss_ax.get_lines()] == [EPOCHS, EPOCHS]
    assert list(accuracy_ax.get_lines()[1].get_ydata()) == result.val_accuracy
    runs = {f"run {i}": {"losses": [1.0, 0.5]} for i in range(25)}
    lines = history_figure(runs, "t").axes[0].get_lines()
    looks = {(str(line.get_color()), line.get_linestyle()) for line in lines}
    assert len(looks) == 25  # no two curves alike, so the legend identifies each
