"""The training loop, written once against the Array API, and the public ``train`` function."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from . import backends
from .checkpoint import Checkpoint, check_compatible, fingerprint
from .data import (
    Problem,
    batch_order,
    check_fraction,
    initial_params,
    make_problem,
    split,
    standardize,
)
from .errors import InvalidInput, TrainingDiverged
from .grad import PAD_LABEL, bce_grads, block_rows, blocked_loss_and_grads, blocked_sums
from .loss import LOSSES, loss_from_logits, loss_sum
from .model import ACTIVATIONS, Params, forward, logits, sigmoid
from .optim import OPTIMIZERS, Optimizer, State
from .parallel import Replicas, local_problem, reduced_loss_and_grads
from .runinfo import versions

GRADS = ("analytic", "autodiff")
# Without a per-epoch callback, losses stay on the device and are checked this many at a time:
# one host round trip per block instead of one per epoch.
_CHECK_EVERY = 64
# A fused run (JAX's lax.scan) is checked this many epochs at a time: a run that diverges early
# stops within this many epochs, and a run compiles at most two lengths (this and the rest).
_FUSED_EPOCHS = 1024

History = dict[str, list[float]]  # per epoch: "loss", and "val_loss", "val_accuracy"
EpochCallback = Callable[[int, dict[str, float]], None]  # (epoch, {"loss": ..., ...})
Carry = tuple[Params, State]  # (parameters, optimizer state)
Step = Callable[[Carry, Any, Any], tuple[Carry, Any]]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced, on the host, with what is needed to reproduce and compare it.

    ``params`` are the final parameters as float64 host arrays, ``(W1, b1, ..., WL, bL)``;
    ``W`` and ``b`` are the output layer's (for the seed's model, its only layer). ``seconds``
    is the wall time of the epochs (compilation included, ending with a device sync); moving the
    data to the device is not in it.
    """

    losses: list[float]
    params: list[np.ndarray]
    seconds: float
    backend: str
    device: str
    device_name: str
    dtype: str
    epochs: int
    lr: float
    jit: bool
    grad: str
    optimizer: str
    hidden: tuple[int, ...] = ()
    activation: str = "sigmoid"
    batch_size: int | None = None
    loss: str = "bce"
    val_split: float | None = None
    val_losses: list[float] = field(default_factory=list)  # per epoch, with val_split
    val_accuracy: list[float] = field(default_factory=list)
    block: int | None = None  # rows per block of the one-pass gradient; None: full batch
    replicas: dict[str, Any] | None = None  # a data-parallel run's engine, devices, processes
    versions: dict[str, str] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)

    @property
    def W(self) -> np.ndarray:
        """The output layer's weights (H×1; D×1 for the seed's model)."""
        return self.params[-2]

    @property
    def b(self) -> float:
        """The output layer's bias."""
        return float(self.params[-1].reshape(()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` file)."""
        record = {
            k: getattr(self, k)
            for k in (
                "backend",
                "device",
                "device_name",
                "dtype",
                "epochs",
                "lr",
                "jit",
                "grad",
                "optimizer",
                "loss",
                "batch_size",
                "block",
                "losses",
            )
        }
        if self.val_split is not None:
            # a saturated validation loss is inf: null in the (strict) JSON
            record |= {
                "val_split": self.val_split,
                "val_losses": [v if math.isfinite(v) else None for v in self.val_losses],
                "val_accuracy": self.val_accuracy,
            }
        if self.replicas is not None:
            record["replicas"] = self.replicas
        record |= {"W": self.W.tolist(), "b": self.b, "seconds": self.seconds}
        if self.hidden:
            record |= {
                "model": "mlp",
                "hidden": list(self.hidden),
                "activation": self.activation,
                "params": [p.tolist() for p in self.params],
            }
        return record | {"versions": self.versions, "precision": self.precision}


def update_step(xp: Any, lr: float, optimizer: Optimizer, loss_and_grads: Callable) -> Step:
    """One epoch: ``loss_and_grads(params, X, y) -> (loss, grads)``, then the optimizer's
    update. Every gradient engine (analytic, one-pass, autodiff) is one such function."""

    def step(carry: Carry, X: Any, y: Any) -> tuple[Carry, Any]:
        params, state = carry
        value, grads = loss_and_grads(params, X, y)
        return optimizer.update(xp, params, tuple(grads), state, lr), value

    return step


def analytic_loss_and_grads(xp: Any, activation: str, loss: str) -> Callable:
    """Analytic backprop (the seed's ``dz = A - y`` and below), full batch, exactly as the
    seed computes it."""

    def loss_and_grads(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        outputs = forward(xp, params, X, activation)
        A = sigmoid(xp, outputs[-1])
        value = loss_from_logits(xp, loss, y, outputs[-1], A)
        return value, bce_grads(xp, params, outputs, A, y, activation)

    return loss_and_grads


def blocked_loss_and_grads_of(
    bk: backends.Backend, activation: str, loss: str, block: int
) -> Callable:
    """The one-pass blocked gradient (:func:`xptrain.grad.blocked_loss_and_grads`): the same
    loss and gradients, X read once, ``block`` rows at a time, the loop over blocks run by the
    backend's ``fold``, its row groups spread over the backend's ``workers``."""

    def loss_and_grads(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        return blocked_loss_and_grads(
            bk.xp, params, X, y, activation, loss, block, bk.fold, bk.spread, bk.workers
        )

    return loss_and_grads


def local_sums_of(
    bk: backends.Backend,
    grad: str,
    activation: str,
    loss: str,
    block: int | None,
    masked: bool,
) -> Callable:
    """``(params, X, y) -> (loss sum, gradient sums)`` over one replica's rows, for a
    data-parallel step: the one-pass analytic sums (one block of every row without
    ``block``), or the backend's autodiff of the summed loss. ``masked`` leaves padding rows
    out."""
    xp = bk.xp
    if grad == "autodiff":

        def summed(params: Params, X: Any, y: Any) -> Any:
            z = logits(xp, params, X, activation)
            keep = None
            if masked:  # padding rows: logit 0, so no inf whose zero cotangent would be NaN
                keep = y != PAD_LABEL
                z = xp.where(keep, z, xp.zeros_like(z))
            return loss_sum(xp, loss, y, z, sigmoid(xp, z), keep)

        return bk.value_and_grad(summed)

    def sums(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        rows = block or X.shape[0]
        return blocked_sums(
            xp, params, X, y, activation, loss, rows, bk.fold, bk.spread, bk.workers, masked
        )

    return sums


def autodiff_loss_and_grads(
    xp: Any, activation: str, loss: str, value_and_grad: Callable
) -> Callable:
    """The backend's automatic differentiation of the same loss."""

    def loss_fn(params: Params, X: Any, y: Any) -> Any:
        z = logits(xp, params, X, activation)
        return loss_from_logits(xp, loss, y, z, sigmoid(xp, z))

    return value_and_grad(loss_fn)


@functools.lru_cache(maxsize=64)
def make_step(
    bk: backends.Backend,
    grad: str,
    lr: float,
    jit: bool,
    optimizer: str = "sgd",
    activation: str = "sigmoid",
    loss: str = "bce",
    block: int | None = None,
    replicas: Replicas | None = None,
    rows: int | None = None,
    masked: bool = False,
) -> Step:
    """The epoch step for a configuration, built once: the same function object on every run,
    so compiled steps (jax.jit, torch.compile) are reused instead of recompiled. The step maps
    ``((params, optimizer_state), X, y)`` to ``((params, optimizer_state), loss)``. With
    ``block`` (analytic gradients only), the one-pass blocked gradient over that many rows.
    With ``replicas``, a data-parallel step: each replica's sums (``masked``: padding rows
    left out) added over the replicas and divided by the global ``rows``."""
    xp = bk.xp
    if replicas is not None:
        if rows is None:
            raise ValueError("a data-parallel step needs the global number of rows")
        local = local_sums_of(bk, grad, activation, loss, block, masked)
        loss_and_grads = reduced_loss_and_grads(local, replicas.reduce, rows)
        step = replicas.wrap(update_step(xp, lr, OPTIMIZERS[optimizer], loss_and_grads))
        return bk.jit(step) if jit else step
    if grad == "autodiff":
        loss_and_grads = autodiff_loss_and_grads(xp, activation, loss, bk.value_and_grad)
    elif block is not None:
        loss_and_grads = blocked_loss_and_grads_of(bk, activation, loss, block)
    else:
        loss_and_grads = analytic_loss_and_grads(xp, activation, loss)
    step = update_step(xp, lr, OPTIMIZERS[optimizer], loss_and_grads)
    return bk.jit(step) if jit else step


def choose_block(bk: backends.Backend, device: str, options: Options, n: int, d: int) -> int | None:
    """Rows per block of the one-pass gradient for ``n`` rows (per step) of ``d`` features, or
    None for the full-batch path: with ``exact`` (the seed's arithmetic), autodiff, off the
    CPU (GPU memory needs no cache blocking), on a chunked library (Dask: its graph already
    reads a chunk at a time), under torch.compile, on JAX without jit, and where one block
    would hold every row. An
    explicit ``options.block`` is used as given."""
    if options.block is not None:
        return options.block if options.block < n else None
    if options.exact or options.grad != "analytic" or device != "cpu" or bk.caps.chunked:
        return None
    if options.jit != bk.caps.scan:
        # JAX without jit would trace and compile its fori_loop anew every epoch (~0.25 s);
        # a jit without a loop primitive (torch.compile) would unroll the loop over blocks
        return None
    itemsize = 8 if options.dtype == "float64" else 4
    # JAX's fold is a compiled loop (cheap iterations, L2-sized blocks); eager libraries pay
    # a call per operation per block, so their blocks are larger (see block_rows)
    rows = block_rows(n, d, itemsize, compiled=bk.caps.scan)
    return rows if rows < n else None


def initial_carry(bk: backends.Backend, params: Params, optimizer: str = "sgd") -> Carry:
    """What a step carries from epoch to epoch, at the start: the parameters and the
    optimizer's initial state."""
    return params, OPTIMIZERS[optimizer].init(bk.xp, params)


def evaluate(xp: Any, params: Params, X: Any, y: Any, activation: str, loss: str) -> Any:
    """``[loss, accuracy]`` of ``params`` on (``X``, ``y``), one device array: the loss as
    training computes it, the accuracy with a logit > 0 read as class 1."""
    z = logits(xp, params, X, activation)
    value = loss_from_logits(xp, loss, y, z, sigmoid(xp, z))
    hits = xp.astype((z > 0) == (y > 0.5), z.dtype)
    return xp.stack([value, xp.mean(hits)])


@functools.lru_cache(maxsize=64)
def make_evaluate(bk: backends.Backend, jit: bool, activation: str, loss: str) -> Callable:
    """:func:`evaluate` for a configuration as ``(params, X, y) -> [loss, accuracy]``, built
    once (compiled once with ``jit``)."""

    def run(params: Params, X: Any, y: Any) -> Any:
        return evaluate(bk.xp, params, X, y, activation, loss)

    return bk.jit(run) if jit else run


@functools.lru_cache(maxsize=64)
def make_fused(
    bk: backends.Backend,
    grad: str,
    lr: float,
    optimizer: str,
    activation: str,
    loss: str,
    validation: bool,
    block: int | None,
    replicas: Replicas | None,
    rows: int | None,
    masked: bool,
    length: int,
) -> Callable:
    """``length`` full-batch epochs as one compiled call (the backend's ``scan`` under its
    ``jit``): ``(carry, X, y[, X_val, y_val]) -> (carry, metrics)``, one metrics row per epoch
    (the loss, and the validation loss and accuracy), built and compiled once per length.
    ``block`` .. ``masked`` as for :func:`make_step`."""
    xp = bk.xp
    step = make_step(
        bk, grad, lr, False, optimizer, activation, loss, block, replicas, rows, masked
    )

    def run(carry: Carry, X: Any, y: Any, *held_out: Any) -> tuple[Carry, Any]:
        def epoch(c: Carry) -> tuple[Carry, Any]:
            c, value = step(c, X, y)
            row = xp.reshape(value, (1,))
            if validation:
                row = xp.concat([row, evaluate(xp, c[0], *held_out, activation, loss)])
            return c, row

        return bk.scan(epoch, carry, length)

    return bk.jit(run)


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


def metric_names(validation: bool) -> tuple[str, ...]:
    """The history's columns: the training loss, and the validation loss and accuracy."""
    return ("loss", "val_loss", "val_accuracy") if validation else ("loss",)


def fit(
    step: Step,
    carry: Carry,
    X: Any,
    y: Any,
    bk: backends.Backend,
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
    optimizer state) and the history of those epochs on the host: ``{"loss": [...]}``, plus
    ``val_loss`` and ``val_accuracy`` with ``validation`` (evaluated after each epoch's update).
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
    names = metric_names(validation is not None)
    history: History = {name: [] for name in names}
    every = checkpoint_every if on_checkpoint is not None or lockstep else None
    live = on_epoch is not None and not lockstep  # an epoch a call, each reported at once
    use_fused = fused is not None and not live and batches is None
    epoch = start_epoch
    while epoch < epochs:
        stop = epochs if every is None else min(epochs, (epoch // every + 1) * every)
        if live:
            stop = epoch + 1
        else:  # losses wait on the device, checked a block at a time
            stop = min(stop, epoch + (_FUSED_EPOCHS if use_fused else _CHECK_EVERY))
        if use_fused:
            extra = () if validation is None else (validation.X, validation.y)
            carry, rows = fused(stop - epoch)(carry, X, y, *extra)
        else:
            carry, rows = _epochs(step, carry, X, y, bk, range(epoch, stop), batches, validation)
        _record(bk.to_numpy(rows).tolist(), epoch, names, history, on_epoch)
        epoch = stop
        if on_checkpoint is not None and (epoch == epochs or (every and epoch % every == 0)):
            on_checkpoint(epoch, carry, history)
    return carry, history


def _epochs(
    step: Step,
    carry: Carry,
    X: Any,
    y: Any,
    bk: backends.Backend,
    epochs: range,
    batches: Minibatches | None,
    validation: Validation | None,
) -> tuple[Carry, Any]:
    """Epochs one call at a time; their metrics stacked on the device, one row per epoch."""
    xp, rows = bk.xp, []
    for epoch in epochs:
        if batches is None:
            carry, loss = step(carry, X, y)
        else:
            carry, loss = _minibatch_epoch(step, carry, X, y, xp, batches, epoch)
        if validation is not None:
            metrics = validation.run(carry[0], validation.X, validation.y)
            loss = xp.concat([xp.reshape(loss, (1,)), metrics])
        carry, loss = bk.settle((carry, loss))  # a lazy library: not a graph over every epoch
        rows.append(loss)
    rows = xp.stack(rows)
    return carry, rows if validation is not None else xp.reshape(rows, (-1, 1))


def _record(
    rows: list[list[float]],
    first: int,
    names: tuple[str, ...],
    history: History,
    on_epoch: EpochCallback | None,
) -> None:
    """Host rows of metrics into the history (and ``on_epoch``); divergence stops the run."""
    for epoch, values in enumerate(rows, start=first):
        if not math.isfinite(values[0]):
            raise TrainingDiverged(
                f"the loss became {values[0]} at epoch {epoch}; try a smaller learning rate",
                epoch,
            )
        metrics = dict(zip(names, values, strict=True))
        for name, value in metrics.items():
            history[name].append(value)
        if on_epoch is not None:
            on_epoch(epoch, metrics)


def _minibatch_epoch(
    step: Step, carry: Carry, X: Any, y: Any, xp: Any, batches: Minibatches, epoch: int
) -> tuple[Carry, Any]:
    if batches.shares is not None:  # data-parallel: each batch spread over the replicas
        total, n = 0, 0
        for X_part, y_part, batch_step, rows in batches.shares(epoch):
            carry, loss = batch_step(carry, X_part, y_part)
            total, n = total + loss * rows, n + rows
        return carry, total / n
    n, size = X.shape[0], batches.size
    order = batches.order(epoch)
    X, y = xp.take(X, order, axis=0), xp.take(y, order, axis=0)
    total = 0
    for start in range(0, n, size):
        stop = min(start + size, n)
        carry, loss = step(carry, X[start:stop, ...], y[start:stop, ...])
        total = total + loss * (stop - start)
    return carry, total / n


@dataclass(frozen=True)
class Options:
    """How to train: precision, length, step size, initial-weight seed, compilation, gradients,
    optimizer and model (no ``hidden`` layers: the seed's logistic regressor). Checked on
    construction, so a bad option is refused before any data is touched."""

    dtype: str = "float64"
    epochs: int = 20
    lr: float = 1.0
    seed: int = 1
    jit: bool = False
    grad: str = "analytic"
    optimizer: str = "sgd"
    hidden: tuple[int, ...] = ()
    activation: str = "sigmoid"
    batch_size: int | None = None  # None: full batch, the seed's
    loss: str = "bce"  # the seed's; "bce-logits" is the numerically stable form
    val_split: float | None = None  # the fraction of rows held out for validation
    exact: bool = False  # the seed's full-batch arithmetic even where the one-pass gradient wins
    block: int | None = None  # rows per block of the one-pass gradient (None: chosen per machine)
    standardize: bool = False  # features to mean 0, deviation 1 (training rows' statistics)
    data_parallel: int | None = None  # devices per process to spread the rows over (JAX)
    distributed: bool = False  # every process of the joined group takes rows (torch ranks, JAX)

    def __post_init__(self) -> None:
        _choice("dtype", self.dtype, backends.DTYPES)
        if not _is_int(self.epochs) or self.epochs < 1:
            raise InvalidInput(f"epochs must be a whole number ≥ 1, got {self.epochs!r}")
        lr = self.lr
        if isinstance(lr, bool) or not isinstance(lr, Real) or not math.isfinite(lr) or lr <= 0:
            raise InvalidInput(f"the learning rate must be a finite number > 0, got {lr!r}")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise InvalidInput(
                f"the seed must be a whole number from 0 to 2**32 - 1, got {self.seed!r}"
            )
        _choice("gradient engine", self.grad, GRADS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("loss", self.loss, LOSSES)
        if not self.hidden and self.activation != "sigmoid":
            raise InvalidInput("an activation other than sigmoid needs hidden layers (an MLP)")
        hidden = tuple(self.hidden)
        if not all(_is_int(h) and h >= 1 for h in hidden):
            raise InvalidInput(f"hidden layer sizes must be whole numbers ≥ 1, got {hidden!r}")
        if self.batch_size is not None and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise InvalidInput(
                f"the batch size must be a whole number ≥ 1, got {self.batch_size!r}"
            )
        if self.val_split is not None:
            object.__setattr__(self, "val_split", check_fraction(self.val_split))
        if self.block is not None:
            if not _is_int(self.block) or self.block < 1:
                raise InvalidInput(f"the block size must be a whole number ≥ 1, got {self.block!r}")
            if self.exact or self.grad != "analytic":
                raise InvalidInput(
                    "a block size needs the one-pass analytic gradient: drop "
                    "--exact and --grad autodiff, or the block size"
                )
        if self.data_parallel is not None and (
            not _is_int(self.data_parallel) or self.data_parallel < 1
        ):
            raise InvalidInput(
                f"--data-parallel must be a whole number ≥ 1 of devices, got {self.data_parallel!r}"
            )
        if (self.data_parallel is not None or self.distributed) and self.exact:
            raise InvalidInput(
                "--exact is the seed's single-device arithmetic; a data-parallel run sums "
                "each replica's rows: drop one of them"
            )
        for name, kind in (("epochs", int), ("lr", float), ("seed", int)):
            object.__setattr__(self, name, kind(getattr(self, name)))
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))


def _choice(what: str, value: Any, choices: Any) -> None:
    if value not in choices:
        raise InvalidInput(f"unknown {what} {value!r}; choose from {', '.join(choices)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def train(
    X: Any,
    y: Any,
    *,
    backend: str = "numpy",
    device: str | None = None,
    dtype: str = "float64",
    epochs: int = 20,
    lr: float = 1.0,
    W: Any = None,
    b: Any = None,
    seed: int = 1,
    jit: bool = False,
    grad: str = "analytic",
    optimizer: str = "sgd",
    hidden: tuple[int, ...] = (),
    activation: str = "sigmoid",
    batch_size: int | None = None,
    loss: str = "bce",
    val_split: float | None = None,
    exact: bool = False,
    block: int | None = None,
    standardize: bool = False,
    data_parallel: int | None = None,
    distributed: bool = False,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Train the seed's logistic regressor (or, with ``hidden`` sizes, an MLP) on any backend;
    by default, the seed's run exactly.

    ``X`` (N×D) and ``y`` (N or N×1, 0/1) may be NumPy arrays or arrays of any backend; they
    are validated on the host and moved to ``device`` as ``dtype``. Without ``W`` the seed's
    rule draws it from ``seed``; ``b`` defaults to 0 (an MLP's layers are drawn from ``seed``,
    Glorot-uniform). ``optimizer`` is ``sgd`` (the seed's), ``momentum`` or ``adam``;
    ``batch_size`` steps on minibatches in an order drawn on the host from (seed, epoch);
    ``loss`` is ``bce`` (the seed's) or ``bce-logits`` (the same loss, stable when saturated).
    ``val_split`` holds that fraction of the rows out (drawn from ``seed``) and records their
    loss and accuracy after every epoch's update (the training loss is the epoch's own, before
    it). ``standardize`` scales the features with the training rows' mean and deviation.
    ``on_epoch(epoch, metrics)`` is called after every epoch with ``{"loss": ...}`` (and
    ``val_loss``, ``val_accuracy``); this syncs the device each epoch. On the CPU, large
    problems take the one-pass blocked gradient (X read once per epoch; the same numbers up to
    rounding); ``exact`` keeps the seed's full-batch arithmetic, ``block`` sets the rows per
    block instead of the machine's choice.

    ``data_parallel=N`` spreads the rows over N devices of this process (JAX: sharded, the
    gradient sums added by ``psum``); ``distributed`` spreads them over every process of the
    group already joined (torch.distributed's ranks, or JAX's processes after
    ``jax.distributed.initialize``), each with its ``data_parallel`` devices (default 1). Every
    process passes the whole problem and gets the same result; see :mod:`xptrain.parallel`.
    """
    options = Options(
        dtype=dtype,
        epochs=epochs,
        lr=lr,
        seed=seed,
        jit=jit,
        grad=grad,
        optimizer=optimizer,
        hidden=hidden,
        activation=activation,
        batch_size=batch_size,
        loss=loss,
        val_split=val_split,
        exact=exact,
        block=block,
        standardize=standardize,
        data_parallel=data_parallel,
        distributed=distributed,
    )
    bk = backends.get(backend)
    device_name = bk.resolve_device(device)
    problem = make_problem(*(backends.to_numpy(a) if a is not None else None for a in (X, y, W, b)))
    return train_problem(problem, bk, device_name, options, on_epoch=on_epoch)


@dataclass(frozen=True)
class Placed:
    """A run placed on its device: data, starting carry and the step built (compiled) for it,
    as :func:`place` makes them; :meth:`fit` runs epochs."""

    bk: backends.Backend
    X: Any
    y: Any
    carry: Carry
    step: Step
    block: int | None  # rows per block of the one-pass gradient; None: full batch
    batches: Minibatches | None = None
    validation: Validation | None = None
    fused: Callable[[int], Callable] | None = None
    lockstep: bool = False  # one process of a data-parallel group (see fit)

    def fit(self, carry: Carry | None = None, **options: Any) -> tuple[Carry, History]:
        """:func:`fit` from ``carry`` (default: the starting one); ``options`` are fit's."""
        start = self.carry if carry is None else carry
        extra = {"batches": self.batches, "validation": self.validation, "fused": self.fused}
        extra["lockstep"] = self.lockstep
        return fit(self.step, start, self.X, self.y, self.bk, **extra, **options)


def place(
    problem: Problem,
    bk: backends.Backend,
    device: str,
    options: Options,
    params: list[np.ndarray],
    state: list[np.ndarray] | None = None,
    held_out: Problem | None = None,
    replicas: Replicas | None = None,
) -> Placed:
    """Move a host problem, its starting parameters (and optimizer ``state``, when resuming)
    and ``held_out`` validation rows to ``device``, choose the gradient path and build the
    step; wait until the transfer is done. With ``replicas``, this process's rows are spread
    over its replicas and everything else is put on each. Call it inside
    ``bk.float_scope(options.dtype)``."""
    o = options
    n, d = problem.X.shape
    masked, per_replica = False, o.batch_size or n
    dev = bk.native_device(device)
    if replicas is None:

        def put(a: np.ndarray, rows: bool = False) -> Any:
            return bk.asarray(a, o.dtype, dev)
    else:
        if bk.caps.replicas_jit_only and not o.jit:
            raise InvalidInput(
                f"{bk.name} runs a data-parallel step compiled only (shard_map): add --jit"
            )
        if o.batch_size is None:  # with minibatches each batch is spread instead (shares)
            problem, masked = local_problem(problem, replicas)
            per_replica = len(problem.y) // replicas.here

        def put(a: np.ndarray, rows: bool = False) -> Any:
            return replicas.put(a, o.dtype, rows=rows)

    spread_batches = replicas is not None and o.batch_size is not None
    X, y = (
        (None, None) if spread_batches else (put(problem.X, rows=True), put(problem.y, rows=True))
    )
    on_device = tuple(put(p) for p in params)
    if state is None:
        carry = initial_carry(bk, on_device, o.optimizer)
    else:
        carry = (on_device, tuple(put(s) for s in state))
    block = choose_block(bk, device, o, per_replica, d)
    parallel = (replicas, n if replicas else None, masked)
    step = make_step(bk, o.grad, o.lr, o.jit, o.optimizer, o.activation, o.loss, block, *parallel)
    batches = validation = fused = None
    if spread_batches:
        batches = replica_minibatches(problem, bk, o, replicas)
    elif o.batch_size is not None:
        batches = Minibatches(
            lambda epoch: bk.asarray(batch_order(n, o.seed, epoch), "int32", dev), o.batch_size
        )
    if held_out is not None:
        validation = Validation(
            make_evaluate(bk, o.jit, o.activation, o.loss), put(held_out.X), put(held_out.y)
        )
    if o.jit and bk.caps.scan:
        config = (o.grad, o.lr, o.optimizer, o.activation, o.loss, held_out is not None, block)
        fused = functools.partial(make_fused, bk, *config, *parallel)
    for array in (X, y, *carry[0]):  # transfers may be asynchronous (JAX): finish them here
        if array is not None:
            bk.sync(array)
    lockstep = replicas is not None
    return Placed(bk, X, y, carry, step, block, batches, validation, fused, lockstep)


def replica_minibatches(
    problem: Problem, bk: backends.Backend, options: Options, replicas: Replicas
) -> Minibatches:
    """The minibatches of a data-parallel run, the single-device run's batches exactly: every
    process draws the same order on the host (:func:`xptrain.data.batch_order`), and each
    batch's rows are spread over the replicas as a full-batch run's are (padded where they
    must be even), each process copying only its share; the batch's step divides by the
    batch's rows (at most two sizes: ``batch_size`` and the last batch's)."""
    o, n = options, len(problem.y)
    size, last = o.batch_size, n % o.batch_size
    if size < replicas.count or 0 < last < replicas.count:
        what = f"a batch of {size}" if size < replicas.count else f"the last batch ({n} mod {size})"
        raise InvalidInput(
            f"{what} has fewer rows than the {replicas.count} replicas: choose a batch size of "
            f"at least {replicas.count} whose last batch is empty or at least that"
        )

    config = (o.grad, o.lr, o.jit, o.optimizer, o.activation, o.loss, None)
    put = functools.partial(replicas.put, dtype=o.dtype, rows=True)

    def shares(epoch: int) -> Iterator[tuple[Any, Any, Step, int]]:
        order = batch_order(n, o.seed, epoch)
        for start in range(0, n, size):
            rows = order[start : start + size]
            mine, masked = local_problem(Problem(problem.X[rows], problem.y[rows]), replicas)
            step = make_step(bk, *config, replicas, len(rows), masked)  # cached: 2 sizes at most
            yield put(mine.X), put(mine.y), step, len(rows)

    return Minibatches(None, size, shares)


def run_meta(problem: Problem, bk: backends.Backend, options: Options) -> dict[str, Any]:
    """What a checkpoint records of its run, to refuse resuming it as another run."""
    o = options
    return {
        "data": fingerprint(problem),
        "lr": o.lr,
        "backend": bk.name,
        "dtype": o.dtype,
        "optimizer": o.optimizer,
        "hidden": list(o.hidden),
        "activation": o.activation,
        "batch_size": o.batch_size,
        "loss": o.loss,
        "seed": o.seed,
        "val_split": o.val_split,
        "standardize": o.standardize,
    }


def training_rows(problem: Problem, options: Options) -> tuple[Problem, Problem | None]:
    """The rows a run trains on and its held-out rows (None without ``val_split``), scaled with
    the training rows' statistics when ``standardize``; a batch larger than the training rows
    is refused."""
    o, held_out = options, None
    if o.val_split is not None:
        problem, held_out = split(problem, o.val_split, o.seed)
    if o.standardize:
        held_out = standardize(held_out, like=problem) if held_out is not None else None
        problem = standardize(problem)
    if o.batch_size is not None and o.batch_size > len(problem.y):
        raise InvalidInput(
            f"the batch size {o.batch_size} is larger than the {len(problem.y)} training "
            "samples; use at most that, or leave it out for full batch"
        )
    return problem, held_out


def train_problem(
    problem: Problem,
    bk: backends.Backend,
    device: str,
    options: Options,
    *,
    on_epoch: EpochCallback | None = None,
    start: Checkpoint | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> TrainResult:
    """Train a validated host problem on a backend and device already resolved.

    ``start`` resumes from a checkpoint (of any backend): its parameters, optimizer state, epoch
    count and history. ``on_checkpoint`` receives a :class:`Checkpoint` every
    ``checkpoint_every`` epochs and at the end.
    """
    o = options
    # the data's fingerprint reads all of X: only for checkpoints, which need it
    meta = run_meta(problem, bk, o) if start is not None or on_checkpoint is not None else {}
    whole = problem
    problem, held_out = training_rows(problem, o)
    if start is not None:
        check_compatible(start, whole, meta, o.epochs)
        params0, past, start_epoch = start.params, start.history, start.epoch
    else:
        params0 = initial_params(problem, o.hidden, o.seed)
        past, start_epoch = {name: [] for name in metric_names(held_out is not None)}, 0

    def to_host(arrays: tuple[Any, ...]) -> list[np.ndarray]:
        return [bk.to_numpy(a).astype(np.float64) for a in arrays]

    def checkpoint(done: int, carry: Carry, history: History) -> None:
        params, state = carry
        whole = {k: past[k] + history[k] for k in history}
        on_checkpoint(Checkpoint(done, to_host(params), whole, meta, to_host(state)))

    replicas = None
    if o.data_parallel is not None or o.distributed:
        replicas = bk.replicas(o.data_parallel or 1, o.distributed, device)
    # Everything on the device happens inside the scope (JAX's x64 holds only there).
    with bk.float_scope(o.dtype):
        state0 = start.state if start is not None else None
        run = place(problem, bk, device, o, params0, state0, held_out, replicas)
        began = time.perf_counter()
        carry, history = run.fit(
            epochs=o.epochs,
            start_epoch=start_epoch,
            on_epoch=on_epoch,
            checkpoint_every=checkpoint_every,
            on_checkpoint=checkpoint if on_checkpoint else None,
        )
        bk.sync(carry[0][0])
        seconds = time.perf_counter() - began
        final = to_host(carry[0])
        precision = bk.precision(o.dtype)
    if not all(np.isfinite(p).all() for p in final):
        raise TrainingDiverged(
            f"the parameters became inf or NaN by epoch {o.epochs - 1} although the loss stayed "
            "finite; try a smaller learning rate",
            o.epochs - 1,
        )
    history = {k: past[k] + history[k] for k in history}
    return TrainResult(
        losses=history["loss"],
        params=final,
        seconds=seconds,
        backend=bk.name,
        device=device,
        device_name=bk.device_name(device),
        dtype=o.dtype,
        epochs=o.epochs,
        lr=o.lr,
        jit=o.jit,
        grad=o.grad,
        optimizer=o.optimizer,
        hidden=o.hidden,
        activation=o.activation,
        batch_size=o.batch_size,
        loss=o.loss,
        val_split=o.val_split,
        val_losses=history.get("val_loss", []),
        val_accuracy=history.get("val_accuracy", []),
        block=run.block,
        replicas=replicas.record() if replicas is not None else None,
        versions=versions(bk),
        precision=precision,
    )
