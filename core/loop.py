"""The epoch loop, written once for every backend: full batch, minibatches, fused compiled
stretches of epochs, validation after each epoch, checkpoints, callbacks and the history.

:func:`fit` is the low-level API under :func:`xptrain.train`: it runs a step built by
:mod:`xptrain.steps` on data placed by :mod:`xptrain.placement`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from .backends import Backend
from .errors import TrainingDiverged
from .steps import Carry, Step

# Without a per-epoch callback, losses stay on the device and are checked this many at a time:
# one host round trip per block instead of one per epoch.
_CHECK_EVERY = 64
# A fused run (JAX's lax.scan) is checked this many epochs at a time: a run that diverges early
# stops within this many epochs, and a run compiles at most two lengths (this and the rest).
_FUSED_EPOCHS = 1024

# per epoch: "loss" (and "accuracy" for a loss with classes), and "val_" the same on held-out rows
History = dict[str, list[float]]
EpochCallback = Callable[[int, dict[str, float]], None]  # (epoch, {"loss": ..., ...})


@dataclass(frozen=True)
class Minibatches:
    """Minibatch epochs: rows taken in the order ``order(epoch)`` gives (a device index array,
    drawn on the host), ``size`` at a time. A data-parallel run has ``shares(epoch)`` instead:
    for each batch, this process's rows of it on its replicas, the step for the batch's size,
    and that size (see :func:`replica_minibatches`)."""

    order: Callable[[int], Any] | None
    size: int
    shares: Callable[[int], Iterator[tuple[Any, Any, Step, int]]] | None = None


@dataclass(frozen=True)
class Validation:
    """Held-out rows, evaluated after every epoch by ``run(params, X, y)`` (see
    :func:`make_evaluate`)."""

    run: Callable
    X: Any
    y: Any


def metric_names(validation: bool, classifies: bool) -> tuple[str, ...]:
    """The history's columns: the step's metrics (the loss, and the accuracy for a loss with
    classes), then with ``validation`` the same on the held-out rows (``val_``...)."""
    names = ("loss", "accuracy") if classifies else ("loss",)
    return names + tuple(f"val_{name}" for name in names) if validation else names


def fit(
    step: Step,
    carry: Carry,
    X: Any,
    y: Any,
    bk: Backend,
    *,
    epochs: int,
    start_epoch: int = 0,
    on_epoch: EpochCallback | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[int, Carry, History], None] | None = None,
    batches: Minibatches | None = None,
    validation: Validation | None = None,
    fused: Callable[[int], Callable] | None = None,
    lockstep: bool = False,
) -> tuple[Carry, History]:
    """Run epochs ``start_epoch`` to ``epochs - 1``; return the final carry (parameters and
    optimizer state) and the history of those epochs on the host: ``{"loss": [...]}``, with
    ``accuracy`` where the step's metrics have it (a loss with classes), and the same prefixed
    ``val_`` with ``validation`` (evaluated after each epoch's update).
    ``on_epoch(epoch, metrics)`` gets each epoch's numbers as a dict; ``on_checkpoint(done,
    carry, history)`` is called every ``checkpoint_every`` epochs and at the end.

    Full batch by default (the seed). With ``batches``, each epoch steps once per minibatch;
    its loss is the mean of the batch losses weighted by batch size. ``fused(k)`` (see
    :func:`make_fused`) runs k full-batch epochs in one compiled call: without ``on_epoch`` the
    whole run (up to 1024 epochs a call), or each stretch between checkpoints, is one call and
    one host transfer. ``lockstep`` (a process of a data-parallel group): the stretches of
    epochs run depend on ``epochs`` and ``checkpoint_every`` alone, never on which callbacks
    this process has, so every process runs the same compiled calls and collectives;
    ``on_epoch`` then hears of each stretch's epochs after it.

    Stops with :class:`TrainingDiverged` naming the first epoch whose loss is NaN or inf.
    """
    history: History = {"loss": []}
    # stretches end at checkpoints; and, in a group, wherever any process's would
    every = checkpoint_every if on_checkpoint is not None or lockstep else None
    live = on_epoch is not None and not lockstep  # an epoch a call, each reported at once
    use_fused = _fuses(fused, live, batches)
    epoch = start_epoch
    while epoch < epochs:
        stop = _stretch_end(epoch, epochs, every, live, use_fused)
        if use_fused:
            extra = () if validation is None else (validation.X, validation.y)
            carry, metrics = fused(stop - epoch)(carry, X, y, *extra)
        else:
            carry, metrics = _epochs(step, carry, X, y, bk, range(epoch, stop), batches, validation)
        _record(bk.to_numpy(metrics), epoch, validation is not None, history, on_epoch)
        epoch = stop
        if on_checkpoint is not None and _due(epoch, epochs, every):
            on_checkpoint(epoch, carry, history)
    return carry, history


def _due(epoch: int, epochs: int, every: int | None) -> bool:
    """Whether a checkpoint falls after ``epoch`` epochs: one every ``every``, and the last."""
    return epoch == epochs or (bool(every) and epoch % every == 0)


def _fuses(fused: Callable | None, live: bool, batches: Minibatches | None) -> bool:
    """Whether stretches of epochs run as one compiled call: full batch, nothing live."""
    return fused is not None and not live and batches is None


def _stretch_end(epoch: int, epochs: int, every: int | None, live: bool, fused: bool) -> int:
    """Where the stretch of epochs run from ``epoch`` before the host looks ends: after one
    epoch when each is reported live; else at the next checkpoint (every ``every``), at most
    a block of losses (or a fused call's length) later."""
    if live:
        return epoch + 1
    stop = epochs if every is None else min(epochs, (epoch // every + 1) * every)
    return min(stop, epoch + (_FUSED_EPOCHS if fused else _CHECK_EVERY))


def _epochs(
    step: Step,
    carry: Carry,
    X: Any,
    y: Any,
    bk: Backend,
    epochs: range,
    batches: Minibatches | None,
    validation: Validation | None,
) -> tuple[Carry, Any]:
    """Epochs one call at a time; their metrics stacked on the device, one row per epoch."""
    if batches is None and validation is None and not _settles(bk):
        per_epoch = []  # the plain full-batch epoch: nothing but the step (a small problem's
        for _ in epochs:  # epoch is ~40 µs, and each line of bookkeeping costs ~0.2)
            carry, metrics = step(carry, X, y)
            per_epoch.append(metrics)
        return carry, bk.xp.stack(per_epoch)
    xp, per_epoch = bk.xp, []
    for epoch in epochs:
        if batches is None:
            carry, metrics = step(carry, X, y)
        else:
            carry, metrics = _minibatch_epoch(step, carry, X, y, xp, batches, epoch)
        if validation is not None:
            held_out = validation.run(carry[0], validation.X, validation.y)
            metrics = xp.concat([metrics, held_out])
        carry, metrics = bk.settle((carry, metrics))  # a lazy library: no graph of every epoch
        per_epoch.append(metrics)
    return carry, xp.stack(per_epoch)


def _settles(bk: Backend) -> bool:
    """Whether ``bk`` makes each epoch's arrays concrete (a lazy library overrides
    :meth:`~xptrain.backends.Backend.settle`; for the others it returns its input)."""
    return type(bk).settle is not Backend.settle


def _record(
    metrics: np.ndarray,
    first: int,
    validation: bool,
    history: History,
    on_epoch: EpochCallback | None,
) -> None:
    """Host rows of metrics into the history (and ``on_epoch``), named by their width (the
    step's metrics have an accuracy for a loss with classes); divergence stops the run: at
    epoch 0 (the loss never finite) the data or the starting point is to blame, and the
    message says so; later, the step size."""
    names = metric_names(validation, metrics.shape[1] == (4 if validation else 2))
    # a column at a time (one tolist each, not a dict per epoch), up to the first loss that
    # is not finite; the epochs before it are recorded, then the run stops
    bad = np.flatnonzero(~np.isfinite(metrics[:, 0]))
    good = metrics[: bad[0]] if bad.size else metrics
    for name, column in zip(names, good.T.tolist(), strict=True):
        history.setdefault(name, []).extend(column)
    if on_epoch is not None:
        for epoch, values in enumerate(good.tolist(), start=first):
            on_epoch(epoch, dict(zip(names, values, strict=True)))
    if bad.size:
        epoch = first + int(bad[0])
        raise TrainingDiverged(_diverged(float(metrics[bad[0], 0]), epoch), epoch)


def _diverged(loss: float, epoch: int) -> str:
    """The message of a loss that became ``loss`` (NaN or inf) at ``epoch``."""
    if epoch == 0:
        return (
            f"the loss was {loss} at epoch 0 (never finite): the data's scale or the model's "
            "start is the cause, not the step size; try --standardize"
        )
    return f"the loss became {loss} at epoch {epoch}; try a smaller learning rate"


def _minibatch_epoch(
    step: Step, carry: Carry, X: Any, y: Any, xp: Any, batches: Minibatches, epoch: int
) -> tuple[Carry, Any]:
    """One epoch of minibatches; its metrics the batches' weighted by their rows."""
    if batches.shares is not None:  # data-parallel: each batch spread over the replicas
        total, n = 0, 0
        for X_part, y_part, batch_step, size in batches.shares(epoch):
            carry, metrics = batch_step(carry, X_part, y_part)
            total, n = total + metrics * size, n + size
        return carry, total / n
    n, size = X.shape[0], batches.size
    order = batches.order(epoch)
    X, y = xp.take(X, order, axis=0), xp.take(y, order, axis=0)
    total = 0
    for start in range(0, n, size):
        stop = min(start + size, n)
        carry, metrics = step(carry, X[start:stop, ...], y[start:stop, ...])
        total = total + metrics * (stop - start)
    return carry, total / n
