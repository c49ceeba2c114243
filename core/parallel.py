"""Data-parallel training, the same loop on every engine: the rows are spread over replicas
(devices of one process, or processes), each replica sums its rows' loss and gradients, the
backend's collective adds the sums (JAX ``psum``, torch.distributed ``all_reduce``), and the
totals are divided by the *global* N once. So the mean is the single-device mean whatever
the split, and any N works: rows that do not divide evenly either stay uneven (torch ranks)
or are padded with rows the gradient leaves out (:data:`xptrain.grad.PAD_LABEL`; JAX's
sharding wants equal shards).

A backend that can do this returns a :class:`Replicas` from ``Backend.replicas``; core sees
only this protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .data import Problem
from .errors import InvalidInput
from .grad import PAD_LABEL, metric_means
from .loss import Loss
from .models import Params


class Replicas(Protocol):
    """How a backend spreads a run's rows and adds its replicas' sums."""

    count: int  # replicas in all: devices × processes
    here: int  # replicas in this process (its devices)
    even: bool  # every replica must hold the same number of rows (padding is added)

    def rows(self, n: int) -> tuple[int, int]:
        """This process's rows ``start, stop`` of ``n`` (already padded where ``even``)."""
        ...

    def put(self, a: np.ndarray, dtype: str, *, shard: bool) -> Any:
        """A host array onto this process's replicas: its rows spread over them (``shard``),
        or the whole array on each (parameters, optimizer state, held-out rows)."""
        ...

    def reduce(self, tree: tuple) -> tuple:
        """``(loss sum, gradient sums)`` added over every replica (inside the step)."""
        ...

    def wrap(self, step: Callable) -> Callable:
        """The epoch step as each replica runs it (JAX: under ``shard_map``)."""
        ...

    def record(self) -> dict[str, Any]:
        """What the run's record says about the replicas (engine, devices, processes)."""
        ...


def local_problem(problem: Problem, replicas: Replicas) -> tuple[Problem, bool]:
    """This process's rows of ``problem`` (padded with :data:`PAD_LABEL` rows to a multiple of
    the replicas where they must be even) and whether the rows were padded (anywhere: the
    masked step is every replica's)."""
    n = len(problem.y)
    if n < replicas.count:
        raise InvalidInput(
            f"{n} rows cannot be spread over {replicas.count} replicas: use at most {n}"
        )
    pad = (-n) % replicas.count if replicas.even else 0
    start, stop = replicas.rows(n + pad)
    # this process's rows only (a memory-mapped X is read for them alone), then its padding
    X, y = problem.X[min(start, n) : min(stop, n)], problem.y[min(start, n) : min(stop, n)]
    extra = stop - start - len(y)
    if extra:
        X = np.concatenate([X, np.zeros((extra, X.shape[1]), dtype=X.dtype)])
        y = np.concatenate([y, np.full((extra, y.shape[1]), PAD_LABEL)])
    # padding anywhere, not here: every process must compile the same step
    return Problem(X, y, problem.W, problem.b), pad > 0


def reduced_loss_and_grads(
    xp: Any, loss: Loss, local_sums: Callable, reduce: Callable, n: int
) -> Callable:
    """``(params, X, y) -> (metrics, grads)`` from a replica's ``local_sums`` (metric sums and
    gradient sums of its rows), added over the replicas by ``reduce``, divided by the global
    ``n`` rows (times the targets' columns for a per-element loss; accuracy: by the rows)."""

    def loss_and_grads(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        total, sums = reduce(local_sums(params, X, y))
        scale = 1 / (n * (y.shape[1] if loss.per_element else 1))
        return metric_means(xp, loss, total, n, y.shape[1]), tuple(scale * s for s in sums)

    return loss_and_grads
