"""Small refusals: bad input is one line on stderr, exit code 2, nothing written, no traceback."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import xptrain

import xptrain as xpt
from xptrain.data import SEED_X, SEED_Y, load
from xptrain.errors import InvalidInput


def _refused(run, message):
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert message in run.stderr, run.stderr


def test_linear_refuses_a_negative_seed(tmp_path):
    with pytest.raises(InvalidInput, match="SEED ≥ 0"):
        load("linear:10,3,-1")
    out = tmp_path / "out.json"
    _refused(xptrain("train", "--data", "linear:10,3,-1", "--json", str(out)), "linear:10,3,-1")
    assert not out.exists()


@pytest.mark.parametrize("spec", ["seed:foo", "breast_cancer:xyz", "digits:1", "digits10:x"])
def test_specs_without_parameters_refuse_them(spec, tmp_path):
    with pytest.raises(InvalidInput, match="takes no parameters"):
        load(spec)
    out = tmp_path / "out.json"
    _refused(xptrain("train", "--data", spec, "--json", str(out)), spec)
    assert not out.exists()


def test_diabetes_refuses_parameters():
    with pytest.raises(InvalidInput, match=r"'diabetes:y'.*takes no parameters"):
        load("diabetes:y")


def test_json_over_the_data_file_is_refused(tmp_path):
    data = tmp_path / "d.csv"
    text = "0,1,0,0\n1,0,0,1\n1,1,1,1\n0,1,1,0\n"
    data.write_text(text)
    # the same file named two ways: relative from its folder, absolute on the command line
    run = xptrain("train", "--data", "d.csv", "--json", str(data), cwd=tmp_path)
    _refused(run, "same file")
    assert data.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


@pytest.mark.parametrize("name", ["../up", "a/b", "/abs", "a\\\\b", ".."])
def test_experiment_names_that_are_not_one_folder_name_are_refused(tmp_path, name):
    exp = tmp_path / "sub"
    exp.mkdir()
    path = exp / "exp.toml"
    path.write_text(f'name = "{name}"\n[train]\nepochs = 2\n[runs]\nbackends = ["numpy"]\n')
    _refused(xptrain("run", str(path), "--quiet", cwd=exp), "one folder name")
    assert [p.name for p in exp.iterdir()] == ["exp.toml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_a_loss_never_finite_blames_the_data_not_the_step(tmp_path):
    X = np.full((4, 3), 1e308)
    X[1, 0] = X[2, 1] = -1e308
    y = np.array([0.0, 1.0, 1.0, 0.0])
    with pytest.raises(xpt.TrainingDiverged, match="at epoch 0") as info:
        xpt.train(X, y, epochs=3)
    assert info.value.epoch == 0
    message = str(info.value)
    assert "smaller learning rate" not in message
    assert "--standardize" in message and "--loss bce-logits" in message
    data = tmp_path / "big.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",")
    _refused(xptrain("train", "--data", str(data), "--epochs", "3"), "--standardize")


def test_a_later_divergence_still_suggests_a_smaller_step():
    with pytest.raises(xpt.TrainingDiverged, match=r"at epoch 1;.*smaller learning rate"):
        xpt.train(SEED_X, SEED_Y, lr=1e4)
