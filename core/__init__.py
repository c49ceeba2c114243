"""xptrain: one training loop, written once against the Python Array API standard, run on NumPy,
PyTorch, JAX, CuPy and array-api-strict, with the numbers compared across them.

``import xptrain`` imports no framework: a backend's library is imported when it is first used.
"""

from . import backends
from .api import TrainResult, train
from .data import Problem, load, make_problem, seed_problem
from .errors import BackendUnavailable, InvalidInput, TrainingDiverged, XptrainError
from .options import Options

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
