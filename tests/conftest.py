"""One ``backend`` fixture for the whole matrix: every built-in backend × the device kinds it can
have. A backend that is not installed, or a device that is not present, is skipped with the reason.

Environment:
  XPTRAIN_BACKENDS=numpy,jax      test only these backends (tox envs use this)
  XPTRAIN_REQUIRE=numpy,torch     fail, rather than skip, when one of these cannot be loaded (CI)
  XPTRAIN_REQUIRE_CUDA=1          fail, rather than skip, when a CUDA case has no GPU (GPU check)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

import xptrain
from xptrain import backends
from xptrain.errors import BackendUnavailable


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


SELECTED = [backends.canonical_name(n) for n in _env_list("XPTRAIN_BACKENDS")] or backends.names()
REQUIRED = {backends.canonical_name(n) for n in _env_list("XPTRAIN_REQUIRE")}
CASES = [(name, kind) for name in SELECTED for kind in backends.SPECS[name].device_kinds]


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

    def require(self, grad: str = "analytic", mode: str = "eager") -> None:
        """Skip, saying why, when this backend has no autodiff or no jit for the case."""
        if grad == "autodiff" and not self.impl.caps.autodiff:
            pytest.skip(f"{self.name} has no automatic differentiation")
        if mode == "jit" and not self.impl.caps.jit:
            pytest.skip(f"{self.name} has no jit compiler")


@pytest.fixture(params=["float64", "float32"])
def dtype(request: pytest.FixtureRequest) -> str:
    """Each precision a backend is held to (a test asking for it runs in both)."""
    return request.param


@pytest.fixture(params=["analytic", "autodiff"])
def grad(request: pytest.FixtureRequest) -> str:
    """Each gradient engine; pair with ``backend.require(grad, mode)``."""
    return request.param


@pytest.fixture(params=["eager", "jit"])
def mode(request: pytest.FixtureRequest) -> str:
    """Eager, and compiled where the backend compiles."""
    return request.param


@pytest.fixture(params=CASES, ids=[f"{name}-{kind}" for name, kind in CASES])
def backend(request: pytest.FixtureRequest) -> BackendCase:
    name, kind = request.param
    try:
        impl = backends.get(name)
    except BackendUnavailable as err:
        if name in REQUIRED:
            pytest.fail(f"required backend unavailable: {err}")
        pytest.skip(str(err))
    try:
        device = impl.resolve_device(kind)
    except BackendUnavailable as err:
        if kind == "cuda" and os.environ.get("XPTRAIN_REQUIRE_CUDA") == "1":
            pytest.fail(str(err))
        pytest.skip(f"no {kind} device for {name} on this machine: {err}")
    return BackendCase(name, device, impl)
