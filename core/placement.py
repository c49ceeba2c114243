"""Putting a run on its device, or spread over replicas (data-parallel): the data, the starting
parameters and optimizer state, the held-out rows, the minibatch order, and the step chosen
and built for them. :func:`place` is the low-level API under :func:`xptrain.train` (``xptrain
bench`` times what it places, so it measures what ``train`` runs)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .backends import Backend
from .data import Problem, batch_order
from .errors import InvalidInput, OptionError
from .grad import MIN_ROWS
from .loop import History, Minibatches, Validation, fit
from .models import describe
from .options import Options
from .parallel import Replicas, local_problem
from .path_choice import PathChoice, candidates, measured, size_class
from .runinfo import versions
from .steps import (
    Carry,
    Step,
    StepSpec,
    choose_block,
    initial_carry,
    make_evaluate,
    make_fused,
    make_step,
    model_of,
)


@dataclass(frozen=True)
class Placed:
    """A run placed on its device: data, starting carry and the step built (compiled) for it,
    as :func:`place` makes them; :meth:`fit` runs epochs."""

    bk: Backend
    X: Any
    y: Any
    carry: Carry
    step: Step
    block: int | None  # rows per block of the one-pass gradient; None: full batch
    batches: Minibatches | None = None
    validation: Validation | None = None
    fused: Callable[[int], Callable] | None = None
    lockstep: bool = False  # one process of a data-parallel group (see fit)
    path: PathChoice = PathChoice(None, "")  # noqa: RUF009 (frozen: one shared default is safe)
    matvec_sums: bool = False  # the step's matrix-vector products as sums (xptrain.matvec)

    def fit(self, carry: Carry | None = None, **options: Any) -> tuple[Carry, History]:
        """:func:`xptrain.loop.fit` from ``carry`` (default: the starting one); ``options``
        are fit's."""
        start = self.carry if carry is None else carry
        extra = {"batches": self.batches, "validation": self.validation, "fused": self.fused}
        extra["lockstep"] = self.lockstep
        return fit(self.step, start, self.X, self.y, self.bk, **extra, **options)


def _putter(bk: Backend, device: str, dtype: str, replicas: Replicas | None) -> Callable:
    """``put(host_array, shard=False)``: onto the device, or onto this process's replicas (its
    rows spread over them with ``shard``, else the whole array on each)."""
    if replicas is None:
        dev = bk.native_device(device)
        return lambda a, shard=False: bk.asarray(contiguous(a, dtype), dtype, dev)
    return lambda a, shard=False: replicas.put(a, dtype, shard=shard)


