"""Mutation testing of the modules whose mistakes change numbers or lose data (``tox -e mutate``).

Each module is mutated by mutmut 3 against only its fast tests (NumPy backend, not slow, not the
other array libraries' tests: OTHER_LIBRARIES), one module at a time, with one worker: about half
an hour for all of them on 2 cores (docs/development.md). mutmut finds a package by its folder
name, and ours is ``xptrain`` mapped from ``core/``: so each module gets a staging folder
``.mutate/<module>/`` (git-ignored) holding a copy of ``core/`` as ``xptrain/`` (with
``backends/`` inside it), the tests, and a generated ``pyproject.toml`` with the mutmut settings
and pytest's markers. mutmut copies that into ``.mutate/<module>/mutants/`` and runs there.

    python tools/mutate.py                 every module, then the table
    python tools/mutate.py loss optim      some of them
    python tools/mutate.py --report        the table of the last runs, nothing run
    python tools/mutate.py --survivors     the diffs of the surviving mutants of the last runs
    python tools/mutate.py --retry loss    only the last run's survivors again, with the tests as
                                           they are now (after writing a test that kills them);
                                           --only PATTERN...: those of them whose names match
    python tools/mutate.py --baseline      without the tests written to kill mutants
                                           (tests/test_mutants_*.py), in .mutate/baseline/

The table: per module, the mutants killed (a test failed), timed out (counted as killed: the
mutant hangs or runs away), survived, and with no test (survivors too: no mapped test runs the
mutated function), and the kill rate ``(killed + timeout) / mutants``.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
STAGE = ROOT / ".mutate"  # --baseline: .mutate/baseline

# module (core/<name>.py) -> its fast tests (files, or pytest node ids: FILE::TEST); files that
# do not exist (yet) are left out
TESTS: dict[str, list[str]] = {
    "loss": ["test_loss.py", "test_blocked.py", "test_mutants_loss.py"],
    "grad": ["test_blocked.py", "test_models.py", "test_mutants_grad.py"],
    "optim": ["test_optim.py", "test_mutants_optim.py"],
    "conformance": ["test_conformance.py", "test_reference.py", "test_mutants_conformance.py"],
    "checkpoint": ["test_checkpoint_folder.py", "test_mutants_checkpoint.py"],
    "files": ["test_refusals.py", "test_mutants_files.py"],
    "data": [
        "test_data.py",
        "test_validation.py",
        "test_mutants_data.py",
        # the chunked scaling and copy against NumPy's whole-array numbers (not the rest of
        # test_one_copy.py: its memory measurements are slow)
        "test_one_copy.py::test_scaling_in_chunks_gives_numpys_numbers",
        "test_one_copy.py::test_a_strided_x_is_copied_once_in_the_runs_dtype",
    ],
}

# tests that cannot run under mutmut: this one sends a child Ctrl-C, which mutmut's runner
# keeps from arriving (the child runs to its timeout)
DESELECT = [
    "tests/test_refusals.py::test_ctrl_c_while_importing_an_array_library_is_one_line_and_exit_130"
]

# tests of the other array libraries, left out: they run where jax or torch is installed,
# whatever XPTRAIN_BACKENDS says, and take seconds each to import and compile, paid again by every
# mutant of a function they cover that the NumPy tests let live (grad.py took 22 minutes with them
# on a 2-core AMD EPYC, 3 to 5 without them on a 2-core Xeon); they kill none of grad's or
# conformance's survivors (docs/development.md). Kept: loss's autodiff of saturated rows under
# jax and torch, the one test of the NaN-free gradient through bce's `where` (NumPy has no
# autodiff), paid only by loss's few survivors.
OTHER_LIBRARIES = [
    "tests/test_blocked.py::test_blocked_under_jax_jit",
    "tests/test_blocked.py::test_jax_fold_is_a_loop_not_unrolled",
    "tests/test_blocked.py::test_python_fold_unrolls_under_jit",
    "tests/test_blocked.py::test_blocked_under_torch_compile",
    "tests/test_models.py::test_a_model_without_backward_on_torch",
    "tests/test_conformance.py::test_resume_on_another_backend[numpy-cpu-jax]",
    "tests/test_conformance.py::test_resume_on_another_backend[numpy-cpu-torch]",
    "tests/test_optim.py::test_cli_adam_checkpoints_resume_on_jax",
]

# modules whose tests train on NumPy's threads (see stage())
THREADED = {"loss", "grad", "conformance"}

# exit codes mutmut records per mutant (mutmut/stats.py)
KILLED, SURVIVED, NO_TESTS, TIMEOUTS = {1}, {0}, {5, 33}, {36, -24, -9}  # -24: CPU limit


def _pytest_markers() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]


def stage(module: str) -> Path:
    """A fresh ``.mutate/<module>/``: the package as ``xptrain/``, the tests, the settings."""
    where = STAGE / module
    shutil.rmtree(where, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "core", where / "xptrain", ignore=ignore)
    shutil.copytree(ROOT / "backends", where / "xptrain" / "backends", ignore=ignore)
    shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
    shutil.copytree(ROOT / "examples", where / "examples", ignore=ignore)  # models tests load
    tests = [f"tests/{t}" for t in TESTS[module] if (ROOT / "tests" / t.split("::")[0]).exists()]
    if STAGE.name == "baseline":
        tests = [t for t in tests if not t.startswith("tests/test_mutants_")]
    settings = {
        "source_paths": ["xptrain"],
        "only_mutate": [f"xptrain/{module}.py"],
        # one process, no xdist: mutmut forks a child per mutant
        "pytest_add_cli_args": ["-p", "no:xdist", "-p", "no:cacheprovider", "-m", "not slow"]
        + [arg for test in DESELECT + OTHER_LIBRARIES for arg in ("--deselect", test)],
        "pytest_add_cli_args_test_selection": tests,
        "also_copy": ["examples"],
        # loss, grad, conformance: a fresh process per mutant, forked from a server that only
        # collected the tests; their tests run NumPy's row groups on threads, and forking from
        # the process that ran them (mutmut's default, faster: warm caches) leaves children
        # deadlocked on locks whose threads are gone
        "process_isolation": "forkserver" if module in THREADED else "fork",
        # a hung mutant is given (its tests' time + 2 s) x 4, not mutmut's x 15
        "timeout_multiplier": 4.0,
        "timeout_constant": 2.0,
    }
    lines = ["[tool.mutmut]"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    lines += ["", "[tool.pytest.ini_options]", f"markers = {json.dumps(_pytest_markers())}"]
    (where / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return where


def run(module: str, retry: bool = False, only: list[str] | None = None) -> float:
    """mutmut over one module with one worker; the wall time in seconds. ``retry``: only the
    last run's survivors, against the tests as they are now (``only``: those matching one of
    these shell patterns)."""
    names = survivors(module) if retry else []
    if only:
        names = [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in only)]
    if retry:
        where = STAGE / module
        for tests in (where / "tests", where / "mutants" / "tests"):
            shutil.rmtree(tests, ignore_errors=True)
            shutil.copytree(ROOT / "tests", tests, ignore=shutil.ignore_patterns("__pycache__"))
        if not names:
            return 0.0
    else:
        where = stage(module)
    env = {**os.environ, "XPTRAIN_BACKENDS": "numpy"}
    env.pop("XPTRAIN_REQUIRE", None)
    start = time.monotonic()
    with open(where / "mutmut.log", "a" if retry else "w") as log:
        subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", "1", *names],
            cwd=where,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    seconds = time.monotonic() - start
    if not retry:
        (where / "wall_s").write_text(f"{seconds:.0f}\n")
    return seconds


def exit_codes(module: str) -> dict[str, int | None]:
    meta = STAGE / module / "mutants" / "xptrain" / f"{module}.py.meta"
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def counts(module: str) -> dict[str, int]:
    codes = list(exit_codes(module).values())
    c = {
        "mutants": len(codes),
        "killed": sum(e in KILLED for e in codes),
        "timeout": sum(e in TIMEOUTS for e in codes),
        "survived": sum(e in SURVIVED for e in codes),
        "no tests": sum(e in NO_TESTS for e in codes),
    }
    c["other"] = c["mutants"] - c["killed"] - c["timeout"] - c["survived"] - c["no tests"]
    return c


def survivors(module: str) -> list[str]:
    return [k for k, e in exit_codes(module).items() if e in SURVIVED | NO_TESTS]


def table(modules: list[str]) -> str:
    head = ["module", "mutants", "killed", "timeout", "survived", "no tests", "other", "kill rate"]
    head += ["wall"]
    rows = [head]
    for m in modules:
        c = counts(m)
        rate = (c["killed"] + c["timeout"]) / c["mutants"] if c["mutants"] else float("nan")
        wall = STAGE / m / "wall_s"
        seconds = int(wall.read_text()) if wall.exists() else None
        took = "-" if seconds is None else f"{seconds // 60}m{seconds % 60:02d}s"
        rows.append([f"{m}.py", *(str(c[k]) for k in head[1:7]), f"{rate:.1%}", took])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def show_survivors(modules: list[str]) -> None:
    for m in modules:
        for name in survivors(m):
            subprocess.run(
                [sys.executable, "-m", "mutmut", "show", name], cwd=STAGE / m, check=False
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help=f"some of: {', '.join(TESTS)} (default all)")
    parser.add_argument("--report", action="store_true", help="only the table of the last runs")
    parser.add_argument("--survivors", action="store_true", help="the surviving mutants' diffs")
    parser.add_argument("--retry", action="store_true", help="only the last run's survivors")
    parser.add_argument(
        "--only", nargs="+", default=[], metavar="PATTERN", help="with --retry: these mutants"
    )
    parser.add_argument(
        "--baseline", action="store_true", help="without tests/test_mutants_*.py (the 'before')"
    )
    args = parser.parse_args(argv)
    if args.baseline:
        global STAGE
        STAGE = ROOT / ".mutate" / "baseline"
    modules = args.modules or list(TESTS)
    unknown = sorted(set(modules) - set(TESTS))
    if unknown:
        parser.error(f"no such module: {', '.join(unknown)} (one of {', '.join(TESTS)})")
    if args.survivors:
        show_survivors(modules)
        return 0
    if not args.report:
        for m in modules:
            print(f"mutating core/{m}.py against {', '.join(TESTS[m])}", flush=True)
            print(f"  {run(m, args.retry, args.only):.0f} s", flush=True)
    print(table(modules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
