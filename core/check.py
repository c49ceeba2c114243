"""``xptrain check``: every reference problem on every backend × device × dtype × gradient
engine × mode, each run twice, compared with the float64 reference under one tolerance model."""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, launch, matrix, problems
from .api import TrainResult, train_problem
from .conformance import MODEL, compare, tolerance
from .data import Problem
from .errors import BackendUnavailable, InvalidInput, XptrainError, first_line
from .gradcheck import GRAD_TOL, GradCheck, gradient_checks
from .model_setup import check_ready, longest_dot
from .models import has_backward
from .reference import Reference, reference_mlp_run, reference_run
from .steps import model_of
from .terminal import progress


@dataclass(frozen=True)
class Config:
    """One configuration: which problem, where, in what precision, and how."""

    problem: str
    backend: str
    device: str
    dtype: str
    grad: str
    mode: str  # "eager" or "jit"
    data_parallel: int | None = None  # the rows spread over this many devices per process
    processes: int | None = None  # ... and over this many processes (a joined group)

    @property
    def spread(self) -> str:
        """How a data-parallel configuration spreads its rows ("" for one device)."""
        parts = []
        if self.data_parallel is not None:
            parts.append(f"{self.data_parallel} devices")
        if self.processes is not None:
            parts.append(f"{self.processes} processes")
        return " × ".join(parts)

    @property
    def label(self) -> str:
        """``backend/device/dtype/grad/mode on problem``, as tables and test ids show it."""
        spread = f" over {self.spread}" if self.spread else ""
        return (
            f"{self.backend}/{self.device}/{self.dtype}/{self.grad}/{self.mode}{spread} "
            f"on {self.problem}"
        )


@dataclass(frozen=True)
class Row:
    """What one configuration gave, as ``--json`` records it."""

    problem: str
    backend: str
    device: str
    dtype: str
    grad: str
    mode: str
    device_name: str
    max_rel_err: float | None
    max_ulp: float | None
    first_bad_epoch: int | None
    param_err: float | None
    repeatable: bool | None
    tolerance: float | None  # None: the reference itself failed
    margin: float | None
    passed: bool
    error: str | None = None
    rel_err: list[float] = field(default_factory=list)  # per epoch
    loss_tol: list[float] = field(default_factory=list)  # per epoch: tolerance · (1 + 1/L)
    param_tol: float | None = None
    data_parallel: int | None = None
    processes: int | None = None
    # a failing row's culprit (``xptrain explain``'s): op, site, max_ulp, expected_ulp, excess
    culprit: dict[str, Any] | None = None
    path: str = ""  # the gradient's path the run took and why (TrainResult.path)
    seconds: float | None = None  # the wall time of its two runs (the first one compiles)

    @property
    def config(self) -> Config:
        """The configuration this row is of."""
        return Config(**{f.name: getattr(self, f.name) for f in fields(Config)})


@dataclass
class Report:
    """Every row, plus what is needed to trust them: versions, precision settings, skips."""

    rows: list[Row] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    precision: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table
    missing: list[str] = field(default_factory=list)  # planned configurations without a row
    gradients: list[GradCheck] = field(default_factory=list)  # backward against autodiff

    @property
    def passed(self) -> bool:
        """Every planned configuration has a row, every row passed (repeatability is
        reported, not required: GPU reductions may legitimately differ run to run), and every
        model's backward agreed with autodiff."""
        rows_pass = all(row.passed for row in self.rows)
        return bool(self.rows) and not self.missing and rows_pass and self.gradients_pass

    @property
    def gradients_pass(self) -> bool:
        """Every gradient check passed (or there was none)."""
        return all(g.passed for g in self.gradients)

    @property
    def failures(self) -> list[Row]:
        """The rows that did not pass."""
        return [row for row in self.rows if not row.passed]

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "passed": self.passed,
            "tolerance_model": MODEL,
            "results": [asdict(row) for row in self.rows],
            "versions": self.versions,
            "precision": self.precision,
            "skipped": self.skipped,
            "notes": self.notes,
            "missing": self.missing,
            "gradient_checks": [asdict(g) for g in self.gradients],
            "gradient_tolerance": GRAD_TOL,
        }


