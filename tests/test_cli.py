"""The ``xptrain`` command as a user runs it: in a subprocess, reading stdout, stderr and files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import on_backends, xptrain

from xptrain.reference import SEED_PRINTED_LOSSES

SEED_OUTPUT = "".join(f"Epoch: {i} Loss: {v!r}\n" for i, v in enumerate(SEED_PRINTED_LOSSES))


def test_no_options_prints_the_seed_exactly():
    run = xptrain("train")
    assert run.returncode == 0, run.stderr
    assert run.stdout == SEED_OUTPUT
    # one summary line on stderr, stdout left exactly the seed's
    summary = "xptrain train: 20 epochs in "
    assert run.stderr.startswith(summary)
    assert run.stderr.endswith("last bce loss 0.203407; training accuracy 1.0000\n")
    assert len(run.stderr.splitlines()) == 1


@pytest.mark.parametrize("name", on_backends("numpy", "torch", "jax", "array_api_strict"))
def test_json_reproduces_the_seed_on_each_cpu_backend(name, tmp_path):
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


@pytest.mark.backends("jax")
def test_jax_records_x64(tmp_path):
    out = tmp_path / "jax.json"
    assert xptrain("train", "--backend", "jax", "--quiet", "--json", str(out)).returncode == 0
    assert json.loads(out.read_text())["precision"]["jax_enable_x64"] is True


@pytest.mark.needs("matplotlib")
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
        "spreads",
    ]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"numpy", "torch", "jax", "cupy", "array_api_strict", "dask"}
    assert rows["numpy"].split()[1:3] == ["yes", np.__version__]
    if "no:" in rows["cupy"]:
        assert "pip install" in rows["cupy"] or "no CUDA device" in rows["cupy"]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _write_bad_files(d)
    return d


def _listing(*folders):
    return sorted(str(p) for folder in folders for p in folder.rglob("*"))


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
    (d / "typo.csv").write_text("0,1,0,O\n1,0,0,1\n")
    np.save(d / "array.npy", np.ones(3))
    (d / "array.npy").rename(d / "array.npz")
    np.savez_compressed(
        d / "zcorrupt.npz", X=np.random.default_rng(0).random((50, 3)), y=np.ones(50)
    )
    raw = bytearray((d / "zcorrupt.npz").read_bytes())
    raw[200:400] = bytes(200)
    (d / "zcorrupt.npz").write_bytes(bytes(raw))
    ck = d / "ck"
    ck.mkdir()
    assert xptrain("train", "--quiet", "--epochs", "4", "--checkpoint-dir", str(ck)).returncode == 0
    for name, meta, losses in (
        ("meta-ck", "[]", [0.5] * 4),
        ("nan-ck", '{"lr": 1.0}', [0.5, float("nan"), 0.4, 0.3]),
    ):
        (d / name).mkdir()
        np.savez(
            d / name / "epoch-000004.npz",
            format=np.array(1),
            epoch=np.array(4),
            param_0=np.zeros((3, 1)),
            param_1=np.zeros((1, 1)),
            losses=np.array(losses),
            meta=np.array(meta),
        )
    (d / "bad-ck").mkdir()
    (d / "bad-ck" / "epoch-000002.npz").write_text("not a checkpoint")


BAD = {
    "1-D X": (["--data", "{d}/x1d.npz"], "2-D"),
    "N mismatch": (["--data", "{d}/mismatch.npz"], "rows but y has"),
    "label 2": (["--data", "{d}/labels.npz", "--loss", "bce"], "labels must be 0 or 1"),
    "NaN": (["--data", "{d}/nan.npz"], "NaN or inf"),
    "inf": (["--data", "{d}/inf.npz"], "NaN or inf"),
    "empty": (["--data", "{d}/empty.npz"], "empty"),
    "text X": (["--data", "{d}/text.npz"], "numeric"),
    "W shape": (["--data", "{d}/w.npz"], "W must have shape"),
    "b shape": (["--data", "{d}/b.npz"], "b must be"),
    "no y": (["--data", "{d}/noy.npz"], "missing y"),
    "object npz": (["--data", "{d}/object.npz"], "never unpickles"),
    "corrupt compressed npz": (["--data", "{d}/zcorrupt.npz"], "not a valid .npz"),
    "npy named npz": (["--data", "{d}/array.npz"], "not a zip archive"),
    "csv typo": (["--data", "{d}/typo.csv"], "not a numeric CSV"),
    "seed negative": (["--seed=-1"], "seed must be"),
    "seed too big": (["--seed", "4294967296"], "seed must be"),
    "empty json name": (["--json="], "needs a file name"),
    "json is a folder": (["--json", "{d}"], "is a folder"),
    "pgf plot": (["--plot", "{d}/out.pgf"], "cannot draw a plot"),
    "checkpoint-every without dir": (["--checkpoint-every", "2"], "need --checkpoint-dir"),
    "checkpoint dir is a file": (["--checkpoint-dir", "{d}/data.txt"], "is a file"),
    "resume on other data": (
        ["--resume", "--checkpoint-dir", "{d}/ck", "--data", "linear:5,3"],
        "other data",
    ),
    "resume with other lr": (
        ["--resume", "--checkpoint-dir", "{d}/ck", "--lr", "0.5"],
        "same --lr",
    ),
    "resume past the end": (
        ["--resume", "--checkpoint-dir", "{d}/ck", "--epochs", "3"],
        "already holds 4 epochs",
    ),
    "corrupt checkpoint": (["--resume", "--checkpoint-dir", "{d}/bad-ck"], "not a valid .npz"),
    "checkpoint without metadata": (
        ["--resume", "--checkpoint-dir", "{d}/meta-ck"],
        "inconsistent checkpoint",
    ),
    "checkpoint with a NaN loss": (
        ["--resume", "--checkpoint-dir", "{d}/nan-ck"],
        "inconsistent checkpoint",
    ),
    "fresh run over old checkpoints": (["--checkpoint-dir", "{d}/ck"], "add --resume"),
    "json to a device": (["--json", "/dev/null"], "not a regular file"),
    "json and plot one file": (["--json", "{d}/same.png", "--plot", "{d}/same.png"], "same file"),
    "corrupt npz": (["--data", "{d}/corrupt.npz"], "not a valid .npz"),
    "text csv": (["--data", "{d}/text.csv"], "not a numeric CSV"),
    "empty csv": (["--data", "{d}/empty.csv"], "no data"),
    "one-column csv": (["--data", "{d}/onecol.csv"], "at least 2 columns"),
    "unknown format": (["--data", "{d}/data.txt"], ".npz or .csv file"),
    "missing file": (["--data", "{d}/nope.npz"], "does not exist"),
    "epochs 0": (["--epochs", "0"], "epochs must be"),
    "epochs -3": (["--epochs", "-3"], "epochs must be"),
    "epochs text": (["--epochs", "ten"], "invalid int value"),
    "lr 0": (["--lr", "0"], "--lr must be"),
    "lr negative": (["--lr=-1"], "--lr must be"),
    "lr nan": (["--lr", "nan"], "--lr must be"),
    "lr inf": (["--lr", "inf"], "--lr must be"),
    "dtype": (["--dtype", "float16"], "invalid choice"),
    "grad": (["--grad", "numeric"], "invalid choice"),
    "backend": (["--backend", "tensorflow"], "unknown backend"),
    "device name": (["--device", "tpu"], "unknown device"),
    "device absent": (["--device", "cuda:7"], "has no device 'cuda:7'"),
    "autodiff on numpy": (["--grad", "autodiff"], "no automatic differentiation"),
    "jit on numpy": (["--jit"], "no jit compiler"),
    "diverges": (["--loss", "mse", "--lr", "1e100"], "at epoch 2"),
    "json folder missing": (["--json", "{d}/no/such/dir/out.json"], "does not exist"),
    "plot format": (["--plot", "{d}/out.xyz"], "cannot draw a plot"),
}


# refused by matplotlib's own list of the formats it writes
NEEDS_MATPLOTLIB = {"pgf plot", "plot format"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=pytest.mark.needs("matplotlib"))
        if case in NEEDS_MATPLOTLIB
        else case
        for case in BAD
    ],
    ids=list(BAD),
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, bad_files, tmp_path):
    args, message = BAD[case]
    args = [a.format(d=bad_files) for a in args]
    extra = (
        [] if any(a.startswith("--json") for a in args) else ["--json", str(tmp_path / "o.json")]
    )
    before = _listing(bad_files, tmp_path)
    run = xptrain("train", *args, *extra)
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert message in run.stderr
    assert "Traceback" not in run.stderr
    assert _listing(bad_files, tmp_path) == before  # no result, checkpoint or temporary file


def test_unknown_command_is_one_line():
    run = xptrain("fly")
    assert run.returncode == 2 and len(run.stderr.splitlines()) == 1


def test_outputs_appear_together_or_not_at_all(tmp_path):
    from xptrain.files import json_writer, write_all

    def broken(tmp):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_all([(tmp_path / "a.json", json_writer({"x": 1})), (tmp_path / "b.png", broken)])
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError):  # NaN is not JSON
        write_all([(tmp_path / "c.json", json_writer({"x": float("nan")}))])
    assert list(tmp_path.iterdir()) == []


def test_result_files_are_ordinary_files(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run(
        f"umask 022 && {sys.executable} -m xptrain train --quiet --json {out}",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert out.stat().st_mode & 0o777 == 0o644


def test_closed_stdout_still_writes_the_json(tmp_path):
    out = tmp_path / "r.json"
    run = subprocess.run(
        f"{sys.executable} -m xptrain train --epochs 3000 --json {out} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.stdout == "Epoch: 0 Loss: 0.822322582088\n"
    assert "Traceback" not in run.stderr
    assert len(json.loads(out.read_text())["losses"]) == 3000


def test_full_disk_on_stdout_is_one_line():
    with open("/dev/full", "w") as full:
        run = subprocess.run(
            [sys.executable, "-m", "xptrain", "train"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert run.returncode == 2
    assert len(run.stderr.splitlines()) == 1 and "No space left" in run.stderr


@pytest.mark.backends("torch")
def test_checkpoints_resume_on_another_backend(tmp_path):
    ck = tmp_path / "ck"
    first = xptrain(
        "train", "--epochs", "7", "--checkpoint-dir", str(ck), "--checkpoint-every", "3"
    )
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in ck.iterdir()) == [
        "epoch-000003.npz",
        "epoch-000006.npz",
        "epoch-000007.npz",
        "history.jsonl",
    ]
    out = tmp_path / "r.json"
    rest = xptrain(
        "train", "--backend", "torch", "--resume", "--checkpoint-dir", str(ck), "--json", str(out)
    )
    assert rest.returncode == 0, rest.stderr
    assert first.stdout + rest.stdout == SEED_OUTPUT  # epochs 7..19 continue the seed exactly
    record = json.loads(out.read_text())
    assert len(record["losses"]) == 20
    np.testing.assert_allclose(record["losses"], SEED_PRINTED_LOSSES, rtol=3e-12)


@pytest.mark.needs("script")
def test_a_terminal_gets_a_progress_bar_with_the_live_loss():
    """On a terminal (a pseudo-terminal made by `script`), a long run shows a bar with the live
    loss on stderr, under the seed's lines; piped, as everywhere above, only the lines."""
    run = subprocess.run(
        [
            "script",
            "-qc",
            f"stty cols 100 rows 40; {sys.executable} -m xptrain train --epochs 2000 --lr 0.1",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout
    assert run.stdout.count("Epoch: ") == 2000
    assert "epoch/s" in run.stdout and ", loss 0." in run.stdout
    quiet = subprocess.run(
        [
            "script",
            "-qc",
            f"stty cols 100 rows 40; {sys.executable} -m xptrain train --quiet",
            "/dev/null",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "epoch/s" not in quiet.stdout and "Epoch:" not in quiet.stdout


@pytest.mark.backends("dask")
def test_a_library_failure_is_one_line_and_exit_1(tmp_path):
    """An array library failing inside an operation (dask.array as a bring-your-own namespace:
    its from_array takes no device) is the library's failure, not bad input: one line naming
    the library and the root cause, exit 1, nothing written."""
    out = tmp_path / "out.json"
    run = xptrain("train", "--backend", "dask.array", "--json", str(out), cwd=tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stderr.startswith("xptrain train: error: dask.array failed running model logistic:")
    assert "device" in run.stderr and len(run.stderr.splitlines()) == 1 and not out.exists()
