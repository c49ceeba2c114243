"""The ``xptrain`` command as a user runs it: in a subprocess, reading stdout, stderr and files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from xptrain.reference import SEED_PRINTED_LOSSES

SEED_OUTPUT = "".join(f"Epoch: {i} Loss: {v!r}\n" for i, v in enumerate(SEED_PRINTED_LOSSES))


def xptrain(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xptrain", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_no_options_prints_the_seed_exactly():
    run = xptrain("train")
    assert run.returncode == 0, run.stderr
    assert run.stdout == SEED_OUTPUT
    assert run.stderr == ""


@pytest.mark.parametrize("name", ["numpy", "torch", "jax", "array_api_strict"])
def test_json_reproduces_the_seed_on_each_cpu_backend(name, tmp_path):
    pytest.importorskip({"array_api_strict": "array_api_strict"}.get(name, name))
    out = tmp_path / "out.json"
    run = xptrain("train", "--backend", name, "--dtype", "float64", "--json", str(out))
    assert run.returncode == 0, run.stderr
    assert run.stdout == SEED_OUTPUT
    record = json.loads(out.read_text())
    for key in (
        "backend",
        "device",
        "dtype",
        "epochs",
        "lr",
        "losses",
        "W",
        "b",
        "seconds",
        "versions",
        "precision",
    ):
        assert key in record
    assert record["backend"] == name and record["device"] == "cpu"
    assert record["dtype"] == "float64" and record["epochs"] == 20 and record["lr"] == 1.0
    np.testing.assert_allclose(record["losses"], SEED_PRINTED_LOSSES, rtol=3e-12)
    assert np.array(record["W"]).shape == (3, 1) and isinstance(record["b"], float)
    assert name in record["versions"] and "numpy" in record["versions"]
    assert record["precision"]["dtype"] == "float64"
    assert record["seconds"] > 0
    assert not [p for p in tmp_path.iterdir() if p.name != "out.json"]  # no temp files left


def test_jax_records_x64(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "jax.json"
    assert xptrain("train", "--backend", "jax", "--quiet", "--json", str(out)).returncode == 0
    assert json.loads(out.read_text())["precision"]["jax_enable_x64"] is True


def test_quiet_plot_and_options(tmp_path):
    plot = tmp_path / "loss.png"
    run = xptrain(
        "train", "--quiet", "--epochs", "5", "--lr", "0.5", "--seed", "3", "--plot", str(plot)
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_data_files(tmp_path):
    X = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]])  # integers: accepted and cast
    y = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "seed.npz", X=X, y=y)
    np.savetxt(
        tmp_path / "seed.csv",
        np.column_stack([X, y]),
        delimiter=",",
        header="a,b,c,label",
        comments="",
    )
    for name in ("seed.npz", "seed.csv"):
        run = xptrain("train", "--data", str(tmp_path / name))
        assert run.returncode == 0, run.stderr
        assert run.stdout == SEED_OUTPUT
    np.savez(tmp_path / "w.npz", X=X, y=y, W=np.zeros((3, 1)), b=np.array([[0.5]]))
    run = xptrain("train", "--data", str(tmp_path / "w.npz"), "--epochs", "1")
    expected = -np.mean(
        y * np.log(1 / (1 + np.exp(-0.5))) + (1 - y) * np.log(1 - 1 / (1 + np.exp(-0.5)))
    )
    assert run.stdout == f"Epoch: 0 Loss: {expected:.12g}\n"


def test_backends_table():
    run = xptrain("backends")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].split() == [
        "backend",
        "installed",
        "version",
        "devices",
        "float64",
        "jit",
        "autodiff",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"numpy", "torch", "jax", "cupy", "array_api_strict"}
    assert rows["numpy"].split()[1:3] == ["yes", np.__version__]
    if "no:" in rows["cupy"]:
        assert "pip install" in rows["cupy"] or "no CUDA device" in rows["cupy"]


def _write_bad_files(d):
    np.savez(d / "x1d.npz", X=np.ones(4), y=np.ones(4))
    np.savez(d / "mismatch.npz", X=np.ones((4, 3)), y=np.ones(3))
    np.savez(d / "labels.npz", X=np.ones((4, 3)), y=np.array([0, 1, 2, 0]))
    np.savez(d / "nan.npz", X=np.array([[0, 1], [np.nan, 1]]), y=np.array([0, 1]))
    np.savez(d / "inf.npz", X=np.array([[0, 1], [np.inf, 1]]), y=np.array([0, 1]))
    np.savez(d / "empty.npz", X=np.ones((0, 3)), y=np.ones(0))
    np.savez(d / "text.npz", X=np.array([["a", "b"], ["c", "d"]]), y=np.array([0, 1]))
    np.savez(d / "w.npz", X=np.ones((4, 3)), y=np.array([0, 1, 1, 0]), W=np.ones((2, 1)))
    np.savez(d / "b.npz", X=np.ones((4, 3)), y=np.array([0, 1, 1, 0]), b=np.ones(2))
    np.savez(d / "noy.npz", X=np.ones((4, 3)))
    np.savez(
        d / "object.npz",
        X=np.array([[0, 1], [1, 0]], dtype=object),
        y=np.array([0, 1]),
        allow_pickle=True,
    )
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip file")
    (d / "text.csv").write_text("a,b,label\n1,x,0\n0,1,1\n")
    (d / "empty.csv").write_text("")
    (d / "onecol.csv").write_text("1\n0\n")
    (d / "data.txt").write_text("1,0\n")


BAD = {
    "1-D X": (["--data", "{d}/x1d.npz"], "2-D"),
    "N mismatch": (["--data", "{d}/mismatch.npz"], "rows but y has"),
    "label 2": (["--data", "{d}/labels.npz"], "labels must be 0 or 1"),
    "NaN": (["--data", "{d}/nan.npz"], "NaN or inf"),
    "inf": (["--data", "{d}/inf.npz"], "NaN or inf"),
    "empty": (["--data", "{d}/empty.npz"], "empty"),
    "text X": (["--data", "{d}/text.npz"], "numeric"),
    "W shape": (["--data", "{d}/w.npz"], "W must have shape"),
    "b shape": (["--data", "{d}/b.npz"], "b must be"),
    "no y": (["--data", "{d}/noy.npz"], "missing y"),
    "object npz": (["--data", "{d}/object.npz"], "unpickling"),
    "corrupt npz": (["--data", "{d}/corrupt.npz"], "not a valid .npz"),
    "text csv": (["--data", "{d}/text.csv"], "not a numeric CSV"),
    "empty csv": (["--data", "{d}/empty.csv"], "no data"),
    "one-column csv": (["--data", "{d}/onecol.csv"], "at least 2 columns"),
    "unknown format": (["--data", "{d}/data.txt"], ".npz or a .csv"),
    "missing file": (["--data", "{d}/nope.npz"], "does not exist"),
    "epochs 0": (["--epochs", "0"], "epochs must be"),
    "epochs -3": (["--epochs", "-3"], "epochs must be"),
    "epochs text": (["--epochs", "ten"], "invalid int value"),
    "lr 0": (["--lr", "0"], "learning rate"),
    "lr negative": (["--lr=-1"], "learning rate"),
    "lr nan": (["--lr", "nan"], "learning rate"),
    "lr inf": (["--lr", "inf"], "learning rate"),
    "dtype": (["--dtype", "float16"], "invalid choice"),
    "grad": (["--grad", "numeric"], "invalid choice"),
    "backend": (["--backend", "tensorflow"], "unknown backend"),
    "device name": (["--device", "tpu"], "unknown device"),
    "device absent": (["--device", "cuda:7"], "has no device 'cuda:7'"),
    "autodiff on numpy": (["--grad", "autodiff"], "no automatic differentiation"),
    "jit on numpy": (["--jit"], "no jit compiler"),
    "diverges": (["--lr", "1e4"], "at epoch 1"),
    "json folder missing": (["--json", "{d}/no/such/dir/out.json"], "does not exist"),
    "plot format": (["--plot", "{d}/out.xyz"], "cannot draw a plot"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    _write_bad_files(tmp_path)
    args, message = BAD[case]
    out = tmp_path / "out.json"
    args = [a.format(d=tmp_path) for a in args]
    extra = [] if "--json" in args else ["--json", str(out)]
    before = set(os.listdir(tmp_path))
    run = xptrain("train", *args, *extra)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert set(os.listdir(tmp_path)) == before  # no result, no temporary file


def test_unknown_command_is_one_line():
    run = xptrain("fly")
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1
