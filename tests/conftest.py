"""One ``backend`` fixture for the whole matrix: every built-in backend × the device kinds it can
have. A backend that is not installed, or a device that is not present, is skipped with the reason.

What a test needs is declared, never checked in its body (SciPy-style):

  @pytest.mark.needs("sklearn")           an optional module (MODULES below), a tool (TOOLS), or a
  @pytest.mark.needs("jit")               capability of the ``backend`` fixture's backend
                                          (a bool field of xptrain.backends.base.Capabilities)
  @pytest.mark.backends("jax", "torch")   built-in backends that must load here

(parameters too: ``helpers.on_backends(...)``, ``helpers.reference_problems()``, whose problems
declare what their data needs), and the ``grad`` and ``mode`` fixtures need ``autodiff`` and
``jit`` of ``backend`` by themselves. A missing module, tool or backend skips the test, saying
why; a combination that can never run (autodiff or jit on a backend without it, any other
capability need the backend lacks) is deselected at collection, so the skips counted are only
what this machine lacks.

Environment:
  XPTRAIN_BACKENDS=numpy,jax      test only these backends (tox envs use this)
  XPTRAIN_REQUIRE=numpy,torch     fail, rather than skip, when one of these cannot be loaded (CI)
  XPTRAIN_REQUIRE_CUDA=1          fail, rather than skip, when a CUDA case has no GPU (GPU check)
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import pytest

import xptrain
from xptrain import backends, problems
from xptrain.backends.base import Capabilities
from xptrain.data import Problem
from xptrain.errors import BackendUnavailable


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


SELECTED = [backends.canonical_name(n) for n in _env_list("XPTRAIN_BACKENDS")] or backends.names()
REQUIRED = {backends.canonical_name(n) for n in _env_list("XPTRAIN_REQUIRE")}
CASES = [(name, kind) for name in SELECTED for kind in backends.SPECS[name].device_kinds]

# -- what a test may declare it needs ------------------------------------------------------------

# optional modules: the name a test (or a reference problem's ``needs``) declares -> how to get it
MODULES = {
    "sklearn": "scikit-learn is not installed: pip install 'xptrain[datasets]'",
    "matplotlib": "matplotlib is not installed: pip install 'xptrain[plot]'",
    "mpmath": "mpmath is not installed: pip install 'xptrain[test]'",
    "distributed": "dask.distributed is not installed: pip install 'xptrain[dask]'",
    # the array libraries in tests/namespaces wrap array-api-strict (the library, not the backend)
    "array_api_strict": "array-api-strict is not installed: pip install 'xptrain[strict]'",
}
# what the machine must have: name -> (present?, why skipped when not)
TOOLS: dict[str, tuple[Callable[[], bool], str]] = {
    "script": (
        lambda: shutil.which("script") is not None,
        "util-linux `script` is not installed, so no pseudo-terminal to test with",
    ),
    "fork": (
        lambda: "fork" in multiprocessing.get_all_start_methods(),
        "no fork on this platform",
    ),
    "threads": (  # NumPy's row groups on worker threads: one per core
        lambda: backends.get("numpy").workers > 1,
        "one core: no worker threads",
    ),
}
# capabilities of the `backend` fixture's backend that a test may need
CAPABILITIES = {f.name for f in fields(Capabilities) if f.type in (bool, "bool")}
# fixtures whose value needs a capability of `backend`: fixture -> {value: capability}
FIXTURE_NEEDS = {"grad": {"autodiff": "autodiff"}, "mode": {"jit": "jit"}}
LACKS = {"autodiff": "automatic differentiation", "jit": "jit compiler"}  # for skip reasons
# data fixtures (below): fixture -> the reference problem it is, whose declared needs it brings
DATA_FIXTURES = {"breast_cancer": "breast_cancer"}


def _declared(item: pytest.Item, marker: str) -> list[str]:
    return [name for mark in item.iter_markers(marker) for name in mark.args]


def _check_declarations(item: pytest.Item) -> None:
    """A typo in a declaration is an error, not a skip that hides the test for ever."""
    for name in _declared(item, "needs"):
        if name in CAPABILITIES:
            if "backend" not in getattr(item, "fixturenames", ()):
                raise pytest.UsageError(
                    f"{item.nodeid}: needs({name!r}) is a backend capability; "
                    "the test must use the `backend` fixture"
                )
        elif name not in MODULES and name not in TOOLS:
            raise pytest.UsageError(
                f"{item.nodeid}: unknown need {name!r}; choose from "
                f"{', '.join([*MODULES, *TOOLS, *sorted(CAPABILITIES)])}"
            )
    for name in _declared(item, "backends"):
        if name not in backends.SPECS:
            raise pytest.UsageError(
                f"{item.nodeid}: unknown backend {name!r}; choose from {', '.join(backends.SPECS)}"
            )


@functools.cache
def _capabilities(name: str) -> Capabilities | None:
    """A built-in backend's declared capabilities, read from its class without starting the
    library; None where its module does not import (the ``backend`` fixture then says why)."""
    spec = backends.SPECS[name]
    try:
        module = importlib.import_module(f"xptrain.backends.{spec.module}")
    except Exception:  # not installed, or broken: a skip (or, if required, a failure) later
        return None
    return getattr(module, spec.cls).caps


def _capability_needs(item: pytest.Item) -> set[str]:
    """The capabilities of ``backend`` that this test needs: declared, and by its parameters."""
    needed = {name for name in _declared(item, "needs") if name in CAPABILITIES}
    params = getattr(getattr(item, "callspec", None), "params", {})
    for fixture, values in FIXTURE_NEEDS.items():
        if params.get(fixture) in values:
            needed.add(values[params[fixture]])
    return needed


def _lacking(name: str, needed: Iterable[str]) -> list[str]:
    caps = _capabilities(name)
    if caps is None:
        return []
    return [cap for cap in sorted(needed) if not getattr(caps, cap)]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect what can never run: a case of the ``backend`` matrix whose backend lacks a
    capability the test needs (numpy × autodiff, array_api_strict × jit, ...)."""
    keep, drop = [], []
    for item in items:
        for fixture, problem in DATA_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.needs(*problems.get(problem).needs))
        _check_declarations(item)
        params = getattr(getattr(item, "callspec", None), "params", {})
        case = params.get("backend")
        if isinstance(case, tuple) and _lacking(case[0], _capability_needs(item)):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _unavailable(name: str) -> str | None:
    """Why the built-in backend ``name`` cannot load here (None: it loads); a failure instead
    where XPTRAIN_REQUIRE names it."""
    try:
        backends.get(name)
    except BackendUnavailable as err:
        if name in REQUIRED:
            pytest.fail(f"required backend unavailable: {err}")
        return str(err)
    return None


