"""``xptrain check --model``, the pytest plugin's ``--xptrain-model`` and experiment files with a
user's model: a model that fails on one backend is that backend's FAIL row, a wrong ``backward``
fails naming the parameter, and a correct model passes."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from helpers import run_python
from helpers import xptrain as cli

from xptrain import check, check_table, problems

MODELS = Path(__file__).parent / "models"
GOOD = f"{MODELS / 'good.py'}:TanhNet"
WRONG = MODELS / "wrong_backward.py"
STRICT_ONLY = f"{MODELS / 'backend_specific.py'}:NumpyOnlyMethod"
OWN = ["--data", "blobs:200,4,3", "--loss", "softmax-ce", "--epochs", "3", "--dtypes", "float64"]


def _check(tmp_path, *args: str):
    out = tmp_path / "report.json"
    run = cli("check", *args, "--quiet", "--json", str(out), cwd=tmp_path)
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return run, json.loads(out.read_text()) if out.exists() else None


# -- check on the command line -----------------------------------------------------------------


@pytest.mark.backends("array_api_strict")
def test_a_correct_model_passes_the_check(tmp_path):
    run, report = _check(tmp_path, "--model", GOOD, *OWN, "--backends", "numpy,array_api_strict")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = report["results"]
    assert {r["backend"] for r in rows} == {"numpy", "array_api_strict"}
    assert all(r["passed"] and r["problem"] == "TanhNet on blobs:200,4,3" for r in rows)


@pytest.mark.backends("array_api_strict")
def test_a_model_that_fails_on_one_backend_is_its_fail_row(tmp_path):
    run, report = _check(
        tmp_path, "--model", STRICT_ONLY, *OWN, "--backends", "numpy,array_api_strict"
    )
    assert run.returncode == 1, run.stdout + run.stderr
    by_backend = {r["backend"]: r for r in report["results"]}
    assert by_backend["numpy"]["passed"] and not by_backend["array_api_strict"]["passed"]
    error = by_backend["array_api_strict"]["error"]
    assert error.endswith(": AttributeError: 'Array' object has no attribute 'dot'")
    assert error.startswith("array_api_strict failed running model ")
    assert error in run.stdout and "FAIL: 1 of 2" in run.stdout
    assert len(run.stderr.splitlines()) == 1 and "array_api_strict" in run.stderr


CHECK_BAD = {
    "model-arg without model": (["--model-arg", "width=3"], "--model-arg is for your own model"),
    "model-arg refused": (
        ["--model", GOOD, "--model-arg", "depth=1", *OWN],
        "unexpected keyword argument 'depth'",
    ),
    "no such model": (["--model", f"{MODELS / 'good.py'}:Nope", *OWN], "models there: "),
    "import fails": (
        ["--model", f"{MODELS / 'raises_on_import.py'}:Model", *OWN],
        "RuntimeError: this model file is broken on purpose",
    ),
}


@pytest.mark.parametrize("args, message", CHECK_BAD.values(), ids=CHECK_BAD.keys())
def test_check_refuses_bad_input_in_one_line(tmp_path, args, message):
    run, report = _check(tmp_path, *args, "--backends", "numpy")
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1 and message in run.stderr, run.stderr
    assert report is None


def test_check_json_of_a_model_that_breaks_the_protocol():
    """What ``xptrain check --model broken.py:ForwardWrongShape --json r.json`` writes."""
    from xptrain.files import json_writer

    spec = f"{MODELS / 'broken.py'}:ForwardWrongShape"
    problem = problems.custom(spec, "blobs:200,4,3", "softmax-ce", epochs=2, lr=0.5)
    configs, skipped = check.plan([problem.name], ["numpy"], None, ["float64"])
    report = check.run(configs, skipped, progress_bar=False)
    assert not report.passed and "must return N × d_out" in report.rows[0].error
    json_writer(report.to_dict())  # ValueError: Out of range float values (the NaN tolerance)


def test_check_refuses_a_model_that_breaks_the_protocol_as_bad_input(tmp_path):
    spec = f"{MODELS / 'broken.py'}:ForwardWrongShape"
    run = cli("check", "--model", spec, *OWN, "--backends", "numpy", "--quiet", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1 and "must return N × d_out" in run.stderr


@pytest.mark.backends("torch")
def test_a_backend_failure_under_torch_compile_is_one_line():
    problem = problems.custom(STRICT_ONLY, "blobs:200,4,3", "softmax-ce", epochs=2, lr=0.5)
    configs, _ = check.plan([problem.name], ["torch"], None, ["float64"])
    [jit] = [c for c in configs if c.mode == "jit" and c.grad == "analytic"]
    row, _ = check.run_config(jit)
    assert not row.passed and "1D tensors expected" in row.error
    assert len(row.error.splitlines()) == 1, row.error


@pytest.mark.backends("jax")
@pytest.mark.slow  # jax's startup and compiles: about 20 s
def test_a_wrong_backward_fails_the_check_naming_the_parameter(tmp_path):
    run, report = _check(tmp_path, "--model", f"{WRONG}:HalfBias", *OWN, "--backends", "numpy,jax")
    assert run.returncode == 1, run.stdout + run.stderr
    failed = [g for g in report["gradient_checks"] if not g["passed"]]
    assert failed and {(g["param"], tuple(g["shape"])) for g in failed} == {(1, (1, 8))}
    assert "backward's gradient of parameter 1 (shape (1, 8)) on jax/cpu" in run.stdout
    assert report["gradient_tolerance"] == 1e-6
    assert "jax" in run.stderr and len(run.stderr.splitlines()) == 1


# -- the gradient check, in process (torch eager: no compiles) ---------------------------------


def _gradient_report(spec: str, **model_args):
    problem = problems.custom(
        spec, "blobs:200,4,3", "softmax-ce", epochs=3, lr=0.5, model_args=tuple(model_args.items())
    )
    configs, skipped = check.plan([problem.name], ["numpy", "torch"], None, ["float64"])
    eager = [c for c in configs if c.mode == "eager"]
    return check.run(eager, skipped, progress_bar=False)


@pytest.mark.backends("torch")
@pytest.mark.parametrize(
    "name, args, param, shape",
    [
        ("HalfBias", {}, 1, (1, 8)),  # a missing factor 2
        ("DroppedBias", {}, 3, (1, 3)),  # a dropped bias term
        ("TransposedSquare", {"width": 4}, 0, (4, 4)),  # transposed, square when width = D
    ],
)
def test_a_planted_backward_mistake_is_found(name, args, param, shape):
    report = _gradient_report(f"{WRONG}:{name}", **args)
    assert not report.passed and not report.gradients_pass
    failed = [g for g in report.gradients if not g.passed]
    assert {(g.param, tuple(g.shape)) for g in failed} == {(param, shape)}
    assert {g.point for g in failed} == {"initial", "trained"}
    sentence = check_table.gradient_failure(failed[0])
    assert f"parameter {param} (shape {shape})" in sentence and "torch/cpu" in sentence
    assert len(sentence.splitlines()) == 1
    # the analytic runs follow the (wrong) numpy reference; autodiff's runs do not
    rows = {(r.backend, r.grad): r.passed for r in report.rows}
    assert rows[("numpy", "analytic")] and rows[("torch", "analytic")]
    assert not rows[("torch", "autodiff")]


@pytest.mark.backends("torch")
def test_a_correct_backward_agrees_with_autodiff():
    report = _gradient_report(GOOD, width=5)
    assert report.passed, check_table.summary(report)
    assert len(report.gradients) == 2 * 4  # two points × four parameters
    assert max(g.max_rel_err for g in report.gradients) < 1e-12


# -- the pytest plugin -------------------------------------------------------------------------


def _pytest_in(tmp_path: Path, *args: str):
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_own.py").write_text("def test_own():\n    assert True\n")
    return run_python("-m", "pytest", "-q", "-p", "no:cacheprovider", *args, cwd=project)


@pytest.mark.backends("array_api_strict")
def test_plugin_checks_a_user_model(tmp_path):
    result = _pytest_in(
        tmp_path, "--xptrain-backend=numpy", "--xptrain-backend=array_api_strict",
        f"--xptrain-model={GOOD}", "--xptrain-model-arg=width=4",
        "--xptrain-data=blobs:200,4,3", "--xptrain-loss=softmax-ce", "--xptrain-dtypes=float64",
        "-rA",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
    assert "PASSED xptrain::array_api_strict/cpu/float64/analytic/eager on TanhNet on" in (
        result.stdout
    )


@pytest.mark.backends("array_api_strict")
def test_plugin_fails_the_backend_a_user_model_breaks_on(tmp_path):
    result = _pytest_in(
        tmp_path, "--xptrain-backend=numpy,array_api_strict", f"--xptrain-model={STRICT_ONLY}",
        "--xptrain-data=blobs:200,4,3", "--xptrain-loss=softmax-ce", "--xptrain-dtypes=float64",
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 2 passed" in result.stdout
    assert "AttributeError: 'Array' object has no attribute 'dot'" in result.stdout


def test_plugin_refuses_a_broken_model_as_usage_error(tmp_path):
    result = _pytest_in(
        tmp_path, "--xptrain-backend=numpy", f"--xptrain-model={MODELS / 'nofile.py'}:Model",
    )  # fmt: skip
    assert result.returncode == 4  # pytest's usage error
    assert "no file" in result.stderr and "Traceback" not in result.stderr


# -- an experiment file ------------------------------------------------------------------------

EXPERIMENT = """\
name = "own"
model = "mymodel.py:TanhNet"

