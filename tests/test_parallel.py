"""Data-parallel training: JAX sharded over 2 emulated CPU devices and over 2 processes, torch
over 2 gloo ranks under torchrun. Every run must reproduce the single-device NumPy run (the
same tolerance model as `xptrain check`), with any N, and a missing or lost process must end
in a clear error, never a hang. Multi-device and multi-process runs are subprocesses (XLA's
device count is fixed when JAX starts; a process group is one per process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import initial_params, on_backends

import xptrain
from xptrain import backends, data, launch, problems
from xptrain.cli import main as cli
from xptrain.conformance import compare, tolerance
from xptrain.errors import InvalidInput
from xptrain.grad import PAD_LABEL, blocked_sums
from xptrain.loss import get as get_loss
from xptrain.models import MLP
from xptrain.options import Options
from xptrain.parallel import local_problem
from xptrain.reference import Reference

DATA = "linear:1001,5,3"  # 1001 rows: uneven over 2 replicas, so JAX pads one row
EPOCHS = 30


def _reference(dtype: str = "float64", **options) -> xptrain.TrainResult:
    problem = data.load(DATA)
    return xptrain.train(problem.X, problem.y, dtype=dtype, epochs=EPOCHS, lr=0.5, **options)


def _agrees(record: dict, ref: xptrain.TrainResult, batch: int | None = None) -> None:
    """A run's JSON record is within check's tolerance of the single-device NumPy run (and,
    in float64, within 1e-13 relative); minibatches as `xptrain run` compares them (N = the
    batch, one rounding step per update)."""
    params = record.get("params") or [record["W"], [[record["b"]]]]
    run = SimpleNamespace(
        losses=record["losses"], params=[np.asarray(p) for p in params], dtype=record["dtype"]
    )
    n, d = data.load(DATA).X.shape
    steps = EPOCHS * -(-n // batch) if batch else None
    tau = tolerance(record["dtype"], batch or n, d)
    agreement = compare(run, Reference(ref.losses, ref.params), tau, steps)
    assert agreement.passed, agreement
    if record["dtype"] == "float64":
        assert agreement.max_rel_err < 1e-13
    # training accuracy, padding rows left out: float64 the same rows right; float32 may
    # flip a row whose logit is ~0
    off = np.abs(np.subtract(record["accuracy"], ref.accuracy))
    assert len(off) == EPOCHS and off.max() <= (0 if record["dtype"] == "float64" else 2 / n)


def _train_args(*extra: str) -> list[str]:
    return ["train", "--data", DATA, "--epochs", str(EPOCHS), "--lr", "0.5", *extra]


# -- the arithmetic, in this process ------------------------------------------------------------


@pytest.mark.parametrize("hidden", [(), (4,)])
@pytest.mark.parametrize("loss", ["bce", "bce-logits", "mse"])
def test_padding_rows_add_nothing_to_the_sums(hidden, loss):
    problem = data.load("linear:37,3,1")
    params = tuple(initial_params(problem, hidden, 1))
    padded_X = np.concatenate([problem.X, np.zeros((3, 3))])
    padded_y = np.concatenate([problem.y, np.full((3, 1), PAD_LABEL)])
    model, chosen = MLP((), "tanh" if hidden else "sigmoid"), get_loss(loss)
    want = blocked_sums(np, model, chosen, params, problem.X, problem.y)
    got = blocked_sums(np, model, chosen, params, padded_X, padded_y, 8, masked=True)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-14)
    for a, b in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", on_backends("jax", "torch"))
def test_autodiff_through_a_saturated_padding_row_stays_finite(name):
    """A padding row (X = 0) whose logit saturates the seed's BCE (log(1 - A) = -inf) adds
    nothing, and no NaN, to autodiff's sums."""
    from xptrain.steps import StepSpec, local_sums_of

    bk = backends.get(name)
    X = np.array([[1.0], [1.0], [0.0]])  # real rows: logit 0; the padding row: logit b
    y = np.array([[1.0], [0.0], [PAD_LABEL]])
    with bk.float_scope("float64"):
        args = [bk.asarray(a, "float64", bk.native_device("cpu")) for a in (X, y)]
        params = [
            bk.asarray(np.array(v), "float64", bk.native_device("cpu")) for v in ([[-1e3]], [[1e3]])
        ]
        fn = local_sums_of(bk, StepSpec("autodiff", masked=True))
        total, grads = fn(tuple(params), *args)
        total, grads = bk.to_numpy(total), [bk.to_numpy(g) for g in grads]
    assert np.isclose(total[0], 2 * np.log(2))  # the two real rows at p = 1/2
    assert total[1] == 1  # one hit: of the real rows, class 1 at p = 1/2 reads as class 0
    np.testing.assert_allclose(grads[0], [[0.0]], atol=1e-12)  # (0.5 - 1) + (0.5 - 0)
    np.testing.assert_allclose(grads[1], [[0.0]], atol=1e-12)