def contiguous(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` itself when it is C-contiguous (a backend that can use it as it is, NumPy or
    torch on the CPU, then copies nothing; the others make their one copy), else one
    C-contiguous copy in ``dtype``, which the backend then takes as it is (a strided or
    Fortran-ordered X would otherwise cost a copy in its own dtype and another in ``dtype``,
    or, in torch, a refusal of negative strides). Anything but a NumPy array (a lazy Dask X)
    is left to the backend."""
    if not isinstance(a, np.ndarray) or a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.dtype(dtype))


def place(
    problem: Problem,
    bk: Backend,
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
    ``bk.float_scope(options.dtype)``. A ``loss="auto"`` is settled by ``problem.y``."""
    o = options.for_labels(problem.y)
    n, d = problem.X.shape
    problem, masked, per_replica = _rows_here(problem, bk, o, replicas)
    put = _putter(bk, device, o.dtype, replicas)
    spread_batches = replicas is not None and o.batch_size is not None
    X, y = (None, None) if spread_batches else (put(problem.X, True), put(problem.y, True))
    carry = _start_carry(bk, put, params, state, o.optimizer)
    # transfers may be asynchronous (JAX): finish them here, before any timing
    for array in (a for a in (X, y, *carry[0]) if a is not None):
        bk.sync(array)

    sums = _matvec_sums(bk, device, o)

    def spec_of(block: int | None) -> StepSpec:
        return StepSpec.of(
            o, block=block, total_rows=n if replicas else None, masked=masked, matvec_sums=sums
        )

    path = _path(bk, device, o, replicas, (per_replica, d), spec_of, (carry, X, y))
    if sums:
        path = replace(path, why=f"{path.why}; matrix-vector products as sums (fused by XLA)")
    spec = spec_of(path.block)
    step = make_step(bk, spec, o.jit, replicas)
    batches = _minibatches(problem, bk, device, o, replicas, sums)
    validation = _validation(bk, o, put, held_out)
    fused = None
    if o.jit and bk.caps.scan:
        fused = functools.partial(make_fused, bk, spec, replicas, held_out is not None)
    lockstep = replicas is not None
    return Placed(
        bk, X, y, carry, step, path.block, batches, validation, fused, lockstep, path, sums
    )


def _matvec_sums(bk: Backend, device: str, o: Options) -> bool:
    """Whether the step writes matrix-vector products as sums (:mod:`xptrain.matvec`): on a
    backend that declares it, compiled, on the CPU (measured there only), not ``exact``."""
    return bk.caps.matvec_sums and o.jit and device == "cpu" and not o.exact


def _path(
    bk: Backend,
    device: str,
    o: Options,
    replicas: Replicas | None,
    shape: tuple[int, int],
    spec_of: Callable[[int | None], StepSpec],
    inputs: tuple[Carry, Any, Any],
) -> PathChoice:
    """The path the rules choose, or, where they leave it to ``path="auto"``, the measured
    one; never measured for replicas (one process of several would time alone) nor
    minibatches (steps of other shapes)."""
    path = choose_block(bk, device, o, *shape)
    if path.measurable and not (replicas or o.batch_size):  # measurable: path "auto" only
        return _measured(bk, device, o, shape, path.block, spec_of, inputs)
    return path


def _measured(
    bk: Backend,
    device: str,
    o: Options,
    shape: tuple[int, int],
    rule: int,
    spec_of: Callable[[int | None], StepSpec],
    inputs: tuple[Carry, Any, Any],
) -> PathChoice:
    """The fastest of the full batch and blocks around the ``rule``'s size, one epoch of the
    run's own step on its own data each (the carry is not advanced), cached per machine."""
    key = {
        "backend": bk.name, "device": bk.device_name(device), "versions": versions(bk),
        "size": size_class(*shape), "dtype": o.dtype, "grad": o.grad, "jit": o.jit,
        "model": describe(model_of(o)), "loss": o.loss, "optimizer": o.optimizer,
        "matvec_sums": spec_of(None).matvec_sums,
    }  # fmt: skip

    def one_epoch(block: int | None) -> Callable[[], None]:
        if o.jit and bk.caps.scan:  # the run will be a compiled scan over epochs: time that
            step = make_fused(bk, spec_of(block), None, False, 1)
        else:
            step = make_step(bk, spec_of(block), o.jit, None)
        return lambda: bk.sync(step(*inputs)[0][0][0])

    def runs() -> dict[int | None, Callable[[], None]]:
        return {b: one_epoch(b) for b in candidates(rule, shape[0], MIN_ROWS)}

    return measured(key, runs)


def _start_carry(
    bk: Backend,
    put: Callable,
    params: list[np.ndarray],
    state: list[np.ndarray] | None,
    optimizer: str,
) -> Carry:
    """The parameters on the device, with the optimizer's state (new, or resumed)."""
    on_device = tuple(put(p) for p in params)
    if state is None:
        return initial_carry(bk, on_device, optimizer)
    return on_device, tuple(put(s) for s in state)


def _validation(
    bk: Backend, options: Options, put: Callable, held_out: Problem | None
) -> Validation | None:
    """The held-out rows on the device, with their (compiled) evaluation."""
    if held_out is None:
        return None
    evaluate = make_evaluate(bk, options.jit, model_of(options), options.loss)
    return Validation(evaluate, put(held_out.X), put(held_out.y))


def _rows_here(
    problem: Problem, bk: Backend, options: Options, replicas: Replicas | None
) -> tuple[Problem, bool, int]:
    """This process's rows (padded where replicas must be even), whether any replica's rows
    were padded, and the rows one step of one replica sees (what the block size is for)."""
    o = options
    if replicas is None:
        return problem, False, o.batch_size or problem.X.shape[0]
    if bk.caps.replicas_jit_only and not o.jit:
        raise OptionError(
            lambda s: (
                f"{bk.name} runs a data-parallel step compiled only (shard_map): add "
                f"{s('jit', True)}"
            )
        )
    if o.batch_size is not None:  # with minibatches each batch is spread instead (shares)
        return problem, False, o.batch_size
    problem, masked = local_problem(problem, replicas)
    return problem, masked, len(problem.y) // replicas.here


def _minibatches(
    problem: Problem,
    bk: Backend,
    device: str,
    options: Options,
    replicas: Replicas | None,
    matvec_sums: bool = False,
) -> Minibatches | None:
    """The run's minibatches (None: full batch): the order drawn on the host each epoch."""
    o, n = options, len(problem.y)
    if o.batch_size is None:
        return None
    if replicas is not None:
        return replica_minibatches(problem, bk, o, replicas, matvec_sums)
    dev = bk.native_device(device)
    return Minibatches(
        lambda epoch: bk.asarray(batch_order(n, o.seed, epoch), "int32", dev), o.batch_size
    )


def replica_minibatches(
    problem: Problem, bk: Backend, options: Options, replicas: Replicas, matvec_sums: bool = False
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
    put = functools.partial(replicas.put, dtype=o.dtype, shard=True)

    def shares(epoch: int) -> Iterator[tuple[Any, Any, Step, int]]:
        order = batch_order(n, o.seed, epoch)
        for start in range(0, n, size):
            batch = order[start : start + size]
            mine, masked = local_problem(Problem(problem.X[batch], problem.y[batch]), replicas)
            spec = StepSpec.of(o, total_rows=len(batch), masked=masked, matvec_sums=matvec_sums)
            step = make_step(bk, spec, o.jit, replicas)  # cached: 2 sizes at most
            yield put(mine.X), put(mine.y), step, len(batch)

    return Minibatches(None, size, shares)
