"""``xptrain explain``: when a backend parts from the reference, the operation that makes it.

One configuration (as ``check`` runs it) is trained and compared with its reference; the epoch
to look at is the first past tolerance (or the one asked for, or the worst). Epoch K's step is
then replayed twice from the run's own state after K epochs: once on the backend through a
namespace that watches every Array API call (:mod:`xptrain.recording`), and once on the host in
higher precision, through the same code. Each call of the first replay is held against the same
function evaluated on its very inputs (:mod:`xptrain.op_errors`): its *local* error, beside
what an operation of its kind is expected to have, and the error its output *carries* from
earlier calls (its distance from the host replay's output at the same call). The culprit is
the call whose local error exceeds its expected error by the largest factor (a diverging run:
the first call that made inf or NaN from finite inputs). A compiled run (``jit``) is replayed
eagerly; where the eager replay shows no culprit but the compiled step differs from it by more
than a step may, the culprit is the compilation.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass, field, replace
from typing import Any

import array_api_compat.numpy as rxp
import numpy as np

from . import backends, op_errors, problems
from .api import encoded, train_problem, training_rows
from .backends import Backend
from .backends.base import in_turn, python_fold
from .check import Config, reference_data, reference_of
from .checkpoint import Checkpoint
from .conformance import Agreement, compare, tolerance
from .errors import InvalidInput, LibraryError, TrainingDiverged, XptrainError, first_line
from .loss import get as get_loss
from .model_setup import longest_dot, starting_params
from .models import has_backward
from .options import Options
from .placement import Placed, place
from .recording import Call, Recorder, unwrap, wrap
from .steps import StepSpec, make_step, model_of

# what a compiler is known to change, for the report of a compiled run's culprit
COMPILERS = {
    "jax": "XLA fuses elementwise chains, reorders and splits reductions, and may evaluate "
    "transcendental functions by its own approximations",
    "torch": "torch.compile (Inductor) fuses kernels, reorders reductions and may use other "
    "math library routines",
}

# a call exceeds its expected error only past this share of it: the reference's own rounding
# (np.longdouble: 2**-11 of a float64 eps) must not make a correctly rounded result a culprit
SLACK = 1e-3


@dataclass(frozen=True)
class CallRecord:
    """One watched call of the replay, in execution order."""

    index: int
    op: str
    site: str
    local: float | None  # eps·scale units; None: not evaluated (see notes)
    expected: float | None
    carried: float | None  # normwise relative distance from the host replay's output
    nonfinite: bool = False  # made inf or NaN from finite inputs


@dataclass(frozen=True)
class OpRow:
    """The calls of one operation at one call site, summed up."""

    op: str
    site: str
    calls: int
    max_ulp: float | None
    expected_ulp: float | None
    excess: float | None
    carried_rel_err: float | None


@dataclass
class Explanation:
    """What ``explain`` found for one configuration at one epoch."""

    config: Config
    epoch: int
    within_tolerance: bool
    culprit: dict[str, Any] | None
    ops: list[OpRow]
    calls: list[CallRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reference: str = ""  # the precision the calls were evaluated in

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (non-finite numbers as null)."""
        c = self.config
        return {
            "backend": c.backend,
            "device": c.device,
            "dtype": c.dtype,
            "grad": c.grad,
            "mode": c.mode,
            "problem": c.problem,
            "epoch": self.epoch,
            "within_tolerance": self.within_tolerance,
            "culprit": None if self.culprit is None else _json(self.culprit),
            "ops": [_json(vars(row)) for row in self.ops],
        }


def _json(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()
    }


def explain(config: Config, epoch: int | None = None) -> Explanation:
    """Explain one configuration of a registered problem (:mod:`xptrain.problems`) at
    ``epoch`` (default: the first past tolerance; the worst if none)."""
    data = reference_data(config.problem)
    try:
        ref = reference_of(config.problem)
    except TrainingDiverged:  # the reference diverges too: the run's own divergence is explained
        ref = None
    options = problems.get(config.problem).options(
        dtype=config.dtype, jit=config.mode == "jit", grad=config.grad
    )
    bk = backends.get(config.backend)
    n, d = data.X.shape
    tau = tolerance(config.dtype, n, longest_dot(d, ref.params) if ref is not None else d)
    agreement, diverged = _run(data, bk, config.device, options, ref, tau)
    k = _chosen_epoch(agreement, diverged, epoch, options.epochs)
    within = agreement is not None and agreement.passed
    start = _state_after(data, bk, config.device, options, k)
    replay = _Replay(bk, config, options, data, start, tau)
    return replay.explanation(k, within)