class _Replicas(SimpleNamespace):
    def rows(self, n):
        per = n // self.count
        return self.first * per, (self.first + 1) * per


def test_local_problem_pads_to_even_shards_and_says_so():
    problem = data.load("linear:10,2,1")
    last = _Replicas(count=4, here=1, even=True, first=3)
    local, masked = local_problem(problem, last)
    assert local.X.shape == (3, 2) and masked  # 10 rows + 2 padding = 4 × 3
    assert np.isnan(local.y[1:, 0]).all() and not local.X[1:].any()  # PAD_LABEL is NaN
    first = _Replicas(count=4, here=1, even=True, first=0)
    local, masked = local_problem(problem, first)
    np.testing.assert_array_equal(local.X, problem.X[:3])
    assert masked  # every replica runs the masked step: one compiled program for all
    _, masked = local_problem(data.load("linear:12,2,1"), first)
    assert not masked


def test_fewer_rows_than_replicas_is_refused():
    with pytest.raises(InvalidInput, match="3 rows cannot be spread over 4 replicas"):
        local_problem(data.load("linear:3,2,1"), _Replicas(count=4, here=1, even=False, first=0))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"data_parallel": 0}, "whole number ≥ 1"),
        ({"distributed": True, "exact": True}, "exact=True is the seed"),
    ],
)
def test_options_refuse_what_data_parallel_cannot_do(options, message):
    with pytest.raises(InvalidInput, match=message):
        Options(**options)


def _on(backend: str, args: list[str], message: str):
    """A case that runs on ``backend``: it must load here."""
    return pytest.param(args, message, marks=pytest.mark.backends(backend))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data-parallel", "2"], "numpy has no data-parallel training"),
        _on("torch", ["--backend", "torch", "--data-parallel", "2"], "one device per process"),
        _on("dask", ["--backend", "dask", "--data-parallel", "2"], "dask spreads"),
        _on(
            "jax",
            ["--backend", "jax", "--jit", "--data-parallel", "64"],
            "xla_force_host_platform",
        ),
        _on("jax", ["--backend", "jax", "--data-parallel", "1"], "add --jit"),
        (["--distributed"], "for --backend torch or jax"),
        _on("torch", ["--backend", "torch", "--distributed"], "run it under torchrun"),
        _on("jax", ["--backend", "jax", "--jit", "--distributed"], "run it under torchrun"),
    ],
)
def test_cli_refusals_are_one_line(args, message, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert cli(["train", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "0"}, "did not set MASTER_ADDR, MASTER_PORT, WORLD_SIZE"),
        ({"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "whole"),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK=2"),
    ],
)
def test_a_bad_launcher_environment_is_refused(env, message, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput, match=message):
        backends.base.launcher_env()


def test_check_refusals(capsys):
    assert cli(["check", "--distributed"]) == 2
    assert "give --backends torch or jax" in capsys.readouterr().err
    assert cli(["check", "--scale-out", "--data-parallel", "2"]) == 2
    assert "give it alone" in capsys.readouterr().err


# -- JAX over 2 devices of one process ------------------------------------------------------------