def plan(
    problem_names: Sequence[str] | None = None,
    backend_names: Sequence[str] | None = None,
    devices: Sequence[str] | None = None,
    dtypes: Sequence[str] | None = None,
    data_parallel: int | None = None,
    processes: int | None = None,
) -> tuple[list[Config], list[str]]:
    """The configurations to run, and a note for each thing left out and why.

    Names given explicitly must work (else :class:`InvalidInput` or
    :class:`BackendUnavailable`); by default every built-in backend that starts here and every
    problem whose data is installed is used, and the rest is listed as skipped. With
    ``data_parallel`` (devices per process) or ``processes`` (the size of the joined group),
    every configuration spreads its rows so, and backends that cannot are skipped.
    """
    dtypes = list(dtypes or backends.DTYPES)
    matrix.check_dtypes(dtypes)
    chosen, skipped = _problems(problem_names)
    spread = _spread(data_parallel, processes)
    # every grad and mode each backend has; every problem of a device before the next device
    cells = matrix.combinations(backend_names, devices, dtypes, spread=spread, skipped=skipped)
    configs = [
        Config(problem.name, *where, cell.dtype, cell.grad, cell.mode, data_parallel, processes)
        for where, group in itertools.groupby(cells, lambda cell: (cell.backend.name, cell.device))
        for problem, cell in itertools.product(chosen, list(group))
    ]
    configs = [c for c in configs if _engine_exists(c, skipped)]
    if not configs:
        raise InvalidInput("nothing to check: no backend, device and problem left to combine")
    return configs, skipped


def _spread(data_parallel: int | None, processes: int | None) -> matrix.Spread | None:
    """How every configuration spreads its rows (asked of each backend), or None."""
    if data_parallel is None and processes is None:
        return None
    kind = "devices" if processes is None else "processes"
    return matrix.Spread(kind, (data_parallel or 1, processes is not None))


def _engine_exists(config: Config, skipped: list[str]) -> bool:
    """False (noted in ``skipped``) for the analytic gradient of a model without backward."""
    if config.grad != "analytic" or has_backward(model_of(problems.get(config.problem).options())):
        return True
    note = f"{config.problem}: analytic gradients (its model has no backward)"
    if note not in skipped:
        skipped.append(note)
    return False


def _problems(names: Sequence[str] | None) -> tuple[list[problems.ReferenceProblem], list[str]]:
    """The problems named, whose data must be here (refused now, not after other configurations
    ran); or every problem whose data is here, and why each other one is not."""
    if names:
        named = [problems.get(name) for name in names]
        for problem in named:
            reference_data(problem.name)  # named but its data missing: refused before anything runs
        return named, []
    chosen: list[problems.ReferenceProblem] = []
    skipped: list[str] = []
    for problem in problems.PROBLEMS.values():
        try:
            reference_data(problem.name)
        except InvalidInput as err:
            skipped.append(f"problem {problem.name}: {err}")
            continue
        chosen.append(problem)
    return chosen, skipped


def reference_data(name: str) -> Problem:
    """The data of problem ``name`` (made once per registration)."""
    return _data_of(name, problems.get(name).version)


@functools.lru_cache(maxsize=8)
def _data_of(name: str, version: int) -> Problem:
    return problems.get(name).make()


def reference_of(name: str) -> Reference:
    """The float64 reference run of problem ``name`` (run once per registration)."""
    return _reference_of(name, problems.get(name).version)


@functools.lru_cache(maxsize=8)
def _reference_of(name: str, version: int) -> Reference:
    p = problems.get(name)
    if p.model is not None:
        return _own_reference(name)
    if p.hidden:
        return reference_mlp_run(
            reference_data(name), p.hidden, p.activation, p.epochs, p.lr, p.seed, p.loss
        )
    return reference_run(reference_data(name), epochs=p.epochs, lr=p.lr, seed=p.seed)


def reference_engine(analytic: bool) -> tuple[str, str]:
    """``(backend, grad)`` of the float64 reference run of a model: NumPy's analytic run, or
    for a model without backward torch's autodiff (else JAX's); refused where neither is here.
    Only the backend chosen is started."""
    if analytic:
        return "numpy", "analytic"
    for name in ("torch", "jax"):
        try:
            backends.get(name)
        except BackendUnavailable:
            continue
        return name, "autodiff"
    raise InvalidInput("the model has no backward, and neither torch nor jax (autodiff) is here")


def _own_reference(name: str) -> Reference:
    """A user's model: its float64 eager run on the reference engine."""
    options = problems.get(name).options()
    backend, grad = reference_engine(has_backward(model_of(options)))
    bk = backends.get(backend)
    result = train_problem(reference_data(name), bk, "cpu", options.replace(grad=grad))
    return Reference(np.array(result.losses), result.params)


def ready(name: str) -> None:
    """Refuse, as bad input, a problem whose data does not fit its loss or whose model breaks
    the protocol (before any configuration runs)."""
    p = problems.get(name)
    check_ready(model_of(p.options()), p.loss, reference_data(name), p.seed)


