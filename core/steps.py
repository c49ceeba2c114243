"""Building a run's epoch step, once per configuration: the gradient engine (analytic backprop,
the one-pass blocked sums, the backend's autodiff, or a data-parallel replica's sums), the
optimizer's update, and compilation (``jit``; a whole stretch of epochs as one compiled scan).

A step maps ``((params, optimizer_state), X, y)`` to ``((params, optimizer_state), metrics)``:
the epoch's loss, and its accuracy for a loss with classes, as one device vector. It is
built from a frozen :class:`StepSpec` and cached, so the same configuration gets the same
function object and compiled steps (jax.jit, torch.compile) are reused, not recompiled. This is
the low-level API under :func:`xptrain.train`; :mod:`xptrain.placement` chooses the spec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backends import Backend, itemsize
from .grad import (
    block_rows,
    blocked_loss_and_grads,
    blocked_sums,
    loss_and_grads,
    masked_targets,
    metric_means,
    metric_sums,
)
from .loss import Loss
from .loss import get as get_loss
from .matvec import MatvecAsSums
from .models import Logistic, Params, resolve
from .optim import OPTIMIZERS, Optimizer, State
from .options import Options
from .parallel import Replicas, reduced_loss_and_grads
from .path_choice import PathChoice

Carry = tuple[Params, State]  # (parameters, optimizer state)
Step = Callable[[Carry, Any, Any], tuple[Carry, Any]]


@dataclass(frozen=True)
class StepSpec:
    """Everything a step is built from (the key of the step caches).

    ``model``: the model object (:mod:`xptrain.models`); ``loss``: the loss's name.
    ``block``: rows per block of the one-pass gradient (analytic only; None: full batch).
    A data-parallel step (built with replicas) divides its replicas' summed loss and gradients
    by ``total_rows``, the global number of rows (times the outputs for a per-element loss);
    ``masked`` leaves padding rows out; ``matvec_sums``: matrix-vector products written as
    a multiply and a sum (:mod:`xptrain.matvec`), for a compiler that fuses them."""

    grad: str = "analytic"
    lr: float = 1.0
    optimizer: str = "sgd"
    model: Any = Logistic()  # noqa: RUF009 (frozen, so one shared default is safe)
    loss: str = "bce"
    block: int | None = None
    total_rows: int | None = None
    masked: bool = False
    matvec_sums: bool = False  # matrix-vector products as sums (xptrain.matvec)

    @classmethod
    def of(cls, options: Options, **where: Any) -> StepSpec:
        """The spec of a run with ``options``; ``where``: block, total_rows, masked,
        matvec_sums."""
        o = options
        return cls(o.grad, o.lr, o.optimizer, model_of(o), o.loss, **where)


def model_of(options: Options) -> Any:
    """The model object a run with ``options`` trains (the same object for the same options)."""
    o = options
    return resolve(o.model, o.model_args, o.hidden or (), o.activation)


def _cached(build: Callable) -> Callable:
    """``build`` cached on its arguments (the same configuration, the same function object,
    so compiled steps are reused); built afresh for a model object that cannot be hashed."""
    cached = functools.lru_cache(maxsize=64)(build)

    @functools.wraps(build)
    def call(*args: Any) -> Any:
        try:
            hash(args)
        except TypeError:
            return build(*args)
        return cached(*args)

    call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    call.cache_info = cached.cache_info  # type: ignore[attr-defined]
    return call


def update_step(xp: Any, lr: float, optimizer: Optimizer, loss_and_grads: Callable) -> Step:
    """One epoch: ``loss_and_grads(params, X, y) -> (metrics, grads)``, then the optimizer's
    update. Every gradient engine (analytic, one-pass, autodiff) is one such function."""

    def step(carry: Carry, X: Any, y: Any) -> tuple[Carry, Any]:
        params, state = carry
        metrics, grads = loss_and_grads(params, X, y)
        return optimizer.update(xp, params, tuple(grads), state, lr), metrics

    return step


def analytic_loss_and_grads(xp: Any, model: Any, loss: Loss) -> Callable:
    """The model's backward, full batch (for the seed's model: the seed's arithmetic)."""

    def run(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        return loss_and_grads(xp, model, loss, params, X, y)

    return run


def blocked_loss_and_grads_of(bk: Backend, spec: StepSpec) -> Callable:
    """The one-pass blocked gradient (:func:`xptrain.grad.blocked_loss_and_grads`): the same
    loss and gradients, X read once, ``spec.block`` rows at a time, the loop over blocks run by
    the backend's ``fold``, its row groups spread over the backend's ``workers``."""
    xp, loss = namespace_of(bk, spec), get_loss(spec.loss)

    def run(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        return blocked_loss_and_grads(
            xp, spec.model, loss, params, X, y, spec.block, bk.fold, bk.spread, bk.workers
        )

    return run


def autodiff_loss_and_grads(xp: Any, model: Any, loss: Loss, value_and_grad: Callable) -> Callable:
    """The backend's automatic differentiation of the same loss; the metrics ride along."""

    def loss_fn(params: Params, X: Any, y: Any) -> tuple[Any, Any]:
        metrics = evaluate(xp, model, loss, params, X, y)
        return metrics[0], metrics

    return _with_metrics(value_and_grad(loss_fn))


def _with_metrics(run: Callable) -> Callable:
    """``value_and_grad``'s ``((value, metrics), grads)`` as ``(metrics, grads)``."""

    def metrics_and_grads(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        (_, metrics), grads = run(params, X, y)
        return metrics, grads

    return metrics_and_grads


def local_sums_of(bk: Backend, spec: StepSpec) -> Callable:
    """``(params, X, y) -> (metric sums, gradient sums)`` over one replica's rows, for a
    data-parallel step: the one-pass analytic sums (one block of every row without
    ``spec.block``), or the backend's autodiff of the summed loss. ``spec.masked`` leaves
    padding rows out."""
    xp, model, loss = namespace_of(bk, spec), spec.model, get_loss(spec.loss)
    if spec.grad == "autodiff":

        def summed(params: Params, X: Any, y: Any) -> tuple[Any, Any]:
            keep = None
            if spec.masked:
                keep, y = masked_targets(xp, y)
            out = model.forward(xp, params, X)
            if keep is not None:  # padding rows: outputs 0, so no inf whose zero cotangent is NaN
                out = xp.where(keep, out, xp.zeros_like(out))
            terms = loss.terms(xp, y, out)
            if keep is not None:
                terms = xp.where(keep, terms, xp.zeros_like(terms))
            sums = metric_sums(xp, loss, y, out, terms, keep)
            return sums[0], xp.stack(sums)

        return _with_metrics(bk.value_and_grad(summed))

    def sums(params: Params, X: Any, y: Any) -> tuple[Any, Params]:
        block = spec.block or X.shape[0]
        return blocked_sums(
            xp, model, loss, params, X, y, block, bk.fold, bk.spread, bk.workers, spec.masked
        )

    return sums


def _loss_and_grads(bk: Backend, spec: StepSpec, replicas: Replicas | None) -> Callable:
    """The gradient engine ``spec`` asks for (on ``replicas``: their reduced sums)."""
    xp, loss = namespace_of(bk, spec), get_loss(spec.loss)
    if replicas is not None:
        if spec.total_rows is None:
            raise ValueError("a data-parallel step needs the global number of rows")
        return reduced_loss_and_grads(
            bk.xp, loss, local_sums_of(bk, spec), replicas.reduce, spec.total_rows
        )
    if spec.grad == "autodiff":
        return autodiff_loss_and_grads(xp, spec.model, loss, bk.value_and_grad)
    if spec.block is not None:
        return blocked_loss_and_grads_of(bk, spec)
    return analytic_loss_and_grads(xp, spec.model, loss)


def namespace_of(bk: Backend, spec: StepSpec) -> Any:
    """The namespace ``spec``'s gradient is written in: the backend's, or with
    ``spec.matvec_sums`` the same with matrix-vector products as sums."""
    return MatvecAsSums(bk.xp) if spec.matvec_sums else bk.xp


@_cached
def make_step(
    bk: Backend, spec: StepSpec, jit: bool = False, replicas: Replicas | None = None
) -> Step:
    """The epoch step for ``spec``, built once (the same function object on every run, so
    compiled steps are reused); ``jit`` compiles it. With ``replicas``, a data-parallel step:
    each replica's sums added over the replicas and divided by ``spec.total_rows``."""
    step = update_step(
        bk.xp, spec.lr, OPTIMIZERS[spec.optimizer], _loss_and_grads(bk, spec, replicas)
    )
    if replicas is not None:
        step = replicas.wrap(step)
    return bk.jit(step) if jit else step


def initial_carry(bk: Backend, params: Params, optimizer: str = "sgd") -> Carry:
    """What a step carries from epoch to epoch, at the start: the parameters and the
    optimizer's initial state."""
    return params, OPTIMIZERS[optimizer].init(bk.xp, params)


def evaluate(xp: Any, model: Any, loss: Loss, params: Params, X: Any, y: Any) -> Any:
    """``[loss, accuracy]`` of ``params`` on (``X``, ``y``), one device array: the loss as
    training computes it, and the share of rows whose class is right (a logit > 0 read as
    class 1; the largest logit's column for softmax-ce); ``[loss]`` for a regression loss."""
    out = model.forward(xp, params, X)
    return metric_means(xp, loss, metric_sums(xp, loss, y, out, loss.terms(xp, y, out)), *y.shape)


@_cached
def make_evaluate(bk: Backend, jit: bool, model: Any, loss: str) -> Callable:
    """:func:`evaluate` for a configuration as ``(params, X, y) -> [loss, accuracy]``, built
    once (compiled once with ``jit``)."""
    chosen = get_loss(loss)

    def run(params: Params, X: Any, y: Any) -> Any:
        return evaluate(bk.xp, model, chosen, params, X, y)

    return bk.jit(run) if jit else run


@_cached
def make_fused(
    bk: Backend,
    spec: StepSpec,
    replicas: Replicas | None,
    validation: bool,
    length: int,
) -> Callable:
    """``length`` full-batch epochs as one compiled call (the backend's ``scan`` under its
    ``jit``): ``(carry, X, y[, X_val, y_val]) -> (carry, metrics)``, one metrics row per epoch
    (the step's, and with ``validation`` the held-out ones), built and compiled
    once per length."""
    xp, loss = bk.xp, get_loss(spec.loss)
    step = make_step(bk, spec, False, replicas)

    def run(carry: Carry, X: Any, y: Any, *held_out: Any) -> tuple[Carry, Any]:
        def epoch(c: Carry) -> tuple[Carry, Any]:
            c, row = step(c, X, y)
            if validation:
                metrics = evaluate(xp, spec.model, loss, c[0], *held_out)
                row = xp.concat([row, metrics])
            return c, row

        return bk.scan(epoch, carry, length)

    return bk.jit(run)


def choose_block(bk: Backend, device: str, options: Options, n: int, d: int) -> PathChoice:
    """The gradient's path for ``n`` rows (per step) of ``d`` features, as far as rules decide
    it: the path asked for (``options.path``); the full batch with ``exact`` (the seed's
    arithmetic), autodiff, off the CPU (GPU memory needs no cache blocking), on a chunked
    library (Dask: its graph already reads a chunk at a time), under torch.compile, on JAX
    without jit, for a model that does not declare ``rowwise = True`` (blocks assume each row's
    outputs depend on that row alone) and where one block would hold every row. Otherwise
    the cache-sized block of :func:`~xptrain.grad.block_rows`, ``measurable``: with
    ``path="auto"``, :mod:`xptrain.path_choice` times it against the full batch."""
    o = options
    if o.block is not None:
        if o.block < n:
            return PathChoice(o.block, f"blocks of {o.block} rows (asked)")
        return PathChoice(None, f"full batch (the {o.block} rows asked hold every row)")
    full = _full_batch_because(bk, device, o)
    if full:
        return PathChoice(None, f"full batch ({full})")
    # JAX's fold is a compiled loop (cheap iterations, L2-sized blocks); eager libraries pay
    # a call per operation per block, so their blocks are larger (see block_rows)
    rows = block_rows(n, d, itemsize(o.dtype), compiled=bk.caps.scan)
    if rows >= n:
        return PathChoice(None, "full batch (one cache-sized block would hold every row)")
    return PathChoice(rows, f"blocks of {rows} rows (sized to the cache)", measurable=True)


def _full_batch_because(bk: Backend, device: str, o: Options) -> str:
    """Why a run takes the full batch whatever its size ("" where blocks may serve)."""
    reasons = (
        (o.path == "full", "asked"),
        (o.exact, "exact: the seed's arithmetic"),
        (o.grad != "analytic", "autodiff differentiates the whole batch"),
        (device != "cpu", "off the CPU: no cache to block for"),
        (bk.caps.chunked, "a chunked library reads a chunk at a time already"),
        (not getattr(model_of(o), "rowwise", False), "the model does not declare rowwise"),
        (o.jit and not bk.caps.scan, "a compiler without a loop primitive unrolls blocks"),
        (bk.caps.scan and not o.jit, "without jit the block loop compiles every epoch"),
    )
    return next((why for applies, why in reasons if applies), "")
