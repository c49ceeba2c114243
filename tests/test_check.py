"""`xptrain check` as a user runs it, the wrong namespaces it must catch, and the pytest plugin
used from a separate project."""

from __future__ import annotations

import json
import math
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import NAMESPACES, run_python, xptrain

from xptrain import check as checking
from xptrain import check_table
from xptrain.data import seed_problem
from xptrain.reference import reference_run


def check(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return xptrain("check", "--quiet", *args, **kwargs)


@pytest.mark.needs("matplotlib")
@pytest.mark.backends("array_api_strict")
def test_check_passes_on_every_cpu_backend(tmp_path):
    out, plot = tmp_path / "check.json", tmp_path / "check.png"
    # one problem: every problem on every backend is test_conformance's matrix, in-process
    result = check("--problems", "seed", "--json", str(out), "--plot", str(plot))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["problem", "backend", "device", "dtype", "grad", "mode"]
    assert lines[-1].startswith("PASS: all ")
    assert any(line.startswith("precision: ") for line in lines)
    report = json.loads(out.read_text())
    assert report["passed"] is True
    keys = {
        "backend",
        "device",
        "dtype",
        "grad",
        "mode",
        "problem",
        "max_rel_err",
        "max_ulp",
        "first_bad_epoch",
        "param_err",
        "repeatable",
        "tolerance",
        "margin",
        "passed",
        "seconds",
    }
    rows = report["results"]
    assert all(keys <= set(row) for row in rows)
    assert {row["problem"] for row in rows} == {"seed"}
    assert {"numpy", "array_api_strict"} <= {row["backend"] for row in rows}
    assert all(row["repeatable"] and row["margin"] < 1 for row in rows)
    assert all(row["seconds"] > 0 for row in rows)  # each configuration's two runs, timed
    assert {"numpy", "python", "xptrain"} <= set(report["versions"])
    assert "tau" in report["tolerance_model"]
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.backends("array_api_strict")
def test_a_subset_by_backend_dtype_and_device():
    result = check(
        "--backends",
        "numpy,array_api_strict",
        "--dtypes",
        "float32",
        "--devices",
        "cpu",
        "--problems",
        "seed",
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:3]]
    assert [(r[1], r[3]) for r in rows] == [("numpy", "float32"), ("array_api_strict", "float32")]


