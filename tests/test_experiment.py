"""``xptrain run experiment.toml``: one folder with every run's history, the agreement table and
plots; interrupted experiments finish with --resume; bad files are refused in one line."""

from __future__ import annotations

import json
import textwrap

import pytest
from helpers import NAMESPACES, xptrain

from xptrain import backends

EXPERIMENT = """\
name = "small"

[data]
source = "linear:300,4,2"
standardize = true
val_split = 0.2

[model]
kind = "mlp"
hidden = [5]
activation = "tanh"

[train]
epochs = 5
lr = 0.05
optimizer = "adam"
batch_size = 64

[runs]
devices = ["cpu"]
dtypes = ["float64", "float32"]
"""


def _write(tmp_path, text=EXPERIMENT, name="exp.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.needs("matplotlib")  # its losses.png and agreement.png
def test_an_experiment_runs_every_installed_backend_into_one_folder(tmp_path):
    path = _write(tmp_path)
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    folder = tmp_path / "small"
    assert {p.name for p in folder.iterdir()} == {
        "experiment.toml",
        "runs",
        "agreement.json",
        "agreement.txt",
        "losses.png",
        "agreement.png",
    }
    assert (folder / "experiment.toml").read_text() == path.read_text()
    report = json.loads((folder / "agreement.json").read_text())
    assert report["passed"] and report["experiment"]["train"]["optimizer"] == "adam"
    installed = [name for name in backends.available() if name != "cupy"]
    assert {(r["backend"], r["dtype"]) for r in report["results"]} == {
        (name, dtype) for name in installed for dtype in ("float64", "float32")
    }
    for result in report["results"]:  # float64 runs agree with NumPy's to rounding
        limit = 1e-12 if result["dtype"] == "float64" else 1e-4
        assert result["max_rel_err"] < limit, result
    runs = sorted((folder / "runs").glob("*.json"))
    assert len(runs) == len(report["results"])
    record = json.loads(runs[0].read_text())["run"]
    assert len(record["losses"]) == len(record["val_losses"]) == len(record["val_accuracy"]) == 5
    assert record["hidden"] == [5] and record["batch_size"] == 64 and record["val_split"] == 0.2
    assert "PASS: all" in run.stdout and "results in small" in run.stdout


def test_resume_reruns_only_what_is_missing(tmp_path):
    path = _write(tmp_path, EXPERIMENT.replace('devices = ["cpu"]', 'backends = ["numpy"]'))
    out = tmp_path / "out"
    assert xptrain("run", str(path), "--out", str(out), "--quiet").returncode == 0
    kept, lost = (
        out / "runs/numpy-cpu-float64-analytic-eager.json",
        out / "runs/numpy-cpu-float32-analytic-eager.json",
    )
    before, stamp = lost.read_text(), kept.stat().st_mtime_ns
    lost.unlink()
    again = xptrain("run", str(path), "--out", str(out), "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = xptrain("run", str(path), "--out", str(out), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert kept.stat().st_mtime_ns == stamp  # read back, not rerun
    assert json.loads(lost.read_text())["run"]["losses"] == json.loads(before)["run"]["losses"]
    changed = _write(tmp_path, EXPERIMENT.replace("epochs = 5", "epochs = 6"), "other.toml")
    other = xptrain("run", str(changed), "--out", str(out), "--resume", "--quiet")
    assert other.returncode == 2 and "another experiment" in other.stderr


@pytest.mark.needs("array_api_strict")  # perturbed_exp wraps it
def test_a_disagreeing_backend_fails_the_experiment(tmp_path):
    text = EXPERIMENT.replace('devices = ["cpu"]', 'backends = ["perturbed_exp"]')
    path = _write(tmp_path, text.replace('dtypes = ["float64", "float32"]', 'dtypes = ["float64"]'))
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path, extra_path=NAMESPACES)
    assert run.returncode == 1
    assert "FAIL: 1 of 2" in run.stdout and "perturbed_exp" in run.stderr
    rows = json.loads((tmp_path / "small/agreement.json").read_text())["results"]
    assert [r["passed"] for r in rows] == [True, False]


BAD = {
    "not toml": ("[data\n", "not valid TOML"),
    "unknown section": ("[modle]\nkind = 'mlp'\n", "unknown section 'modle'"),
    "unknown key": ("[train]\nepoch = 5\n", "unknown key 'epoch' in [train]"),
    "bad epochs": ("[train]\nepochs = 'five'\n", "epochs must be a whole number"),
    "bad optimizer": ("[train]\noptimizer = 'rmsprop'\n", "[train] optimizer must be one of sgd"),
    "hidden on logistic": (
        "[model]\nkind = 'logistic'\nhidden = [4]\n",
        'need [model] kind = "mlp"',
    ),
    "zero hidden": ("[model]\nkind = 'mlp'\nhidden = [0]\n", "hidden layer sizes"),
    "bad dtype": ("[runs]\ndtypes = ['float16']\n", "unknown 'float16'"),
    "bad backend": ("[runs]\nbackends = ['nosuchlib']\n", "nosuchlib"),
    "backends not a list": ("[runs]\nbackends = 3\n", "list of names"),
    "bad data": ("[data]\nsource = 'missing.npz'\n", "missing.npz"),
    "batch too big": ("[train]\nbatch_size = 5\n", "larger than the 4 training samples"),
    "bad split": ("[data]\nval_split = 1.5\n", "between 0 and 1"),
}


@pytest.mark.parametrize("text, message", BAD.values(), ids=BAD)
def test_bad_experiment_files_are_refused_in_one_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert not (tmp_path / "exp").exists()  # nothing written


def test_missing_file_and_busy_folder(tmp_path):
    missing = xptrain("run", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    path = _write(tmp_path, "[train]\nepochs = 2\n")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = xptrain("run", str(path), "--out", str(tmp_path / "busy"), "--quiet")
    assert busy.returncode == 2 and "not empty" in busy.stderr
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_resume_reruns_runs_of_other_data_and_keeps_versions(tmp_path):
    """A data file changed between two invocations: --resume reruns every run on the new data
    (none is mixed in from the old); runs read back keep their versions in the report."""
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(float))
    text = '[data]\nsource = "d.npz"\n[train]\nepochs = 3\n[runs]\nbackends = ["numpy"]\n'
    path = _write(tmp_path, text)
    out = tmp_path / "out"
    assert xptrain("run", str(path), "--out", str(out), "--quiet").returncode == 0
    again = xptrain("run", str(path), "--out", str(out), "--quiet", "--resume")
    assert again.returncode == 0
    assert json.loads((out / "agreement.json").read_text())["versions"]["numpy"]
    first = json.loads((out / "runs/numpy-cpu-float32-analytic-eager.json").read_text())
    np.savez(tmp_path / "d.npz", X=2 * X, y=(X[:, 0] > 0).astype(float))
    changed = xptrain("run", str(path), "--out", str(out), "--quiet", "--resume")
    assert changed.returncode == 0, changed.stderr
    second = json.loads((out / "runs/numpy-cpu-float32-analytic-eager.json").read_text())
    assert second["run"]["losses"] != first["run"]["losses"]
    assert second["run"]["data_fingerprint"] != first["run"]["data_fingerprint"]


def test_a_data_folder_is_read_relative_to_the_experiment_file(tmp_path):
    """``source`` naming a folder of X.npy and y.npy is the one beside the experiment file,
    not one of that name where xptrain is run from."""
    import numpy as np

    X = np.random.default_rng(0).standard_normal((30, 3))
    beside, elsewhere = tmp_path / "exp" / "data", tmp_path / "cwd" / "data"
    for folder in (beside, elsewhere):
        folder.mkdir(parents=True)
        np.save(folder / "X.npy", X)
    np.save(beside / "y.npy", (X[:, 0] > 0).astype(float))  # the one here lacks its y.npy
    text = '[data]\nsource = "data"\n[train]\nepochs = 2\n[runs]\nbackends = ["numpy"]\n'
    path = _write(tmp_path / "exp", text)
    run = xptrain("run", str(path), "--out", "out", "--quiet", cwd=tmp_path / "cwd")
    assert run.returncode == 0, run.stderr