[model_args]
width = 5

[data]
source = "blobs:200,4,3"

[train]
epochs = 4
lr = 0.5
loss = "softmax-ce"

[runs]
backends = ["numpy"]
dtypes = ["float64"]
"""


def test_an_experiment_runs_a_model_beside_it(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    shutil.copy(MODELS / "good.py", folder / "mymodel.py")
    (folder / "exp.toml").write_text(textwrap.dedent(EXPERIMENT))
    out = tmp_path / "out"
    run = cli("run", str(folder / "exp.toml"), "--out", str(out), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "agreement.json").read_text())
    assert report["passed"] and [r["backend"] for r in report["results"]] == ["numpy"]
    [record] = [json.loads(p.read_text())["run"] for p in (out / "runs").glob("*.json")]
    assert record["model_args"] == {"width": 5} and record["model"].endswith("mymodel.py:TanhNet")
    assert [len(p[0]) for p in record["params"]] == [5, 5, 3, 3]
    assert len(record["losses"]) == 4


@pytest.mark.backends("torch")
def test_an_experiment_runs_a_model_without_backward_on_torch(tmp_path):
    shutil.copy(MODELS / "good.py", tmp_path / "mymodel.py")
    text = EXPERIMENT.replace("TanhNet", "NoBackward").replace('["numpy"]', '["torch"]')
    (tmp_path / "exp.toml").write_text(textwrap.dedent(text))
    run = cli("run", str(tmp_path / "exp.toml"), "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr


def _refused_experiment(tmp_path, text: str):
    shutil.copy(MODELS / "good.py", tmp_path / "mymodel.py")
    (tmp_path / "exp.toml").write_text(textwrap.dedent(text))
    run = cli("run", str(tmp_path / "exp.toml"), "--quiet", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1 and "Traceback" not in run.stderr
    return run


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("width = 5", "depth = 2", "unexpected keyword argument 'depth'"),
        ("mymodel.py:TanhNet", "mymodel.py:Nope", "models there: "),
        ("mymodel.py:TanhNet", "missing.py:TanhNet", "no file"),
    ],
    ids=["model arg", "no such model", "no such file"],
)
def test_an_experiment_refuses_a_bad_model_in_one_line(tmp_path, old, new, message):
    run = _refused_experiment(tmp_path, EXPERIMENT.replace(old, new))
    assert message in run.stderr


def test_an_experiment_with_a_refused_model_writes_nothing(tmp_path):
    _refused_experiment(tmp_path, EXPERIMENT.replace("width = 5", "depth = 2"))
    assert not (tmp_path / "own").exists()
