"""The ``xptrain`` commands, one module each (pip's pattern): every module has ``HELP``,
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> exit code``. Only the command
being run is imported; ``xptrain --help`` lists them from :data:`COMMANDS` alone."""

from __future__ import annotations

import importlib
from types import ModuleType

# name: (module, one-line summary for `xptrain --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train the seed's logistic regressor (or an MLP) on one backend"),
    "check": ("check", "do the backends agree? every configuration against the float64 reference"),
    "explain": ("explain", "name the operation that makes a backend part from the reference"),
    "bench": ("bench", "seconds per epoch on each backend × device × size, against a bound"),
    "run": ("run", "run an experiment file on several backends and compare them"),
    "predict": ("predict", "apply a model saved by train --save-model to data, on any backend"),
    "backends": ("backends", "list backends, their versions and devices"),
}


def load(name: str) -> ModuleType:
    """The module of command ``name``."""
    return importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