def _missing(item: pytest.Item) -> str | None:
    """Why this test cannot run here: a declared backend, module or tool missing (None: none)."""
    for name in _declared(item, "backends"):
        if reason := _unavailable(name):
            return reason
    for name in _declared(item, "needs"):
        if name in MODULES and importlib.util.find_spec(name) is None:
            return MODULES[name]
        if name in TOOLS and not TOOLS[name][0]():
            return TOOLS[name][1]
    return None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    """Skip, saying why, a test whose declared backends, modules or tools are missing: as a skip
    mark, which pytest's own skipping (before any fixture is set up) reports at the test."""
    if reason := _missing(item):
        item.add_marker(pytest.mark.skip(reason=reason))
    return (yield)


# -- the fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendCase:
    """A backend and one of its devices, as a test uses them."""

    name: str
    device: str
    impl: backends.Backend

    def __str__(self) -> str:
        return f"{self.name}-{self.device}"

    def train(self, X: Any, y: Any, *, mode: str = "eager", **options: Any) -> Any:
        """``xptrain.train`` on this backend and device; ``mode="jit"`` compiles the step."""
        return xptrain.train(
            X, y, backend=self.name, device=self.device, jit=mode == "jit", **options
        )


@pytest.fixture(scope="session", autouse=True)
def _own_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Path decisions measured by the tests go to a folder of the session's, never the user's
    cache (subprocesses inherit it)."""
    before = os.environ.get("XPTRAIN_CACHE_DIR")
    os.environ["XPTRAIN_CACHE_DIR"] = str(tmp_path_factory.mktemp("xptrain-cache"))
    yield
    if before is None:
        os.environ.pop("XPTRAIN_CACHE_DIR")
    else:
        os.environ["XPTRAIN_CACHE_DIR"] = before


@pytest.fixture(params=["float64", "float32"])
def dtype(request: pytest.FixtureRequest) -> str:
    """Each precision a backend is held to (a test asking for it runs in both)."""
    return request.param


@pytest.fixture(params=["analytic", "autodiff"])
def grad(request: pytest.FixtureRequest) -> str:
    """Each gradient engine; ``autodiff`` only on backends that have it (the rest deselected)."""
    return request.param


@pytest.fixture(params=["eager", "jit"])
def mode(request: pytest.FixtureRequest) -> str:
    """Eager, and compiled where the backend compiles (the rest deselected)."""
    return request.param


@pytest.fixture(scope="session")
def breast_cancer() -> Problem:
    """scikit-learn's breast-cancer set, standardised: the ``breast_cancer`` reference problem's
    data (a test using it needs what that problem declares)."""
    return problems.get("breast_cancer").make()


@pytest.fixture(params=CASES, ids=[f"{name}-{kind}" for name, kind in CASES])
def backend(request: pytest.FixtureRequest) -> BackendCase:
    name, kind = request.param
    if reason := _unavailable(name):
        pytest.skip(reason)
    impl = backends.get(name)
    try:
        device = impl.resolve_device(kind)
    except BackendUnavailable as err:
        if kind == "cuda" and os.environ.get("XPTRAIN_REQUIRE_CUDA") == "1":
            pytest.fail(str(err))
        pytest.skip(f"no {kind} device for {name} on this machine: {err}")
    # deselected at collection already; this holds where collection could not read the class
    for cap in sorted(_capability_needs(request.node)):
        if not getattr(impl.caps, cap):
            pytest.skip(f"{name} has no {LACKS.get(cap, cap)}")
    return BackendCase(name, device, impl)
