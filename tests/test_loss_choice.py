"""Without ``--loss``, the labels choose the loss: 0/1 -> bce (the seed's), classes 0..K-1 ->
softmax-ce, other numbers -> mse; so every packaged data set and generator trains with the
default options, on every CPU backend, in both precisions, without NaN."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import xptrain

import xptrain as xpt
from xptrain import checkpoint
from xptrain.api import train_problem
from xptrain.backends import get as get_backend
from xptrain.data import GENERATORS, load
from xptrain.errors import OptionError
from xptrain.loss import for_labels
from xptrain.options import Options

CHOICES = {
    "0/1": ([0, 1, 1, 0], "bce"),
    "0/1 as floats, one column": ([[0.0], [1.0], [1.0]], "bce"),
    "one class only": ([1, 1, 1], "bce"),
    "classes 0..3": ([3, 0, 2, 1, 2], "softmax-ce"),
    "whole numbers with gaps (a count, diabetes)": ([25, 151, 75, 346], "mse"),
    "classes 0, 1, 3 (2 missing)": ([0, 1, 3, 3], "mse"),
    "negative whole numbers": ([-1, 0, 1, 2], "mse"),
    "fractions": ([0.5, 1.0, 0.0], "mse"),
    "two 0/1 columns": ([[0, 1], [1, 0]], "mse"),
}


@pytest.mark.parametrize("case", CHOICES)
def test_the_labels_choose_the_loss(case):
    y, expected = CHOICES[case]
    assert for_labels(np.array(y, dtype=float)) == expected


# each data spec a user may type with no parameters, and the generators with small sizes
SPECS = [
    pytest.param(spec, marks=pytest.mark.needs("sklearn"))
    if spec in ("breast_cancer", "digits", "digits10", "diabetes")
    else spec
    for spec in GENERATORS
    if spec not in ("linear", "blobs")
] + ["linear:2000,16", "blobs:600,5,4"]
CHOSEN = {"digits10": "softmax-ce", "blobs:600,5,4": "softmax-ce", "diabetes": "mse"}


@pytest.mark.parametrize("spec", SPECS)
def test_every_packaged_set_trains_with_default_options(spec, backend, dtype):
    problem = load(spec)
    result = backend.train(problem.X, problem.y, dtype=dtype, epochs=5)
    assert result.options.loss == CHOSEN.get(spec, "bce")
    assert np.isfinite(result.losses).all() and all(np.isfinite(p).all() for p in result.params)


def test_the_default_still_prints_the_seed_and_names_the_loss(tmp_path):
    run = xptrain("train", "--json", str(tmp_path / "r.json"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "Epoch: 19 Loss: 0.203407060401"
    assert "last bce loss 0.203407" in run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["loss"] == "bce"


@pytest.mark.needs("sklearn")
def test_the_cli_names_the_loss_the_labels_chose(tmp_path):
    run = xptrain(
        "train", "--data", "digits10", "--epochs", "3", "--json", str(tmp_path / "r.json")
    )
    assert run.returncode == 0, run.stderr
    assert "last softmax-ce loss" in run.stderr
    assert json.loads((tmp_path / "r.json").read_text())["loss"] == "softmax-ce"


def test_a_chosen_loss_is_what_a_resume_must_match(tmp_path):
    y = np.array([0, 1, 2, 1, 0, 2, 2, 1], dtype=float)
    X = np.random.default_rng(0).normal(size=(8, 3))
    problem, bk = xpt.data.make_problem(X, y), get_backend("numpy")
    saved = []
    train_problem(problem, bk, "cpu", Options(epochs=2), on_checkpoint=saved.append)
    assert saved[-1].meta["loss"] == "softmax-ce"
    again = train_problem(problem, bk, "cpu", Options(epochs=4), start=saved[-1])  # auto again
    assert again.options.loss == "softmax-ce" and len(again.losses) == 4
    with pytest.raises(OptionError, match="made with loss softmax-ce"):
        train_problem(problem, bk, "cpu", Options(epochs=4, loss="mse"), start=saved[-1])


def test_a_checkpoint_from_before_the_choice_resumes_as_bce():
    problem, bk = load("seed"), get_backend("numpy")
    saved = []
    train_problem(problem, bk, "cpu", Options(epochs=2), on_checkpoint=saved.append)
    done = saved[-1]
    # written before the loss was recorded: it ran the default then, bce
    meta = {k: v for k, v in done.meta.items() if k != "loss"}
    old = checkpoint.Checkpoint(done.epoch, done.params, done.history, meta, done.state)
    again = train_problem(problem, bk, "cpu", Options(epochs=3), start=old)
    assert again.options.loss == "bce" and len(again.losses) == 3


@pytest.mark.needs("sklearn")
def test_an_experiment_without_a_loss_takes_the_labels_choice(tmp_path):
    (tmp_path / "exp.toml").write_text(
        'name = "classes"\n[data]\nsource = "blobs:200,3,3"\n[train]\nepochs = 3\nlr = 0.1\n'
        '[runs]\nbackends = ["numpy"]\ndevices = ["cpu"]\ndtypes = ["float64"]\n'
    )
    run = xptrain("run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*.json")]
    assert records and {r["run"]["loss"] for r in records} == {"softmax-ce"}