def run_config(config: Config) -> tuple[Row, dict[str, Any]]:
    """Run one configuration twice and compare it with its reference; never raises for a
    failing backend: the failure is the row's result."""
    p = problems.get(config.problem)
    data = reference_data(config.problem)
    tol = None  # unknown until the reference has run
    try:
        ref = reference_of(config.problem)
        tol = tolerance(config.dtype, data.X.shape[0], longest_dot(data.X.shape[1], ref.params))
        options = p.options(
            dtype=config.dtype,
            jit=config.mode == "jit",
            grad=config.grad,
            data_parallel=config.data_parallel,
            distributed=config.processes is not None,
        )
        bk = backends.get(config.backend)
        start = time.perf_counter()
        first = train_problem(data, bk, config.device, options)
        second = train_problem(data, bk, config.device, options)
        seconds = time.perf_counter() - start
    except KeyboardInterrupt:
        raise  # a real Ctrl-C stops the check
    except BaseException as err:  # a library that breaks, even by sys.exit(), fails its row,
        # not the whole check: a check must fail closed, never end early with exit 0
        if config.processes is not None and not isinstance(err, XptrainError):
            raise  # a process group out of step (a lost rank): every later row would wait
        return error_row(config, tol, err), {}
    repeatable = first.losses == second.losses and all(
        np.array_equal(a, b) for a, b in zip(first.params, second.params, strict=True)
    )
    row = replace(compared_row(config, first, ref, tol, repeatable), seconds=seconds)
    return row, {"versions": first.versions, "precision": first.precision}


def with_culprit(row: Row) -> Row:
    """A failing single-device row with the culprit ``xptrain explain`` finds for it (None
    where it finds none, or cannot replay the run: a library that failed outright)."""
    if row.passed or row.tolerance is None or row.data_parallel or row.processes:
        return row
    from .explain import explain  # the replay machinery, only for a failing row

    try:
        found = explain(row.config)
    except KeyboardInterrupt:
        raise
    except BaseException:  # a run that cannot be replayed (a library that fails, even by
        # sys.exit()) keeps its row, without a culprit: the check still fails closed
        return row
    return replace(row, culprit=found.to_dict()["culprit"])


def scale_out(
    report: Report,
    problem_names: Sequence[str] | None,
    backend_names: Sequence[str] | None,
    dtypes: Sequence[str] | None,
    timeout: float,
    directory: Path,
) -> None:
    """Add data-parallel rows to ``report``: every problem and dtype on JAX over 2 emulated CPU
    devices and over 2 processes, and on torch over 2 gloo ranks (``launch.SCALE_OUT``), each a
    ``xptrain check`` of its own (under torchrun where it takes processes), its JSON report read
    back; only the ``backend_names`` given, if any. A backend that is not here is skipped,
    saying so; a launch that fails (or takes longer than ``launch.LAUNCH_TIMEOUT``) is a failed
    row. ``timeout`` is the launched processes' ``--distributed-timeout``."""
    for engine in launch.SCALE_OUT:
        name, how = engine.backend, engine.spread
        if not engine.check or (backend_names and name not in backend_names):
            continue
        reason = launch.unavailable(name, how)
        if reason is not None:
            report.skipped.append(f"scale-out on {name} over {how}: {reason}")
            continue
        [two] = engine.launches([2])
        out = directory / f"{name}-{how}.json"
        args = ["check", "--backends", name, "--devices", "cpu", *two.options, "--quiet"]
        args += ["--json", str(out), "--distributed-timeout", str(timeout)]
        args += [*_option("--problems", problem_names), *_option("--dtypes", dtypes)]
        launched = two.run(args)
        if not out.is_file():
            where = Config("all", name, "cpu", "-", "-", "-", two.cpu_devices, two.processes)
            report.rows.append(error_row(where, 0.0, InvalidInput(launch.failure(launched))))
            continue
        other = json.loads(out.read_text())
        report.rows += [Row(**row) for row in other["results"]]
        report.versions.update(other["versions"])
        report.precision.update({f"{k} over 2 {how}": v for k, v in other["precision"].items()})
        report.skipped += [f"scale-out on {name} over 2 {how}: {n}" for n in other["skipped"]]


def _option(flag: str, values: Sequence[str] | None) -> list[str]:
    """``[flag, *values]``, or nothing without values: an option passed on to a launch."""
    return [flag, *values] if values else []


