"""The public training API: :func:`train` (arrays in, a :class:`TrainResult` out) and
:func:`train_problem` (a validated host problem on a resolved backend and device, with
checkpoints). The options are :class:`xptrain.options.Options`; the loop, the steps and the
placement on devices live in :mod:`xptrain.loop`, :mod:`xptrain.steps` and
:mod:`xptrain.placement`."""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .backends import Backend, to_numpy
from .backends import get as backend_named
from .checkpoint import Checkpoint, check_compatible, fingerprint
from .data import Problem, Scaling, feature_scaling, held_out_rows, make_problem, rows_of
from .errors import InvalidInput, LibraryError, TrainingDiverged, XptrainError
from .fitted import FittedModel
from .loop import EpochCallback, History, metric_names
from .loss import Loss
from .loss import get as get_loss
from .model_setup import check_engine, starting_params
from .models import describe
from .options import Options
from .placement import place
from .runinfo import versions
from .steps import Carry, model_of


@dataclass(frozen=True)
class TrainResult:
    """What a run produced, on the host, with everything needed to reproduce, compare and use it.

    ``options`` are the run's :class:`~xptrain.options.Options`, each also readable as an
    attribute (``result.lr``, ``result.hidden``, ...). ``params`` are the final parameters as
    float64 host arrays, ``(W1, b1, ..., WL, bL)``; ``W`` and ``b`` are the output layer's (for
    the seed's model, its only layer). ``scaling`` is the (mean, scale) the features were
    standardised with (None without ``standardize``): apply it to new rows before the model.
    ``seconds`` is the wall time of the epochs (compilation included, ending with a device
    sync); moving the data to the device is not in it. ``block`` is the rows per block of the
    one-pass gradient the run took (None: full batch), ``path`` that path and why it was taken
    (asked, a rule, or measured here: see :mod:`xptrain.path_choice`).
    """

    options: Options
    losses: list[float]
    params: list[np.ndarray]
    seconds: float
    backend: str
    device: str
    device_name: str
    accuracy: list[float] = field(default_factory=list)  # per epoch, for a loss with classes
    val_losses: list[float] = field(default_factory=list)  # per epoch, with val_split
    val_accuracy: list[float] = field(default_factory=list)
    block: int | None = None
    path: str = ""
    replicas: dict[str, Any] | None = None  # a data-parallel run's engine, devices, processes
    scaling: Scaling | None = None
    data: str | None = None  # what the data was called (a file, a generator), where known
    versions: dict[str, str] = field(default_factory=dict)
    precision: dict[str, Any] = field(default_factory=dict)
    features: int | None = None  # the features (columns of X) the model takes

    def __getattr__(self, name: str) -> Any:
        # the run's options read as attributes: result.dtype, result.epochs, ...
        if name != "options" and name in Options.__dataclass_fields__:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def W(self) -> np.ndarray:
        """The output layer's weights (H×1; D×1 for the seed's model)."""
        return self.params[-2]

    @property
    def b(self) -> float:
        """The output layer's bias."""
        return float(self.params[-1].reshape(()))

    @property
    def fitted(self) -> FittedModel:
        """The trained model, to apply to new rows or save (:class:`FittedModel`)."""
        return FittedModel(self.params, self.options, self.scaling, self.features)

    def predict(self, X: Any, **where: Any) -> np.ndarray:
        """The class of every row of ``X`` (scaled as in training), or a regression's
        predictions (see :meth:`FittedModel.predict`)."""
        return self.fitted.predict(X, **where)

    def predict_proba(self, X: Any, **where: Any) -> np.ndarray:
        """The probability of class 1 (or of every class) for every row of ``X``."""
        return self.fitted.predict_proba(X, **where)

    def evaluate(self, X: Any, y: Any, **where: Any) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` of the trained model on labelled rows."""
        return self.fitted.evaluate(X, y, **where)

    def _history(self) -> dict[str, list[float | None]]:
        """The per-epoch metrics as the JSON holds them: a value that is not finite is null (a
        saturated validation loss is inf; an old checkpoint's epochs have no accuracy)."""
        columns = {"losses": self.losses}
        if get_loss(self.options.loss).classifies:
            columns["accuracy"] = self.accuracy
        if self.options.val_split is not None:
            columns |= {"val_losses": self.val_losses, "val_accuracy": self.val_accuracy}
        return {k: [v if math.isfinite(v) else None for v in vs] for k, vs in columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``--json`` file): where it ran, every option, the history,
        the parameters and what decided the numbers (versions, precision settings)."""
        record: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "device_name": self.device_name,
            **self.options.to_json(),
            "data": self.data,
            "block": self.block,
            "path_chosen": self.path,
            **self._history(),
        }
        if self.replicas is not None:
            record["replicas"] = self.replicas
        if self.params[-1].size == 1:  # one output: the seed's W and b, as it prints them
            record |= {"W": self.W.tolist(), "b": self.b}
        record["params"] = [p.tolist() for p in self.params]
        if self.scaling is not None:
            record["scaling"] = {
                "mean": self.scaling[0].tolist(),
                "scale": self.scaling[1].tolist(),
            }
        record["seconds"] = self.seconds
        return record | {"versions": self.versions, "precision": self.precision}


def train(
    X: Any,
    y: Any,
    *,
    backend: str = "numpy",
    device: str | None = None,
    W: Any = None,
    b: Any = None,
    on_epoch: EpochCallback | None = None,
    **options: Any,
) -> TrainResult:
    """Train the seed's logistic regressor (or an MLP) on any backend; by default, the seed's
    run exactly.

    ``X`` (N×D) and ``y`` (N or N×1, 0/1) may be NumPy arrays or arrays of any backend; they
    are validated on the host and moved to ``device`` as ``dtype``. The caller's X is read,
    never written: it is checked where it lies, a chunk at a time, and copied at most once, in
    ``dtype`` onto the device — not at all when it is a C-contiguous NumPy array of ``dtype``
    and the backend computes on it as it is (NumPy; torch on the CPU), so do not write to it
    while the call runs. ``val_split`` and ``standardize`` write their rows once, in
    ``dtype``, instead of that copy. Without ``W`` the seed's
    rule draws it from ``seed``; ``b`` defaults to 0 (an MLP's layers are drawn from ``seed``,
    Glorot-uniform). ``options`` are :class:`~xptrain.options.Options`' keywords — ``dtype``,
    ``epochs``, ``lr``, ``seed``, ``jit``, ``grad``, ``optimizer``, ``model``, ``hidden``,
    ``activation``, ``batch_size``, ``loss``, ``val_split``, ``standardize``, ``exact``,
    ``path``, ``data_parallel``, ``distributed`` — each documented there and checked
    before any data is touched.

    ``val_split`` holds that fraction of the rows out (drawn from ``seed``) and records their
    loss and accuracy after every epoch's update (the training loss is the epoch's own, before
    it). ``on_epoch(epoch, metrics)`` is called after every epoch with ``{"loss": ...}`` (and
    ``val_loss``, ``val_accuracy``); this syncs the device each epoch. On the CPU, large
    problems take the faster of the full batch and the one-pass blocked gradient (X read once
    per epoch; the same numbers up to rounding), measured once per machine and size (``path``
    chooses; ``exact`` keeps the seed's full-batch arithmetic).

    ``data_parallel=N`` spreads the rows over N devices of this process (JAX: sharded, the
    gradient sums added by ``psum``); ``distributed`` spreads them over every process of the
    group already joined (torch.distributed's ranks, or JAX's processes after
    ``jax.distributed.initialize``), each with its ``data_parallel`` devices (default 1). Every
    process passes the whole problem and gets the same result; see :mod:`xptrain.parallel`.
    """
    unknown = sorted(set(options) - set(Options.__dataclass_fields__))
    if unknown:  # as Python says it, naming train() rather than Options
        raise TypeError(f"train() got an unexpected keyword argument {unknown[0]!r}")
    checked = Options(**options)
    bk = backend_named(backend)
    device_name = bk.resolve_device(device)
    problem = make_problem(*(to_numpy(a) if a is not None else None for a in (X, y, W, b)))
    return train_problem(problem, bk, device_name, checked, on_epoch=on_epoch)


def _with_options_signature(fn: Callable) -> None:
    """``fn``'s signature shows every option as a keyword (``help(xptrain.train)``, IDEs),
    taken from :class:`Options` instead of written out a second time."""
    own = inspect.signature(fn)
    fixed = [p for p in own.parameters.values() if p.kind != p.VAR_KEYWORD]
    keywords = [
        inspect.Parameter(
            f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type
        )
        for f in fields(Options)
    ]
    fn.__signature__ = own.replace(parameters=[*fixed, *keywords])


_with_options_signature(train)


def run_meta(problem: Problem, bk: Backend, options: Options) -> dict[str, Any]:
    """What a checkpoint records of its run, to refuse resuming it as another run."""
    return {"data": fingerprint(problem), "backend": bk.name, **options.to_json()}


def training_rows(
    problem: Problem, options: Options
) -> tuple[Problem, Problem | None, Scaling | None]:
    """The rows a run trains on, its held-out rows (None without ``val_split``) and, with
    ``standardize``, the training rows' feature scaling (applied to both); a batch larger than
    the training rows is refused. X is copied at most once, in the run's dtype, and only when
    rows are held out or scaled: the parts are written straight from the caller's X."""
    o, held_out, scaling = options, None, None
    train = held = None  # boolean masks of the rows; None: every row
    if o.val_split is not None:
        held = held_out_rows(len(problem.y), o.val_split, o.seed)
        train = ~held
    if o.standardize:
        scaling = feature_scaling(problem, train)
    if held is not None:
        held_out = rows_of(problem, held, scaling, o.dtype, weights=False)
    if train is not None or scaling is not None:
        problem = rows_of(problem, train, scaling, o.dtype)
    if o.batch_size is not None and o.batch_size > len(problem.y):
        raise InvalidInput(
            f"the batch size {o.batch_size} is larger than the {len(problem.y)} training "
            "samples; use at most that, or leave it out for full batch"
        )
    return problem, held_out, scaling


def _to_host(bk: Backend, arrays: tuple[Any, ...]) -> list[np.ndarray]:
    return [bk.to_numpy(a).astype(np.float64) for a in arrays]


def train_problem(
    problem: Problem,
    bk: Backend,
    device: str,
    options: Options,
    *,
    on_epoch: EpochCallback | None = None,
    start: Checkpoint | None = None,
    checkpoint_every: int | None = None,
    on_checkpoint: Callable[[Checkpoint], None] | None = None,
    data: str | None = None,
) -> TrainResult:
    """Train a validated host problem on a backend and device already resolved.

    ``start`` resumes from a checkpoint (of any backend): its parameters, optimizer state, epoch
    count and history. ``on_checkpoint`` receives a :class:`Checkpoint` every
    ``checkpoint_every`` epochs and at the end. ``data`` names the data for the record.
    The default ``loss="auto"`` is settled here, from the targets.
    """
    o = options.for_labels(problem.y)
    # the data's fingerprint reads all of X: only for checkpoints, which need it
    meta = run_meta(problem, bk, o) if start is not None or on_checkpoint is not None else {}
    rows, held_out, scaling = training_rows(problem, o)
    model, loss = model_of(o), get_loss(o.loss)
    d_out = loss.outputs(problem.y)
    check_engine(model, bk.name, bk.caps.autodiff, o.grad)
    params0, past, start_epoch = _starting_point(start, problem, rows, held_out, o, d_out)
    rows, held_out = (encoded(p, loss, d_out) for p in (rows, held_out))

    def checkpoint(done: int, carry: Carry, history: History) -> None:
        params, state = carry
        whole = _joined(past, history)
        on_checkpoint(Checkpoint(done, _to_host(bk, params), whole, meta, _to_host(bk, state)))

    replicas = None
    if o.data_parallel is not None or o.distributed:
        replicas = bk.replicas(o.data_parallel or 1, o.distributed, device)
    with _library_failures(bk, model, o.distributed), _blaming_the_data(rows.X):
        run, history, seconds, final, precision = _run_on_device(
            bk, device, o, rows, params0, start, held_out, replicas, on_epoch, start_epoch,
            checkpoint_every, checkpoint if on_checkpoint else None,
        )  # fmt: skip
    _check_finite(final, o.epochs)
    history = _joined(past, history)
    return TrainResult(
        options=o,
        losses=history["loss"],
        accuracy=history.get("accuracy", []),
        params=final,
        seconds=seconds,
        backend=bk.name,
        device=device,
        device_name=bk.device_name(device),
        val_losses=history.get("val_loss", []),
        val_accuracy=history.get("val_accuracy", []),
        block=run.block,
        path=run.path.why,
        replicas=replicas.record() if replicas is not None else None,
        scaling=scaling,
        data=data,
        versions=versions(bk),
        precision=precision,
        features=problem.X.shape[1],
    )


@contextlib.contextmanager
def _blaming_the_data(X: np.ndarray) -> Iterator[None]:
    """A loss never finite (NaN or inf at epoch 0) comes from the data: the message names the
    feature column of the largest magnitude (read only on this error path)."""
    try:
        yield
    except TrainingDiverged as err:
        if err.epoch != 0 or X.size == 0:
            raise
        column = np.max(np.abs(X), axis=0)
        j = int(np.argmax(column))
        raise TrainingDiverged(
            f"{err}; the largest feature is column {j} (from 0), |x| up to {column[j]:.3g}", 0
        ) from None


@contextlib.contextmanager
def _library_failures(bk: Backend, model: Any, distributed: bool) -> Iterator[None]:
    """A library's (or a user's model's) exception as one :class:`LibraryError` line, its
    cause kept; in a process group as it is (the launcher must see a rank fail)."""
    try:
        yield
    except (XptrainError, OSError, MemoryError):
        raise  # ours, and the machine's (a full disk, a closed stdout): each said as it is
    except Exception as err:
        if distributed:
            raise
        raise LibraryError.of(bk.name, describe(model), err) from err


def encoded(problem: Problem | None, loss: Loss, d_out: int) -> Problem | None:
    """``problem`` with its targets as ``loss`` reads them on a device (see Loss.targets)."""
    if problem is None or loss.encode is None:
        return problem
    return Problem(problem.X, loss.targets(problem.y, d_out), problem.W, problem.b)


def _run_on_device(
    bk: Backend,
    device: str,
    o: Options,
    rows: Problem,
    params0: list[np.ndarray],
    start: Checkpoint | None,
    held_out: Problem | None,
    replicas: Any,
    on_epoch: EpochCallback | None,
    start_epoch: int,
    checkpoint_every: int | None,
    checkpoint: Callable | None,
) -> tuple:
    """Place the run, train it and bring the parameters back: ``(placed, history, seconds,
    final params, precision)``."""
    # Everything on the device happens inside the scope (JAX's x64 holds only there).
    with bk.float_scope(o.dtype):
        state0 = start.state if start is not None else None
        run = place(rows, bk, device, o, params0, state0, held_out, replicas)
        began = time.perf_counter()
        carry, history = run.fit(
            epochs=o.epochs,
            start_epoch=start_epoch,
            on_epoch=on_epoch,
            checkpoint_every=checkpoint_every,
            on_checkpoint=checkpoint,
        )
        bk.sync(carry[0][0])
        seconds = time.perf_counter() - began
        return run, history, seconds, _to_host(bk, carry[0]), bk.precision(o.dtype)


def _starting_point(
    start: Checkpoint | None,
    whole: Problem,
    rows: Problem,
    held_out: Problem | None,
    options: Options,
    d_out: int,
) -> tuple[list[np.ndarray], History, int]:
    """The parameters, the history so far and the first epoch: a checkpoint's (checked
    against the whole problem and these options), or new parameters drawn from the seed."""
    if start is not None:
        check_compatible(start, whole, options)
        return start.params, start.history, start.epoch
    params = starting_params(model_of(options), rows, d_out, options.seed)
    names = metric_names(held_out is not None, get_loss(options.loss).classifies)
    return params, {name: [] for name in names}, 0


def _joined(past: History, history: History) -> History:
    """The history before this run's epochs (a checkpoint's) and this run's, column by column;
    a column the past lacks (accuracy, in a checkpoint written before it was recorded) is NaN
    for those epochs."""
    before = len(past.get("loss", []))
    return {k: past.get(k, [math.nan] * before) + history.get(k, []) for k in {**past, **history}}


def _check_finite(params: list[np.ndarray], epochs: int) -> None:
    if not all(np.isfinite(p).all() for p in params):
        raise TrainingDiverged(
            f"the parameters became inf or NaN by epoch {epochs - 1} although the loss stayed "
            "finite; try a smaller learning rate",
            epochs - 1,
        )
