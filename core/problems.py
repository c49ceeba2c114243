"""The reference problems that ``xptrain check`` and the conformance tests run on every backend.

Each is data (made on the host) plus the run's length, step size and initial-weight seed. Their
references come from the plain float64 NumPy loop in :mod:`xptrain.reference`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .data import Problem, load, standardize
from .errors import InvalidInput
from .loss import AUTO, for_labels
from .models import describe
from .options import Options
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
    loss: str = "bce"
    # optional modules its data needs, by import name (the tests skip without them)
    needs: tuple[str, ...] = ()
    # a user's model (FILE.py:NAME or an object) and its class's arguments; None: the
    # built-in logistic (no hidden layers) or MLP. Its reference is the float64 NumPy run of
    # the same model through xptrain (there is no textbook version of a user's model).
    model: Any = None
    model_args: tuple = ()
    version: int = 0  # a user's problem registered again under its name counts up (caches)

    def options(self, **changes: Any) -> Options:
        """The run options of this problem (``changes``: dtype, grad, jit, ...)."""
        own = {"model": self.model, "model_args": self.model_args}
        if self.model is None:
            own = {"hidden": self.hidden, "activation": self.activation}
        return Options(epochs=self.epochs, lr=self.lr, seed=self.seed, loss=self.loss, **own,
                       **changes)  # fmt: skip


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
        # all ten of scikit-learn's 8×8 digits (1797×64), standardised: a softmax MLP
        ReferenceProblem(
            "digits10",
            lambda: standardize(load("digits10")),
            epochs=30,
            lr=0.5,
            hidden=(16,),
            activation="tanh",
            loss="softmax-ce",
            needs=("sklearn",),
        ),
        # scikit-learn's diabetes regression (442×10), standardised: an MLP on the mean squared
        # error of the target scaled to unit spread
        ReferenceProblem(
            "diabetes",
            lambda: _scaled_target(standardize(load("diabetes"))),
            epochs=50,
            lr=0.1,
            hidden=(8,),
            activation="tanh",
            loss="mse",
            needs=("sklearn",),
        ),
    )
}


def _scaled_target(problem: Problem) -> Problem:
    """The targets centred and divided by their deviation (the diabetes target spans 25-346:
    unscaled, gradient descent with one step size for every problem would diverge)."""
    y = problem.y
    return Problem(problem.X, (y - y.mean(axis=0)) / y.std(axis=0), problem.W, problem.b)


def custom(
    model: Any,
    data: str,
    loss: str | None = None,
    epochs: int = 20,
    lr: float = 1.0,
    seed: int = 1,
    model_args: tuple = (),
    scaled: bool = False,
) -> ReferenceProblem:
    """A user's model on ``data`` (a data spec; ``scaled``: standardised) as a problem
    ``check`` can run (registered under the name ``NAME on DATA``); its options are checked
    here. Without ``loss``, the labels choose it (:func:`xptrain.loss.for_labels`)."""
    label = model.rpartition(":")[2] if isinstance(model, str) else describe(model)
    make = functools.cache(lambda: standardize(load(data)) if scaled else load(data))
    loss = for_labels(make().y) if loss in (None, AUTO) else loss
    problem = ReferenceProblem(
        f"{label} on {data}", make, epochs, lr, seed, loss=loss,
        model=model, model_args=tuple(model_args),
        version=next(_VERSIONS),
    )  # fmt: skip
    problem.options()  # a bad option is refused now, before anything runs
    _CUSTOM[problem.name] = problem
    return problem


# users' problems, by name: found by get(), never in the reference set a plain check runs
_CUSTOM: dict[str, ReferenceProblem] = {}
_VERSIONS = itertools.count(1)


def get(name: str) -> ReferenceProblem:
    """The reference problem called ``name``."""
    if name in _CUSTOM:
        return _CUSTOM[name]
    if name not in PROBLEMS:
        raise InvalidInput(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    return PROBLEMS[name]
