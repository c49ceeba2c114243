"""`xptrain explain`: deliberately wrong namespaces are localised to the operation that is
wrong, correct backends have no culprit, a compiled run's own error is blamed on compilation,
a diverging run on the first call that made inf or NaN; and `check` names the culprits."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from helpers import NAMESPACES, xptrain

from xptrain import backends, check, check_table
from xptrain.check import Config
from xptrain.explain import explain

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
JSON_KEYS = {"backend", "device", "dtype", "grad", "mode", "problem", "epoch"}
JSON_KEYS |= {"within_tolerance", "culprit", "ops"}
OP_KEYS = {"op", "site", "calls", "max_ulp", "expected_ulp", "excess", "carried_rel_err"}
CULPRIT_KEYS = {"op", "site", "max_ulp", "expected_ulp", "excess"}


@pytest.mark.needs("array_api_strict")  # the namespaces in tests/namespaces wrap it
@pytest.mark.parametrize(
    "namespace, op",
    [
        ("perturbed_exp", "exp"),  # exp off by a relative 1e-10
        ("log_float32", "log"),  # log in float32 behind float64 arrays
        ("matmul_float32", "matmul"),  # the dot products accumulated in float32
        ("sum_float32", "sum"),  # sums added in float32
    ],
)
@pytest.mark.parametrize("problem", ["seed", "digits10"])
def test_a_wrong_operation_is_the_culprit(namespace, op, problem, monkeypatch):
    if problem == "digits10":
        pytest.importorskip("sklearn", reason="digits10's data is scikit-learn's")
    monkeypatch.syspath_prepend(str(NAMESPACES))
    found = explain(Config(problem, namespace, "default", "float64", "analytic", "eager"))
    assert not found.within_tolerance
    assert found.culprit is not None and found.culprit["op"] == op, found.culprit
    assert found.culprit["excess"] > 1e4  # not a near thing: millions of ulps against a few
    assert found.ops[0].op == op  # the table's first row, the worst excess


def test_a_correct_backend_has_no_culprit(backend, dtype, grad, mode):
    found = explain(Config("seed", backend.name, backend.device, dtype, grad, mode))
    assert found.within_tolerance and found.culprit is None, found.ops[:3]
    record = found.to_dict()
    assert set(record) == JSON_KEYS and record["culprit"] is None
    assert all(set(op) == OP_KEYS for op in record["ops"])
    watched = {row.op for row in found.ops}
    # the seed's products are matmuls, or multiplies and sums where the run wrote them so
    # (compiled JAX on the CPU: xptrain.matvec), as the run itself did
    sums = backend.impl.caps.matvec_sums and mode == "jit" and backend.device == "cpu"
    product = "multiply" if sums else "matmul"
    assert {"exp", "log", product, "sum", "subtract"} <= watched  # operators and functions
    if grad == "analytic":  # the host replay's outputs line up with the backend's, call by call
        assert all(row.carried_rel_err is not None for row in found.ops)


@pytest.mark.needs("sklearn")
@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
def test_an_mlp_with_softmax_has_no_culprit_on_a_correct_backend(name):
    if name != "numpy":
        pytest.importorskip(name)
    found = explain(Config("digits10", name, "cpu", "float32", "analytic", "eager"))
    assert found.culprit is None, found.ops[:3]
    assert {"tanh", "exp", "max"} & {row.op for row in found.ops}


class _Miscompiling(type(backends.get("numpy"))):
    """NumPy with a 'compiler' that gets the parameters wrong by a relative 1e-9: what a
    compiled run looks like when compilation itself changes the numbers."""

    name = "miscompiling"
    caps = dataclasses.replace(type(backends.get("numpy")).caps, jit=True)

    def jit(self, fn):
        def compiled(carry, X, y):
            (params, state), metrics = fn(carry, X, y)
            return (tuple(p * (1 + 1e-9) for p in params), state), metrics

        return compiled


def test_a_compiled_run_whose_eager_replay_agrees_blames_the_compilation(monkeypatch):
    monkeypatch.setitem(backends._loaded, "miscompiling", _Miscompiling())
    found = explain(Config("seed", "miscompiling", "cpu", "float64", "analytic", "jit"))
    assert not found.within_tolerance
    assert found.culprit["op"] == "compilation" and found.culprit["excess"] > 1
    assert all(row.excess is None or row.excess <= 1.01 for row in found.ops)  # eager: clean
    assert any("compiled step differs from the eager replay" in note for note in found.notes)


def test_the_same_compiled_run_eager_is_clean(monkeypatch):
    """The compiler's error is the compiled run's alone: eager, the same backend passes."""
    monkeypatch.setitem(backends._loaded, "miscompiling", _Miscompiling())
    found = explain(Config("seed", "miscompiling", "cpu", "float64", "analytic", "eager"))
    assert found.within_tolerance and found.culprit is None


def test_a_diverging_run_names_the_first_call_that_made_inf_or_nan(tmp_path):
    out = tmp_path / "e.json"
    done = xptrain("explain", "--loss", "mse", "--lr", "1e100", "--json", str(out))
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["epoch"] == 2  # where the loss became inf (the reference's does too)
    assert record["culprit"]["op"] == "multiply" and record["culprit"]["excess"] is None  # inf
    assert record["culprit"]["site"].startswith("loss._mse_terms:")  # (out - y) squared
    assert "inf or NaN from finite inputs" in done.stdout.splitlines()[-1]


@pytest.mark.needs("array_api_strict", "matplotlib")
def test_cli_table_json_and_plot(tmp_path):
    out, fig = tmp_path / "e.json", tmp_path / "e.png"
    done = xptrain(
        "explain", "--backend", "perturbed_exp", "--json", str(out), "--plot", str(fig),
        "--top", "3", extra_path=NAMESPACES,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("xptrain explain: perturbed_exp/default/float64/analytic/eager")
    assert lines[3].split()[:2] == ["op", "call"] and lines[4].split()[0] == "exp"
    assert lines[-1].startswith("culprit: exp at loss._bce_both:")
    record = json.loads(out.read_text())
    assert set(record) == JSON_KEYS and set(record["culprit"]) == CULPRIT_KEYS
    assert record["epoch"] == 0 and record["within_tolerance"] is False
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epoch", "20"], "epoch 20 is past the run: it has epochs 0..19"),
        (["--epoch", "-1"], "--epoch"),
        (["--op", "expp"], "--op 'expp' is not an Array API operation"),
        (["--problem", "nope"], "unknown problem 'nope'"),
        (["--problem", "seed", "--data", "seed"], "--problem and --data both choose"),
        (["--top", "0"], "--top"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    done = xptrain("explain", *args)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_epoch_may_be_chosen_and_a_passing_run_says_so():
    found = explain(Config("seed", "numpy", "cpu", "float32", "analytic", "eager"), epoch=5)
    assert found.epoch == 5 and found.within_tolerance and found.culprit is None
    assert all(r.max_ulp is not None and math.isfinite(r.max_ulp) for r in found.ops)


@pytest.mark.needs("array_api_strict")
def test_check_names_the_culprit_of_each_failing_row(tmp_path):
    out = tmp_path / "r.json"
    args = ["check", "--backends", "numpy,perturbed_exp", "--problems", "seed"]
    done = xptrain(*args, "--dtypes", "float64", "--json", str(out), extra_path=NAMESPACES)
    assert done.returncode == 1
    assert "perturbed_exp/default/float64/analytic/eager on seed: culprit exp at " in done.stdout
    culprits = {r["backend"]: r["culprit"] for r in json.loads(out.read_text())["results"]}
    assert culprits["numpy"] is None and culprits["perturbed_exp"]["op"] == "exp"
    quiet = xptrain(*args, "--dtypes", "float64", "--no-explain", extra_path=NAMESPACES)
    assert quiet.returncode == 1 and "culprit" not in quiet.stdout


def test_a_failure_sentence_names_the_culprit():
    row = check.Row(
        "seed", "x", "cpu", "float64", "analytic", "eager", "cpu", 1.0, 1.0, 0, 1.0, True,
        1e-15, 2.0, False, rel_err=[1.0], loss_tol=[0.5],
        culprit={"op": "log", "site": "loss._bce_of:31", "max_ulp": 3e8, "expected_ulp": 4.0,
                 "excess": 7.5e7},
    )  # fmt: skip
    sentence = check_table.describe_failure(row)
    assert sentence.endswith(
        "culprit log at loss._bce_of:31: 3e+08 ulps where 4 are expected (7.5e+07x)"
    )


def test_the_host_reference_is_wider_than_the_run():
    from xptrain.op_errors import reference_dtype

    assert reference_dtype("float32") is np.float64
    assert np.finfo(reference_dtype("float64")).eps <= np.finfo(np.float64).eps