def _run(
    data: Any, bk: Backend, device: str, options: Options, ref: Any, tau: float
) -> tuple[Agreement | None, int | None]:
    """The run compared with its reference (None without one), or the epoch where it
    diverged."""
    try:
        result = train_problem(data, bk, device, options)
    except TrainingDiverged as err:
        return None, err.epoch if err.epoch is not None else 0
    return (compare(result, ref, tau) if ref is not None else None), None


def _chosen_epoch(
    agreement: Agreement | None, diverged: int | None, asked: int | None, epochs: int
) -> int:
    """The epoch to replay: the one asked for, where the run diverged, the first past
    tolerance, or the one with the largest relative error."""
    last = epochs - 1 if diverged is None else diverged
    if asked is not None:
        if not 0 <= asked <= last:
            ran = f"epochs 0..{last}" + (f" (it diverged at epoch {diverged})" if diverged else "")
            raise InvalidInput(f"epoch {asked} is past the run: it has {ran}")
        return asked
    if diverged is not None:
        return diverged
    if agreement is None:  # the reference diverged, the run did not: its last epoch
        return last
    if agreement.first_bad_epoch is not None:
        return agreement.first_bad_epoch
    errors = np.nan_to_num(np.asarray(agreement.rel_err, dtype=np.float64), nan=np.inf)
    return int(np.argmax(errors))


def _state_after(
    data: Any, bk: Backend, device: str, options: Options, epochs: int
) -> Checkpoint | None:
    """The run's parameters and optimizer state after ``epochs`` epochs (None: its start)."""
    if epochs == 0:
        return None
    saved: list[Checkpoint] = []
    train_problem(
        data, bk, device, options.replace(epochs=epochs),
        on_checkpoint=saved.append, checkpoint_every=epochs,
    )  # fmt: skip
    return saved[-1]


class _Watching:
    """A backend whose namespace is watched: no compiler, the plain loop and spread (the
    same summation order), and autodiff whose forward pass is watched as it runs."""

    __hash__ = None  # type: ignore[assignment]  # a replay's step is built for it alone

    def __init__(self, bk: Backend, xp: Any, watch: Any, workers: int | None = None) -> None:
        self._bk, self.xp, self._watch = bk, xp, watch
        # the host replay groups row blocks as the backend did: the same sums in the same order
        self.workers = bk.workers if workers is None else workers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bk, name)

    def jit(self, fn: Any) -> Any:
        return fn

    fold = staticmethod(python_fold)
    spread = staticmethod(in_turn)

    def value_and_grad(self, fn: Any) -> Any:
        """The library's autodiff, unwatched inside (its tracers cannot be brought to the
        host); the forward it differentiates is run once more, watched."""
        inner = self._bk.value_and_grad(lambda *args: unwrap(fn(*args)))

        def run(params: Any, X: Any, y: Any) -> Any:
            fn(params, X, y)
            self._watch.silent = True
            try:
                out = inner(unwrap(params), unwrap(X), unwrap(y))
            finally:
                self._watch.silent = False
            return wrap(out, self._watch)

        return run


class _HostWatch:
    """The host replay's listener: each call's output, by (op, site, occurrence)."""

    def __init__(self) -> None:
        self.outputs: dict[tuple, np.ndarray] = {}
        self._seen: collections.Counter = collections.Counter()
        self.silent = False

    def __call__(self, call: Call) -> None:
        key = (call.op, call.site)
        self._seen[key] += 1
        if isinstance(call.out, np.ndarray | np.generic):
            self.outputs[(*key, self._seen[key])] = np.asarray(call.out)


