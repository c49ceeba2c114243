"""xptrain: one training loop, written once against the Python Array API standard, run on NumPy,
PyTorch, JAX, CuPy and array-api-strict, with the numbers compared across them.

``import xptrain`` imports nothing heavy (no framework, not even NumPy): each public name and
submodule is imported when it is first used (PEP 562), so the ``xptrain`` command starts inside
its own error handling, where a Ctrl-C while importing is one line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import backends
    from .api import TrainResult, train
    from .data import Problem, load, make_problem, seed_problem
    from .errors import BackendUnavailable, InvalidInput, TrainingDiverged, XptrainError
    from .options import Options

# each public name's module
_HOMES = {
    "BackendUnavailable": "errors",
    "InvalidInput": "errors",
    "Options": "options",
    "Problem": "data",
    "TrainResult": "api",
    "TrainingDiverged": "errors",
    "XptrainError": "errors",
    "load": "data",
    "make_problem": "data",
    "seed_problem": "data",
    "train": "api",
}

__all__ = [
    "BackendUnavailable",
    "InvalidInput",
    "Options",
    "Problem",
    "TrainResult",
    "TrainingDiverged",
    "XptrainError",
    "backends",
    "load",
    "make_problem",
    "seed_problem",
    "train",
]


def __getattr__(name: str) -> Any:
    """A public name, or a submodule (``xptrain.data``), imported on first use."""
    try:
        module = importlib.import_module(f"{__name__}.{_HOMES.get(name, name)}")
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":  # a submodule's own missing import
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(module, name) if name in _HOMES else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
