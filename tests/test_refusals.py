"""Small refusals: bad input is one line on stderr, exit code 2, nothing written, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from helpers import FORK_THEN_EXEC, ctrl_c_as_in_a_terminal, xptrain

import xptrain as xpt
from xptrain import files
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
    assert "--standardize" in message
    assert message.endswith("the largest feature is column 0 (from 0), |x| up to 1e+308")
    data = tmp_path / "big.csv"
    np.savetxt(data, np.column_stack([X, y]), delimiter=",")
    _refused(xptrain("train", "--data", str(data), "--epochs", "3"), "--standardize")


def test_a_later_divergence_still_suggests_a_smaller_step():
    with pytest.raises(xpt.TrainingDiverged, match=r"at epoch 2;.*smaller learning rate"):
        xpt.train(SEED_X, SEED_Y, loss="mse", lr=1e100)


def _bomb(path, rows: int) -> None:
    """An .npz whose X (``rows`` × 1000 float64 zeros) is written a chunk at a time: the zip
    bomb's ~1000x, without holding the inflated array in memory here."""
    header = {"descr": "<f8", "fortran_order": False, "shape": (rows, 1000)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, header)
            chunk = bytes(8000 * 1000)
            for _ in range(rows // 1000):
                f.write(chunk)
        with archive.open("y.npy", "w") as f:
            np.save(f, np.zeros(rows))


def test_an_npz_inflating_past_its_limit_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "SMALL_INFLATION", 1000)
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X=np.zeros((2000, 10)), y=np.zeros(2000))
    with pytest.raises(InvalidInput, match=r"would inflate .* only up to 100x.*np\.savez"):
        load(path)
    rng = np.random.default_rng(0)  # real data compresses far less: 1x floats, ~27x 0/1 labels
    X, y = rng.standard_normal((2000, 10)), (rng.random(2000) > 0.5).astype(np.float64)
    np.savez_compressed(path, X=X, y=y)
    assert np.array_equal(load(path).X, X)
    np.savez(path, X=np.zeros((2000, 10)), y=np.zeros(2000))  # stored: as big as it says
    assert not load(path).X.any()


@pytest.mark.slow
def test_a_zip_bomb_is_refused_from_its_headers(tmp_path):
    path = tmp_path / "bomb.npz"
    _bomb(path, 40_000)  # 320 MB of zeros in a ~0.3 MB file
    run = xptrain("train", "--data", str(path), "--epochs", "1")
    _refused(run, "would inflate from")
    assert "X.npy and y.npy" in run.stderr


def test_an_npy_header_claiming_more_than_its_member_holds_is_refused(tmp_path):
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**10, 3)}
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("X.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.write(np.zeros((4, 3)).tobytes())
        with archive.open("y.npy", "w") as f:
            np.save(f, np.zeros(4))
    with pytest.raises(InvalidInput, match=r"declares a float64 array of shape \(10000000000, 3\)"):
        load(path)


def test_toml_nested_too_deeply_is_one_line(tmp_path):
    deep = "[" * 1000 + "]" * 1000
    path = tmp_path / "deep.toml"
    path.write_text(
        f'[train]\nepochs = 2\n[runs]\nbackends = ["numpy"]\n[model_args]\nx = {deep}\n'
    )
    _refused(xptrain("run", str(path), "--quiet", cwd=tmp_path), "deep.toml: not valid TOML")
    assert [p.name for p in tmp_path.iterdir()] == ["deep.toml"]
    run = xptrain("train", "--model", "mlp", "--model-arg", f"x={deep}")
    _refused(run, "--model-arg: not valid TOML (nested too deeply)")


def test_bench_out_lines_that_are_not_utf8_are_skipped_as_torn_lines_are(tmp_path):
    out = tmp_path / "bench.jsonl"
    junk = b'{"not": "a record"}\n\xff\xfe not text\n'
    out.write_bytes(junk)
    args = ["bench", "--quick", "--backends", "numpy", "--modes", "eager", "--quiet"]
    first = xptrain(*args, "--out", str(out))
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    written = out.read_bytes()
    assert written.startswith(junk) and written.count(b"\n") == 3
    again = xptrain(*args, "--out", str(out), "--resume")  # the record is read back: not rerun
    assert again.returncode == 0, again.stderr
    assert out.read_bytes() == written


@pytest.mark.needs("matplotlib")  # with matplotlib absent, the refusal says to install it
def test_a_bad_mplbackend_is_one_line_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "bogus")
    out = tmp_path / "loss.png"
    run = xptrain("train", "--plot", str(out), "--json", str(tmp_path / "r.json"))
    _refused(run, "matplotlib failed to start")
    assert "MPLBACKEND" in run.stderr and not list(tmp_path.iterdir())


def test_an_mlp_with_no_hidden_layers_is_refused(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[model]\nkind = "mlp"\nhidden = []\n[runs]\nbackends = ["numpy"]\n')
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path)
    _refused(run, '[model] kind = "mlp" needs at least one layer in [model] hidden')
    assert [p.name for p in tmp_path.iterdir()] == ["exp.toml"]
    with pytest.raises(InvalidInput, match="needs at least one layer in hidden"):
        xpt.train(SEED_X, SEED_Y, model="mlp", hidden=[])


@pytest.mark.parametrize("device", ["cuda:99", "cuda"])
def test_experiment_devices_not_here_are_refused_naming_those_here(tmp_path, device):
    path = tmp_path / "exp.toml"
    path.write_text(f'[runs]\nbackends = ["numpy"]\ndevices = ["cpu", "{device}"]\n')
    run = xptrain("run", str(path), "--quiet", cwd=tmp_path)
    _refused(run, f"[runs] devices: no '{device}' here for numpy; their devices: cpu")
    assert [p.name for p in tmp_path.iterdir()] == ["exp.toml"]


def test_the_command_starts_inside_its_ctrl_c_handling():
    """Nothing heavy is imported before ``main`` runs: a Ctrl-C while NumPy or an array library
    is imported at start-up is main's to handle (it was a KeyboardInterrupt traceback)."""
    code = "import sys; from xptrain.cli import main; print('numpy' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "False", run.stderr


_SLOW_LIBRARY = """
import pathlib, time
pathlib.Path({marker!r}).touch()
try:
    time.sleep(60)
except KeyboardInterrupt:  # as JAX's gc callback did: an interrupt raised here is lost
    pass
"""


@FORK_THEN_EXEC
def test_ctrl_c_while_importing_an_array_library_is_one_line_and_exit_130(tmp_path):
    marker = tmp_path / "importing"
    (tmp_path / "slowlib.py").write_text(_SLOW_LIBRARY.format(marker=str(marker)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
    }
    args = [sys.executable, "-m", "xptrain", "train", "--backend", "slowlib"]
    with subprocess.Popen(
        args, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=ctrl_c_as_in_a_terminal
    ) as proc:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stderr = proc.communicate(timeout=30)[1]
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "xptrain: interrupted"
