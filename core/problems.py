"""The reference problems that ``xptrain check`` and the conformance tests run on every backend.

Each is data (made on the host) plus the run's length, step size and initial-weight seed. Their
references come from the plain float64 NumPy loop in :mod:`xptrain.reference`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .data import Problem, load, standardize
from .errors import InvalidInput
from .reference import SEED_EPOCHS, SEED_LR


@dataclass(frozen=True)
class ReferenceProblem:
    """A named problem and how to train on it."""

    name: str
    make: Callable[[], Problem]
    epochs: int
    lr: float
    seed: int = 1
    hidden: tuple[int, ...] = ()  # no hidden layers: the seed's logistic regressor
    activation: str = "sigmoid"
    # optional modules its data needs, by import name (the tests skip without them)
    needs: tuple[str, ...] = ()


PROBLEMS: dict[str, ReferenceProblem] = {
    p.name: p
    for p in (
        # the seed's 4×3 toy problem, 20 epochs, alpha 1
        ReferenceProblem("seed", lambda: load("seed"), epochs=SEED_EPOCHS, lr=SEED_LR),
        # Gaussian features, noisy linear labels
        ReferenceProblem("synthetic", lambda: load("linear:10000,32"), epochs=50, lr=0.5),
        # scikit-learn's breast-cancer set (569×30), standardised
        ReferenceProblem(
            "breast_cancer",
            lambda: standardize(load("breast_cancer")),
            epochs=50,
            lr=0.5,
            needs=("sklearn",),
        ),
        # the same, an MLP with 16 tanh hidden units
        ReferenceProblem(
            "breast_cancer_mlp",
            lambda: standardize(load("breast_cancer")),
            epochs=50,
            lr=0.5,
            hidden=(16,),
            activation="tanh",
            needs=("sklearn",),
        ),
    )
}


def get(name: str) -> ReferenceProblem:
    """The reference problem called ``name``."""
    if name not in PROBLEMS:
        raise InvalidInput(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    return PROBLEMS[name]
