"""Running xptrain (or pytest) the way a user does: in a fresh Python process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from xptrain import problems

NAMESPACES = Path(__file__).parent / "namespaces"  # array libraries for bring-your-own tests


def run_python(*args: str, cwd=None, extra_path=None, timeout: int = 600):
    """``python ARGS`` in a subprocess; ``extra_path`` is put first on PYTHONPATH."""
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def xptrain(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """The ``xptrain`` command with ``args``."""
    return run_python("-m", "xptrain", *args, **kwargs)


def ctrl_c_as_in_a_terminal() -> None:
    """A child's ``preexec_fn``: Ctrl-C at its default, as a command typed in a terminal gets
    it. A suite started in the background (``cmd &`` in a script) ignores SIGINT, and every
    child inherits that: a test that sends Ctrl-C would wait on a child that never hears it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ctrl_c_as_in_a_terminal runs between fork and exec: one signal() call, no lock taken, so
# JAX's warning about forking a multithreaded process does not apply to those tests
FORK_THEN_EXEC = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")


def on_backends(*names: str) -> list:
    """``names`` as pytest parameters, each declaring that its built-in backend must load."""
    return [pytest.param(name, marks=pytest.mark.backends(name)) for name in names]


def reference_problems() -> list:
    """The reference problems' names as pytest parameters, each declaring what its data needs."""
    return [
        pytest.param(p.name, marks=pytest.mark.needs(*p.needs)) for p in problems.PROBLEMS.values()
    ]


def initial_params(problem, hidden: tuple = (), seed: int = 1, activation: str = "sigmoid"):
    """The starting parameters a run of the built-in logistic model (no ``hidden``) or MLP
    makes for ``problem`` with one output."""
    from xptrain.model_setup import starting_params
    from xptrain.models import MLP, Logistic

    model = MLP(tuple(hidden), activation) if hidden else Logistic()
    return starting_params(model, problem, 1, seed)