class _DeviceWatch:
    """The backend replay's listener: every call's local and carried error."""

    def __init__(self, evaluator: op_errors.Evaluator, dtype: str, host: dict) -> None:
        self.evaluator, self.dtype, self.host_outputs = evaluator, dtype, host
        self.records: list[CallRecord] = []
        self.unchecked: set[str] = set()
        self._seen: collections.Counter = collections.Counter()
        self.silent = False

    def __call__(self, call: Call) -> None:
        if self.silent:
            return
        key = (call.op, call.site)
        self._seen[key] += 1
        ev = self.evaluator
        args, kwargs, out = ev.host(call.args), ev.host(call.kwargs), ev.host(call.out)
        local = expected = carried = None
        if isinstance(out, np.ndarray):
            local, expected = self._local(call, args, kwargs, out)
            carried = op_errors.carried_error(out, self.host_outputs.get((*key, self._seen[key])))
        inputs_finite = op_errors.finite(args) and op_errors.finite(list(kwargs.values()))
        made_nonfinite = inputs_finite and not op_errors.finite(out)
        index = len(self.records)
        record = CallRecord(index, call.op, call.site, local, expected, carried, made_nonfinite)
        self.records.append(record)

    def _local(self, call: Call, args: tuple, kwargs: dict, out: np.ndarray) -> tuple:
        try:
            ref = np.asarray(self.evaluator.reference(call, args, kwargs))
        except Exception:  # NumPy has no such function, or not for these arguments
            self.unchecked.add(call.op)
            return None, None
        local = op_errors.local_error(call, out, ref, args, self.dtype)
        return local, op_errors.expected_error(call, args, out.size)


class _Replay:
    """Epoch K's step replayed on the backend (watched) and on the host (reference)."""

    def __init__(
        self,
        bk: Backend,
        config: Config,
        options: Options,
        data: Any,
        start: Checkpoint | None,
        tau: float,
    ) -> None:
        self.bk, self.config, self.options, self.tau = bk, config, options, tau
        self.data, self.start = data, start
        self.ref_dtype = op_errors.reference_dtype(config.dtype)
        self.notes: list[str] = []

    def explanation(self, epoch: int, within: bool) -> Explanation:
        """Replay the step and name the culprit."""
        bk, o = self.bk, self.options
        with bk.float_scope(o.dtype):
            placed = self._placed()
            evaluator = op_errors.Evaluator(bk.xp, bk.to_numpy, self.ref_dtype, o.dtype)
            host_watch, host_out = self._host_replay(placed, evaluator)
            watch = _DeviceWatch(evaluator, o.dtype, host_watch.outputs)
            eager = self._device_replay(placed, watch)
            compiled = placed.step(placed.carry, placed.X, placed.y) if o.jit else None
            flat = [_flat(bk.to_numpy, x) if x is not None else None for x in (eager, compiled)]
        if watch.unchecked:
            self.notes.append(
                "not evaluated (NumPy has no reference for them): "
                + ", ".join(sorted(watch.unchecked))
            )
        rows = _rows(watch.records)
        culprit = _nonfinite_culprit(watch.records) or _op_culprit(rows)
        if culprit is None and compiled is not None:
            culprit = self._compilation(flat[1], flat[0], host_out)
        return Explanation(
            self.config, epoch, within, culprit, rows, watch.records, self.notes,
            "np.longdouble" if self.ref_dtype is np.longdouble else "float64",
        )  # fmt: skip

    def _placed(self) -> Placed:
        """The run's training rows, and its state after K epochs, on the device."""
        o, start = self.options, self.start
        rows, _, _ = training_rows(self.data, o)
        loss = get_loss(o.loss)
        d_out = loss.outputs(self.data.y)
        if start is None:
            params, state = starting_params(model_of(o), rows, d_out, o.seed), None
        else:
            params, state = start.params, start.state
        return place(encoded(rows, loss, d_out), self.bk, self.config.device, o, params, state)

    def _host_replay(self, placed: Placed, ev: op_errors.Evaluator) -> tuple[_HostWatch, Any]:
        """The same step on the host in the reference precision: every call's output."""
        watch = _HostWatch()
        spec = StepSpec.of(self.options, block=placed.block, matvec_sums=placed.matvec_sums)
        if spec.grad == "autodiff":
            if not has_backward(spec.model):
                self.notes.append("no carried errors: the model has no backward for a host replay")
                return watch, None
            spec = replace(spec, grad="analytic")  # NumPy has no autodiff: the same gradients
        numpy = _Watching(backends.get("numpy"), Recorder(rxp, watch), watch, self.bk.workers)
        step = make_step(numpy, spec, False)
        carry, X, y = (ev.host(a) for a in (placed.carry, placed.X, placed.y))
        out = step(wrap(carry, watch), wrap(X, watch), wrap(y, watch))
        return watch, _flat(np.asarray, unwrap(out))

    def _device_replay(self, placed: Placed, watch: _DeviceWatch) -> Any:
        """The step on the backend, eager, every call watched: its (carry, metrics)."""
        bk = _Watching(self.bk, Recorder(self.bk.xp, watch), watch)
        spec = StepSpec.of(self.options, block=placed.block, matvec_sums=placed.matvec_sums)
        step = make_step(bk, spec, False)
        try:
            out = step(wrap(placed.carry, watch), wrap(placed.X, watch), wrap(placed.y, watch))
        except XptrainError:
            raise
        except Exception as err:  # a library the watching wrapper cannot drive
            message = f"explain cannot watch {self.bk.name}'s calls: {first_line(err)}"
            raise LibraryError(message) from err
        return unwrap(out)

    def _compilation(
        self, compiled: np.ndarray, eager: np.ndarray, host: np.ndarray | None
    ) -> dict[str, Any] | None:
        """The compilation as the culprit, when the compiled step differs from the eager one
        by more than a step may (and by more than the eager step from the reference)."""
        eps = float(np.finfo(self.config.dtype).eps)
        apart = op_errors.carried_error(compiled, eager) or 0.0
        eager_off = op_errors.carried_error(eager, host) if host is not None else 0.0
        if not apart > max(self.tau, 2 * (eager_off or 0.0)):
            return None
        name = self.bk.name
        self.notes.append(
            f"the compiled step differs from the eager replay by {apart:.3g} (relative), the "
            f"eager replay from the reference by {eager_off or 0:.3g}: "
            f"{COMPILERS.get(name, 'the compiler fuses and reorders operations')}; precision "
            f"settings: {self.bk.precision(self.config.dtype)}"
        )
        return _culprit("compilation", f"{name} jit", apart / eps, self.tau / eps, apart / self.tau)


