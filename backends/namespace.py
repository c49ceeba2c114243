"""Bring your own array library: any importable module that is an Array API namespace.

The library's default device is used (xptrain cannot know another library's devices), and it
gets no jit or autodiff: the core loop runs on its namespace as it is. This is how ``check``
tests a library xptrain has never heard of.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import numpy as np

from xptrain.errors import BackendUnavailable, InvalidInput

from .base import Backend

# What the core loop calls on a namespace; a module without these is not one.
REQUIRED = ("asarray", "exp", "log", "matmul", "sum", "stack", "float64", "float32")


class NamespaceBackend(Backend):
    """An Array API namespace given by module name."""

    def __init__(self, module: str) -> None:
        try:
            xp = importlib.import_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # ImportError, or whatever the module raises as it loads,
            # sys.exit() included: a library's import must not end xptrain
            raise BackendUnavailable(
                f"cannot import array library {module!r}: {type(err).__name__}: {err}"
            ) from None
        missing = [attr for attr in REQUIRED if not hasattr(xp, attr)]
        if missing:
            raise InvalidInput(
                f"module {module!r} is not an Array API namespace (it lacks {', '.join(missing)})"
            )
        self.name = module
        self.xp: ModuleType = xp

    def devices(self) -> list[str]:
        """One device, the library's default: xptrain cannot know another library's devices."""
        return ["default"]

    def resolve_device(self, spec: str | None = None) -> str:
        """Only the default device (``default``, or ``cpu`` meaning the same) can be asked for."""
        if spec not in (None, "default", "cpu"):
            raise BackendUnavailable(
                f"{self.name} is not a built-in backend, so xptrain uses its default device; "
                f"drop --device {spec}"
            )
        return "default"

    def native_device(self, name: str) -> Any:
        """None: arrays are made on the library's default device."""
        return None

    def to_numpy(self, x: Any) -> np.ndarray:
        """Through DLPack where the library supports it, else ``np.asarray``."""
        try:
            return np.from_dlpack(x)
        except (TypeError, AttributeError, BufferError, RuntimeError):
            return np.asarray(x)