def test_names_are_listed_once_however_they_are_given():
    result = check(
        "--backends",
        "numpy,np",
        "--backends",
        "NumPy",
        "--problems",
        "seed",
        "seed",
        "--dtypes",
        "float64",
        "float64",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "PASS: all 1 configurations within tolerance"


@pytest.mark.needs("array_api_strict")  # the namespaces in tests/namespaces wrap it
def test_bring_your_own_namespace_passes():
    result = check("--backends", "good_namespace", "--problems", "seed", extra_path=NAMESPACES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "good_namespace  default" in result.stdout


@pytest.mark.needs("array_api_strict")
@pytest.mark.parametrize("namespace", ["perturbed_exp", "silent_float32"])
def test_a_wrong_namespace_fails_naming_the_first_bad_epoch(namespace, tmp_path):
    out = tmp_path / "r.json"
    result = check(
        "--backends", namespace, "--problems", "seed", "--json", str(out), extra_path=NAMESPACES
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert f"FAIL: 1 of 2 configurations: {namespace}/default/float64" in result.stderr
    assert "(first bad epoch 0)" in result.stderr
    report = json.loads(out.read_text())  # written even when the check fails: it is the evidence
    bad = [row for row in report["results"] if not row["passed"]]
    assert report["passed"] is False and len(bad) == 1
    assert bad[0]["dtype"] == "float64" and bad[0]["first_bad_epoch"] == 0


@pytest.mark.needs("array_api_strict")
@pytest.mark.parametrize("factor, passes", [(0.0, True), (0.5, True), (1.5, False)])
def test_the_tolerance_is_as_tight_as_its_model(factor, passes, monkeypatch):
    """A ``log`` off by ``factor`` times the model's loss tolerance: 1.5 must fail (a tolerance
    twice too loose would pass it), 0.5 must pass (one twice too tight would not)."""
    monkeypatch.syspath_prepend(str(NAMESPACES))
    import shifted_log

    ref = reference_run(seed_problem())
    losses = np.asarray(ref.losses)
    n, d = seed_problem().X.shape
    tau = 2 * float(np.finfo(np.float64).eps) / 2 * (math.sqrt(n) + math.sqrt(d))  # written out
    # Each row's term is -log(...) once, so the loss is off by SHIFT: τ·(L + 1) is allowed.
    monkeypatch.setattr(shifted_log, "SHIFT", factor * tau * (1 + float(losses.min())))
    config = checking.Config("seed", "shifted_log", "default", "float64", "analytic", "eager")
    row, _ = checking.run_config(config)
    assert row.error is None, row.error
    error = np.asarray(row.rel_err) * losses / (tau * (losses + 1))  # of the model's tolerance
    assert error.max() == pytest.approx(factor, abs=0.25)  # the calibration, whatever SAFETY is
    assert row.passed is passes, check_table.describe_failure(row)


@pytest.mark.needs("array_api_strict")
def test_train_accepts_an_own_namespace_too():
    result = xptrain("train", "--backend", "good_namespace", extra_path=NAMESPACES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Epoch: 19 Loss: 0.203407060401"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backends", "nosuchlib"], "unknown backend"),
        (["--backends", "os"], "not an Array API namespace"),
        (["--backends", "raises_on_import"], "licence server"),
        (["--backends", ","], "needs at least one name"),
        (["--problems", ""], "needs at least one name"),
        (["--problems", "mnist"], "unknown problem"),
        (["--dtypes", "float16"], "unknown dtype"),
        (["--devices", "tpu"], "unknown device"),
        (["--devices", "cuda:3", "--backends", "numpy"], "no backend here has a cuda:3 device"),
        pytest.param(
            ["--plot", "x.pgf"], "cannot draw a plot", marks=pytest.mark.needs("matplotlib")
        ),
        (["--json", "no/such/folder/r.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message, tmp_path):
    result = check(*args, cwd=tmp_path, extra_path=NAMESPACES)
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr, result.stderr
    assert list(tmp_path.iterdir()) == []


def _project(tmp_path: Path, library: str) -> Path:
    """A small separate project: its own library module and its own test."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "mylib.py").write_text((NAMESPACES / f"{library}.py").read_text())
    (project / "test_own.py").write_text(
        textwrap.dedent("""
        import mylib

        def test_own():
            assert mylib.sum(mylib.asarray([1.0, 2.0])) == 3.0
    """)
    )
    return project


def pytest_in(project: Path, *args: str) -> subprocess.CompletedProcess:
    """pytest run inside ``project``, as that project's developers would run it."""
    return run_python(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, cwd=project, extra_path=project
    )


@pytest.mark.needs("array_api_strict")
def test_plugin_runs_the_conformance_checks_in_another_project(tmp_path):
    project = _project(tmp_path, "good_namespace")
    result = pytest_in(project, "--xptrain-backend=mylib", "--xptrain-problems=seed", "-rA")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout  # the project's own test and 2 configurations
    assert "PASSED xptrain::mylib/default/float64/analytic/eager on seed" in result.stdout
    alone = pytest_in(project)
    assert "1 passed" in alone.stdout  # without the option the plugin adds nothing


@pytest.mark.needs("array_api_strict")
def test_plugin_fails_a_wrong_library_naming_the_epoch(tmp_path):
    project = _project(tmp_path, "perturbed_exp")
    result = pytest_in(project, "--xptrain-backend=mylib", "--xptrain-problems=seed")
    assert result.returncode == 1
    assert "1 failed, 2 passed" in result.stdout
    assert "mylib/default/float64/analytic/eager on seed: first bad epoch 0" in result.stdout
    assert "culprit exp at loss." in result.stdout  # the operation to blame, named


def test_plugin_reports_an_unknown_library_as_usage_error(tmp_path):
    project = _project(tmp_path, "good_namespace")
    result = run_python("-m", "pytest", "-q", "--xptrain-backend=nosuchlib", cwd=project)
    assert result.returncode == 4  # pytest's usage error
    assert "unknown backend 'nosuchlib'" in result.stderr


def test_a_library_that_exits_fails_its_rows_and_the_rest_are_reported(tmp_path):
    out = tmp_path / "r.json"
    result = check(
        "--backends", "numpy,exitns", "--problems", "seed", "--json", str(out),
        extra_path=NAMESPACES,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "SystemExit: 0 raised by the library" in result.stdout
    rows = json.loads(out.read_text())["results"]
    numpy_rows = [row for row in rows if row["backend"] == "numpy"]
    exitns_rows = [row for row in rows if row["backend"] == "exitns"]
    assert numpy_rows and all(row["passed"] for row in numpy_rows)
    assert exitns_rows and not any(row["passed"] for row in exitns_rows)
    assert all(row["error"] == "SystemExit: 0 raised by the library" for row in exitns_rows)


def test_plugin_fails_an_item_whose_library_exits(tmp_path):
    project = _project(tmp_path, "exitns")
    result = pytest_in(project, "--xptrain-backend=mylib", "--xptrain-problems=seed")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "2 failed, 1 passed" in result.stdout  # the session went on past the exits
    assert "SystemExit: 0 raised by the library" in result.stdout


def test_a_planned_configuration_without_a_row_fails_the_check(monkeypatch):
    from dataclasses import replace

    from xptrain import check as checking

    configs, _ = checking.plan(["seed"], ["numpy"], None, ["float64"])
    run_config = checking.run_config  # each row comes back for another configuration
    monkeypatch.setattr(checking, "run_config", lambda c: run_config(replace(c, mode="lost")))
    report = checking.run(configs, progress_bar=False)
    assert not report.passed and report.missing == [c.label for c in configs]
    assert check_table.summary(report).startswith(f"FAIL: no result for {len(configs)}: ")
    assert report.to_dict()["missing"] == report.missing


@pytest.mark.parametrize("name", ["this", "__main__"])
def test_a_standard_library_module_is_refused_before_it_is_imported(name):
    result = xptrain("train", "--backend", name)
    assert result.returncode == 2
    assert result.stdout == ""  # `this` prints the Zen of Python as it is imported
    assert len(result.stderr.splitlines()) == 1 and "not an Array API namespace" in result.stderr