_JAX_MATRIX = """
import json, sys
import xptrain
from xptrain import data
problem = data.load(sys.argv[1])
out = []
for dtype in ("float64", "float32"):
    for grad in ("analytic", "autodiff"):
        for model in ({}, {"hidden": (8,), "activation": "tanh", "loss": "bce-logits"}):
            one_pass = [{"path": "block:128"}] if grad == "analytic" else []
            extras = [{}, {"batch_size": 64}, *one_pass]
            for extra in extras:
                r = xptrain.train(problem.X, problem.y, backend="jax", dtype=dtype, epochs=30,
                                  lr=0.5, jit=True, grad=grad, data_parallel=2, **model, **extra)
                out.append({**r.to_dict(), "options": {**model, **extra}})
print(json.dumps(out))
"""


@pytest.mark.backends("jax")
def test_jax_over_two_devices_matches_one_device():
    """Sharded over 2 emulated CPU devices (1001 rows: one padding row), every dtype,
    gradient engine, model and gradient path reproduces the single-device NumPy run."""
    env = launch.cpu_devices_env(2)
    done = subprocess.run(
        [sys.executable, "-c", _JAX_MATRIX, DATA],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    records = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(records) == 20
    for record in records:
        assert record["replicas"]["replicas"] == 2 and record["replicas"]["processes"] == 1
        options = {k: tuple(v) if k == "hidden" else v for k, v in record["options"].items()}
        options.pop("path", None)
        _agrees(record, _reference(record["dtype"], **options), record.get("batch_size"))


@pytest.mark.backends("jax")
def test_jax_cli_over_two_devices_prints_the_single_device_lines():
    one = launch.run_xptrain(_train_args())
    two = launch.run_xptrain(
        _train_args("--backend", "jax", "--jit", "--data-parallel", "2"), cpu_devices=2
    )
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.splitlines() == one.stdout.splitlines()  # 12 significant digits


# -- process groups under torchrun ------------------------------------------------------------


@pytest.mark.backends("torch")
def test_torch_over_two_ranks_matches_one_process(tmp_path):
    """Two gloo ranks under torchrun, 1001 rows split 500/501: rank 0 alone prints the seed's
    lines and writes the JSON; the numbers are the single-process run's."""
    out = tmp_path / "run.json"
    done = launch.run_xptrain(
        _train_args("--backend", "torch", "--distributed", "--json", str(out)), processes=2
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("Epoch:")]
    assert len(lines) == EPOCHS  # one rank printed
    record = json.loads(out.read_text())
    assert record["replicas"] == {
        "engine": "torch.distributed",
        "replicas": 2,
        "processes": 2,
        "process_group": "gloo",
        "device": "cpu",
    }
    _agrees(record, _reference())


@pytest.mark.backends("torch")
def test_torch_ranks_compile_and_differentiate_an_mlp(tmp_path):
    out = tmp_path / "run.json"
    mlp = ["--model", "mlp", "--hidden", "8", "--activation", "tanh", "--loss", "bce-logits"]
    args = ["--backend", "torch", "--distributed", "--jit", "--grad", "autodiff", *mlp]
    done = launch.run_xptrain(_train_args(*args, "--json", str(out), "--quiet"), processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    _agrees(
        json.loads(out.read_text()), _reference(hidden=(8,), activation="tanh", loss="bce-logits")
    )


@pytest.mark.backends("torch")
def test_torch_ranks_take_the_single_device_minibatches(tmp_path):
    """Minibatches over 2 ranks: each batch (the same order as one process draws) split over
    the ranks, 64 rows a batch and 41 in the last; adam; the single-process numbers."""
    out = tmp_path / "run.json"
    args = ["--backend", "torch", "--distributed", "--batch-size", "64", "--optimizer", "adam"]
    done = launch.run_xptrain(_train_args(*args, "--json", str(out), "--quiet"), processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    _agrees(json.loads(out.read_text()), _reference(batch_size=64, optimizer="adam"), 64)


def test_a_last_batch_smaller_than_the_replicas_is_refused():
    from xptrain.placement import replica_minibatches

    problem = data.load("linear:1001,5,3")
    replicas = _Replicas(count=2, here=1, even=False, first=0)
    with pytest.raises(InvalidInput, match=r"the last batch \(1001 mod 100\) has fewer rows"):
        replica_minibatches(problem, backends.get("numpy"), Options(batch_size=100), replicas)
    with pytest.raises(InvalidInput, match="a batch of 1 has fewer rows than the 2 replicas"):
        replica_minibatches(problem, backends.get("numpy"), Options(batch_size=1), replicas)


@pytest.mark.backends("jax", "torch")
def test_jax_over_two_processes_matches_one_process(tmp_path):
    """JAX's own multi-process runtime (jax.distributed.initialize), started by torchrun; rank
    0 prints every epoch while rank 1 prints nothing, yet both run the same compiled steps."""
    out = tmp_path / "run.json"
    done = launch.run_xptrain(
        _train_args("--backend", "jax", "--jit", "--distributed", "--json", str(out)),
        processes=2,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len([line for line in done.stdout.splitlines() if line.startswith("Epoch:")]) == EPOCHS
    record = json.loads(out.read_text())
    assert record["replicas"]["processes"] == 2
    _agrees(record, _reference())


@pytest.mark.backends("torch")
@pytest.mark.needs(*problems.get("breast_cancer").needs)
def test_check_runs_distributed_under_torchrun(tmp_path):
    out = tmp_path / "check.json"
    args = ["check", "--backends", "torch", "--distributed", "--problems", "seed", "breast_cancer"]
    done = launch.run_xptrain([*args, "--quiet", "--json", str(out)], processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["passed"] and len(report["results"]) == 16
    assert {row["processes"] for row in report["results"]} == {2}


# -- failures end, with one line ----------------------------------------------------------------


def _rank(rank: int, port: int, *args: str) -> subprocess.Popen:
    env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    env["MASTER_PORT"] = str(port)
    return subprocess.Popen(
        launch.xptrain_command(list(args)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.backends("torch")
def test_a_rank_that_never_comes_is_a_one_line_error_after_the_timeout():
    began = time.monotonic()
    alone = _rank(
        0,
        launch.free_port(),
        "train",
        "--backend",
        "torch",
        "--distributed",
        "--distributed-timeout",
        "2",
    )
    _, err = alone.communicate(timeout=60)
    assert alone.returncode == 2
    assert err.count("\n") == 1 and "rank 0 could not join" in err, err
    assert time.monotonic() - began < 30


@pytest.mark.backends("torch")
def test_a_lost_rank_stops_the_others_with_a_one_line_error():
    port = launch.free_port()
    args = (
        "train",
        "--backend",
        "torch",
        "--distributed",
        "--epochs",
        "100000000",
        "--distributed-timeout",
        "20",
    )
    ranks = [_rank(0, port, *args), _rank(1, port, *args, "--quiet")]
    try:
        assert ranks[0].stdout.readline().startswith("Epoch: 0")  # both are training
        ranks[1].send_signal(signal.SIGKILL)
        _, err = ranks[0].communicate(timeout=60)
    finally:
        for rank in ranks:
            rank.kill()
    assert ranks[0].returncode == 2
    assert err.count("\n") == 1 and "rank 0 stopped" in err, err


@pytest.mark.backends("jax")
def test_a_jax_process_that_never_comes_ends_the_run():
    """JAX ends the process itself (it cannot be caught): no hang, a non-zero exit."""
    alone = _rank(
        0,
        launch.free_port(),
        "train",
        "--backend",
        "jax",
        "--jit",
        "--distributed",
        "--distributed-timeout",
        "2",
    )
    _, err = alone.communicate(timeout=90)
    assert alone.returncode != 0
    assert "DEADLINE_EXCEEDED" in err


@pytest.mark.backends("jax")
def test_a_lost_jax_process_ends_the_others():
    """A JAX process killed mid-run: the survivor ends (JAX's heartbeat, bounded by
    --distributed-timeout), with a non-zero exit, not a hang."""
    port = launch.free_port()
    args = ("train", "--backend", "jax", "--jit", "--distributed", "--quiet")
    args += ("--epochs", "100000000", "--distributed-timeout", "5")
    ranks = [_rank(0, port, *args), _rank(1, port, *args)]
    try:
        time.sleep(8)  # joined and training (the run is far longer than the test)
        assert ranks[0].poll() is None and ranks[1].poll() is None
        ranks[1].send_signal(signal.SIGKILL)
        began = time.monotonic()
        ranks[0].communicate(timeout=60)
    finally:
        for rank in ranks:
            rank.kill()
    assert ranks[0].returncode != 0
    assert time.monotonic() - began < 60