def compared_row(
    config: Config,
    result: TrainResult,
    ref: Reference,
    tol: float,
    repeatable: bool | None = None,
    steps: int | None = None,
) -> Row:
    """A configuration's row: its run compared with ``ref`` under base tolerance ``tol``
    (``steps``: parameter updates, when not one per epoch)."""
    agreement = compare(result, ref, tol, steps)
    return Row(
        **asdict(config),
        device_name=result.device_name,
        tolerance=tol,
        max_rel_err=agreement.max_rel_err,
        max_ulp=agreement.max_ulp,
        first_bad_epoch=agreement.first_bad_epoch,
        param_err=agreement.param_err,
        repeatable=repeatable,
        margin=agreement.margin,
        passed=agreement.passed,
        rel_err=agreement.rel_err,
        loss_tol=agreement.loss_tol,
        param_tol=agreement.param_tol,
        path=result.path,
    )


def error_row(config: Config, tol: float | None, err: BaseException) -> Row:
    """The row of a configuration whose run raised ``err``."""
    try:
        device_name = backends.get(config.backend).device_name(config.device)
    except KeyboardInterrupt:
        raise
    except BaseException:  # the backend itself is what failed
        device_name = config.device
    return Row(
        **asdict(config),
        device_name=device_name,
        tolerance=tol,
        max_rel_err=None,
        max_ulp=None,
        first_bad_epoch=getattr(err, "epoch", None),
        param_err=None,
        repeatable=None,
        margin=None,
        passed=False,
        error=error_message(err),
    )


def error_message(err: BaseException) -> str:
    """What a failed run's exception says, in one line; an exception that is not an ordinary
    error (``SystemExit``, say) is named as the library's doing."""
    if isinstance(err, XptrainError):
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    message = first_line(err)
    return message if isinstance(err, Exception) else f"{message} raised by the library"


def run(
    configs: Iterable[Config],
    skipped: Sequence[str] = (),
    progress_bar: bool = True,
    on_row: Callable[[Row], None] | None = None,
    explain: bool = True,
    jobs: int = 1,
) -> Report:
    """Run every configuration (with a progress bar on stderr) and gather the report, its rows
    in the planned order; ``explain``: a failing row names its culprit (:func:`with_culprit`);
    ``jobs`` > 1: single-device CPU configurations run in that many worker processes
    (:mod:`xptrain.check_jobs`; the gradient checks run here meanwhile), ``on_row`` called as
    each finishes."""
    from .check_jobs import results, workers_note  # they run this module's configurations

    configs = list(configs)
    report = Report(skipped=list(skipped))
    rows: dict[int, Row] = {}
    gradients: list[list[GradCheck]] = []  # checked here while workers run the rows, if any

    def check_gradients() -> None:
        gradients.append(_gradient_checks(configs))

    with progress(None, "xptrain check", progress_bar, total=len(configs)) as bar:
        for i, row, info in results(configs, jobs, explain, check_gradients):
            rows[i] = row
            _note(report, configs[i], info)
            bar.update()
            if on_row is not None:
                on_row(row)
    report.rows = [rows[i] for i in sorted(rows)]
    report.missing = missing_rows(configs, report.rows)
    report.notes += [note] if (note := workers_note(configs, jobs)) else []
    if not gradients:
        check_gradients()
    report.gradients = gradients[0]
    return report


def _note(report: Report, config: Config, info: dict[str, Any]) -> None:
    """A run's versions and precision settings into the report."""
    if info:
        report.versions.update(info["versions"])
        where = f"{config.backend}/{config.device}"
        report.precision.setdefault(where, {})[config.dtype] = info["precision"]


def _gradient_checks(configs: list[Config]) -> list[GradCheck]:
    """Every checked model's backward against the autodiff of every backend and device of
    the check that has one (single-device configurations), in float64."""
    out: list[GradCheck] = []
    names = dict.fromkeys(c.problem for c in configs)
    places = dict.fromkeys(
        (c.backend, c.device) for c in configs if c.data_parallel is None and c.processes is None
    )
    for name in names:
        options = problems.get(name).options()
        if not has_backward(model_of(options)):
            continue
        for backend, device in places:
            bk = backends.get(backend)
            if not bk.caps.autodiff:
                continue
            try:
                trained = reference_of(name).params
                out += gradient_checks(name, reference_data(name), options, bk, device, trained)
            except Exception as err:  # the check of a broken model fails, it does not stop
                out.append(GradCheck(name, backend, device, "-", -1, [], None, False,
                                     error_message(err)))  # fmt: skip
    return out


def missing_rows(configs: Iterable[Config], rows: Iterable[Row]) -> list[str]:
    """The labels of the planned configurations that have no row: a check that lost one must
    not pass."""
    done = {row.config for row in rows}
    return [config.label for config in configs if config not in done]