def _flat(to_host: Any, out: Any) -> np.ndarray:
    """A step's ``((params, state), metrics)``: the loss and the new parameters, flat."""
    (params, _), metrics = out
    parts = [np.asarray(to_host(metrics), np.float64).ravel()[:1]]
    parts += [np.asarray(to_host(p), np.float64).ravel() for p in params]
    return np.concatenate(parts)


def _rows(records: list[CallRecord]) -> list[OpRow]:
    """The calls grouped by operation and call site, the worst excess first."""
    groups: dict[tuple[str, str], list[CallRecord]] = {}
    for record in records:
        groups.setdefault((record.op, record.site), []).append(record)
    rows = [_row(op, site, calls) for (op, site), calls in groups.items()]
    order = {key: i for i, key in enumerate(groups)}
    return sorted(
        rows, key=lambda r: (-(r.excess if r.excess is not None else -1), order[(r.op, r.site)])
    )


def _row(op: str, site: str, calls: list[CallRecord]) -> OpRow:
    checked = [c for c in calls if c.local is not None]
    carried = [c.carried for c in calls if c.carried is not None]
    if not checked:
        return OpRow(op, site, len(calls), None, None, None, max(carried, default=None))
    worst = max(checked, key=lambda c: op_errors.excess(c.local, c.expected))
    return OpRow(
        op, site, len(calls), max(c.local for c in checked), worst.expected,
        op_errors.excess(worst.local, worst.expected), max(carried, default=None),
    )  # fmt: skip


def _op_culprit(rows: list[OpRow]) -> dict[str, Any] | None:
    """The operation whose local error exceeds its expected error by the largest factor
    (rows come sorted so), or None when every call is within its expected error."""
    worst = rows[0] if rows else None
    if worst is None or worst.excess is None or not worst.excess > 1 + SLACK:
        return None
    return _culprit(worst.op, worst.site, worst.max_ulp, worst.expected_ulp, worst.excess)


def _nonfinite_culprit(records: list[CallRecord]) -> dict[str, Any] | None:
    """The first call that made inf or NaN from finite inputs (a diverging run's culprit)."""
    first = next((r for r in records if r.nonfinite), None)
    if first is None:
        return None
    return _culprit(first.op, first.site, math.inf, first.expected, math.inf)


def _culprit(
    op: str, site: str, max_ulp: float | None, expected: float | None, excess: float | None
) -> dict[str, Any]:
    """A culprit as ``--json`` and ``check`` give it."""
    return {"op": op, "site": site, "max_ulp": max_ulp, "expected_ulp": expected, "excess": excess}
