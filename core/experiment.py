"""``xptrain run experiment.toml``: one experiment (data, model, optimizer, epochs) on a list of
backends × devices × dtypes × gradient engines × modes, into one folder: each run's history as
JSON, written as it finishes, the agreement table ``check`` computes, and plots.

Every run is compared with the experiment's own float64 run on NumPy (the reference, always run
first), under the tolerance model of :mod:`xptrain.conformance`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, matrix, options
from .api import TrainResult, train_problem, training_rows
from .check import Config, Report, Row, compared_row, error_row, reference_engine
from .checkpoint import fingerprint
from .conformance import tolerance
from .data import GENERATORS, Problem, load
from .errors import InvalidInput
from .files import atomic_write, json_writer, parse_toml, tomllib
from .model_setup import check_ready, longest_dot
from .models import has_backward
from .options import Options
from .reference import Reference
from .steps import model_of
from .terminal import progress

# Every key an experiment file may hold, with its default; anything else is refused (a typo
# must not silently fall back to a default). The run options' keys come from their declarations.
_OPTION_KEYS = options.toml_schema()
SCHEMA: dict[str, dict[str, Any]] = {
    "data": {"source": "seed", **_OPTION_KEYS.pop("data")},
    "model": _OPTION_KEYS.pop("model"),
    "train": _OPTION_KEYS.pop("train"),
    **{table: None for table in options.toml_tables()},  # free tables: [model_args]
    "runs": {
        "backends": None,
        "devices": None,
        "dtypes": ["float64", "float32"],
        "grads": ["analytic"],
        "modes": ["eager"],
    },
}
assert not _OPTION_KEYS, f"options declared in sections no experiment file has: {_OPTION_KEYS}"


@dataclass(frozen=True)
class Experiment:
    """A parsed, checked experiment file."""

    name: str
    settings: dict[str, dict[str, Any]]  # every section with its defaults filled in
    options: Options  # the training options (dtype, grad and jit vary per run)
    runs: list[Config]  # the reference run first
    skipped: list[str] = field(default_factory=list)
    folder: Path = Path(".")  # the file's folder: relative data paths are read from there
    source: str = ""  # the file's text, kept beside the results

    def problem(self) -> Problem:
        """The experiment's data, loaded on the host (standardised per run, after the split):
        a generator or packaged set by name, any path (an .npz or .csv file, a folder of
        X.npy and y.npy) relative to the experiment file, not to where it is run from."""
        source = self.settings["data"]["source"]
        return load(source if source.partition(":")[0] in GENERATORS else self.folder / source)


def read(path: str | Path) -> Experiment:
    """Parse and check an experiment file; every mistake is one :class:`InvalidInput` line
    naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise InvalidInput(f"{path}: cannot read the experiment file ({reason})") from None
    try:
        doc = parse_toml(text)
    except tomllib.TOMLDecodeError as err:
        raise InvalidInput(f"{path}: not valid TOML ({err})") from None
    except InvalidInput as err:
        raise InvalidInput(f"{path}: {err}") from None
    try:
        return replace(_parse(doc, path), source=text)
    except InvalidInput as err:
        raise InvalidInput(f"{path}: {err}") from None


def _parse(doc: dict[str, Any], path: Path) -> Experiment:
    name = _folder_name(doc.pop("name", path.stem))
    if isinstance(doc.get("model"), str):  # model = "FILE.py:NAME", short for [model] kind
        doc["model"] = {"kind": doc["model"]}
    unknown = set(doc) - set(SCHEMA)
    if unknown:
        raise InvalidInput(
            f"unknown section {sorted(unknown)[0]!r}; sections are {', '.join(SCHEMA)} (and name)"
        )
    settings = {section: _section(doc, section, defaults) for section, defaults in SCHEMA.items()}
    _model_beside(settings["model"], path.parent)
    options = _options(settings)
    runs, skipped = _plan(settings["runs"], name, has_backward(model_of(options)))
    return Experiment(name.strip(), settings, options, runs, skipped, path.parent)


def _folder_name(name: Any) -> str:
    """The experiment's name: one folder name (its results' default folder)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"name must be a non-empty string, got {name!r}")
    if ".." in name or "/" in name or "\\" in name or os.path.isabs(name.strip()):
        raise InvalidInput(
            f"name {name!r} must be one folder name (the results' default folder): "
            "no '..', no path separator, not an absolute path"
        )
    return name


def _section(doc: dict[str, Any], section: str, defaults: dict[str, Any] | None) -> dict:
    """One section of the file with its defaults filled in (a free table as given); unknown
    keys refused."""
    given = doc.get(section, {})
    if not isinstance(given, dict):
        raise InvalidInput(f"{section} must be a table ([{section}])")
    if defaults is None:
        return given
    bad = set(given) - set(defaults)
    if bad:
        raise InvalidInput(
            f"unknown key {sorted(bad)[0]!r} in [{section}]; keys: {', '.join(defaults)}"
        )
    return {**defaults, **given}


def _model_beside(model: dict[str, Any], folder: Path) -> None:
    """A ``FILE.py:NAME`` model is read relative to the experiment file."""
    kind = model.get("kind")
    if isinstance(kind, str) and ".py:" in kind:
        where, _, name = kind.rpartition(":")
        model["kind"] = f"{(folder / where).resolve()}:{name}"


def _options(settings: dict[str, dict[str, Any]]) -> Options:
    """The run options the file's sections give (dtype, grad and jit vary per run); the
    sections are updated to what they settle to (e.g. an MLP's default hidden layers)."""
    if not isinstance(settings["data"]["source"], str):
        raise InvalidInput("[data] source must be a string (a file or a generator)")
    run = options.from_toml(settings)
    values = run.to_json()
    for name, spec, _ in options.declared():
        if spec.toml is not None and "." in spec.toml:
            section, key = spec.toml.split(".")
            settings[section][key] = values[name]
        elif spec.toml is not None:
            settings[spec.toml] = values[name]
    return run


def _names(runs: dict[str, Any], key: str) -> list[str] | None:
    value = runs[key]
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f'[runs] {key} must be a list of names, e.g. ["numpy", "torch"]')
    return list(dict.fromkeys(value))


def _plan(runs: dict[str, Any], name: str, analytic: bool = True) -> tuple[list[Config], list[str]]:
    """The runs, reference first, and a note for each combination left out and why; without
    ``analytic`` gradients (a model with no backward) the reference is torch's (else JAX's)
    float64 autodiff run and no analytic run is planned."""
    dtypes, grads, modes = (_known(runs, k) for k in ("dtypes", "grads", "modes"))
    names, devices = _names(runs, "backends"), _names(runs, "devices")
    _check_devices(names, devices)
    cells, skipped = matrix.plan(names, devices, dtypes, grads, modes)
    backend, grad = reference_engine(analytic)
    reference = (backend, "cpu", "float64", grad, "eager")
    if not analytic and "analytic" in grads:
        skipped.append("analytic gradients: the model has no backward")
    ran = [Config(name, *reference)]  # first: every other run is compared with it
    ran += [
        Config(name, c.backend.name, c.device, c.dtype, c.grad, c.mode)
        for c in cells
        if analytic or c.grad != "analytic"
    ]
    return list(dict.fromkeys(ran)), skipped  # the reference once, though also asked for


def _check_devices(names: list[str] | None, devices: list[str] | None) -> None:
    """Refuse a device of ``[runs] devices`` that none of the experiment's backends has here:
    its runs would silently not happen (``cuda`` and ``gpu`` ask for any GPU)."""
    bks, _ = matrix.select_backends(names)
    present = list(dict.fromkeys(device for bk in bks for device in bk.devices()))
    for spec in devices or ():
        if not any(filter(backends.device_filter([spec]), present)):
            raise InvalidInput(
                f"[runs] devices: no {spec!r} here for {', '.join(bk.name for bk in bks)}; "
                f"their devices: {', '.join(present)}"
            )


_ALLOWED = {"dtypes": backends.DTYPES, "grads": matrix.GRADS, "modes": matrix.MODES}


def _known(runs: dict[str, Any], key: str) -> list[str]:
    """``[runs] key``'s names, each one of those allowed there."""
    values, allowed = _names(runs, key), _ALLOWED[key]
    wrong = [v for v in values if v not in allowed]
    if wrong:
        raise InvalidInput(f"[runs] {key}: unknown {wrong[0]!r}; choose from {', '.join(allowed)}")
    return values


def _label(config: Config) -> str:
    return "-".join((config.backend, config.device, config.dtype, config.grad, config.mode))


def run_path(folder: Path, config: Config) -> Path:
    """Where a run's JSON goes in the experiment's folder."""
    return folder / "runs" / f"{_label(config).replace(':', '')}.json"


def run(
    exp: Experiment, folder: Path, *, resume: bool = False, progress_bar: bool = True
) -> Report:
    """Run every configuration of ``exp`` into ``folder`` (the reference first) and return the
    agreement report. Each run's JSON is written as soon as it finishes; with ``resume``, runs
    whose JSON is already there are read back, not rerun."""
    problem = exp.problem()
    exp = replace(exp, options=exp.options.for_labels(problem.y))  # loss "auto": from the labels
    rows = training_rows(problem, exp.options)[0]  # bad sizes refused before writing
    n, d = rows.X.shape
    o = exp.options
    params = check_ready(model_of(o), o.loss, rows, o.seed)  # a model breaking its protocol
    _prepare(folder, exp.source, resume)
    n_sum = exp.options.batch_size or n  # the longest sum over samples
    steps = exp.options.epochs * math.ceil(n / n_sum)
    width = longest_dot(d, params)
    report = Report(skipped=list(exp.skipped))
    report.notes.append(
        f"here: N = {n_sum} (rows per sum), D = {width} (longest dot product), parameters "
        f"within tau·√{steps} ({steps} updates); reference: {_label(exp.runs[0])}"
    )
    reference: Reference | None = None  # the first run's, once it is there
    data = fingerprint(problem)  # runs read back with --resume must be of this very data
    bar = progress(exp.runs, f"xptrain run {exp.name}", progress_bar)
    for config in bar:
        bar.set_postfix_str(_label(config), refresh=False)
        tol = tolerance(config.dtype, n_sum, width)
        record = _finished(folder, config, data) if resume else None
        if record is None:
            record = _new_record(exp, problem, config, (tol, steps), reference, data)
            atomic_write(run_path(folder, config), json_writer(record))
        if reference is None:
            run_ = record["run"]
            reference = Reference(np.array(run_["losses"]), [np.array(p) for p in run_["params"]])
        _add_row(report, config, record)
    return report


def _new_record(
    exp: Experiment,
    problem: Problem,
    config: Config,
    model: tuple[float, int],
    reference: Reference | None,
    data: str,
) -> dict[str, Any]:
    """Run one configuration: its record (the run, and its row against ``reference``, or its
    own when it is the reference); a failure is its row's, except the reference's own."""
    tol, steps = model
    try:
        result = _train(exp, problem, config)
    except Exception as err:  # a failing backend fails its row, not the experiment
        row = error_row(config, tol, err)
        if config == exp.runs[0]:
            raise InvalidInput(f"the float64 NumPy reference run failed: {row.error}") from None
        return {"run": None, "row": asdict(row)}
    reference = reference or Reference(np.array(result.losses), result.params)
    row = compared_row(config, result, reference, tol, steps=steps)
    return {"run": _run_record(result, data), "row": asdict(row)}


def _add_row(report: Report, config: Config, record: dict[str, Any]) -> None:
    """A run's row into the report, with its versions and precision settings."""
    if record["run"] is not None:
        report.versions.update(record["run"]["versions"])
        where = f"{config.backend}/{config.device}"
        report.precision.setdefault(where, {})[config.dtype] = record["run"]["precision"]
    report.rows.append(Row(**record["row"]))


def _prepare(folder: Path, source: str, resume: bool) -> None:
    """Make the folder, holding this experiment's file; refuse one holding another's."""
    saved = folder / "experiment.toml"
    if saved.exists() and any((folder / "runs").glob("*.json")):
        if not resume:
            raise InvalidInput(
                f"{str(folder)!r} already holds an experiment's results; add --resume to "
                "finish it, or give another --out"
            )
        try:
            before = parse_toml(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable, not UTF-8, not TOML or nested too deeply
            before = None
        if before != parse_toml(source):
            raise InvalidInput(
                f"{str(folder)!r} holds the results of another experiment (its "
                "experiment.toml differs); give another --out"
            )
    elif not saved.exists() and folder.exists() and any(folder.iterdir()):
        raise InvalidInput(f"--out {str(folder)!r} is not empty; give a new or empty folder")
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write(saved, lambda tmp: Path(tmp).write_text(source, encoding="utf-8"))


def _finished(folder: Path, config: Config, data: str) -> dict[str, Any] | None:
    """A run's record from an earlier, interrupted invocation on the same ``data`` (its
    fingerprint); None if it must run (again): missing, unreadable, failed or of other data."""
    record = _read(folder, config)
    try:
        same = record is not None and record["run"]["data_fingerprint"] == data
    except (KeyError, TypeError):  # a failed run (None) or an older record
        return None
    return record if same else None


def _read(folder: Path, config: Config) -> dict[str, Any] | None:
    """A run's record in ``folder``, or None if there is none that parses."""
    try:
        record = json.loads(run_path(folder, config).read_text(encoding="utf-8"))
        Row(**record["row"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def _train(exp: Experiment, problem: Problem, config: Config) -> TrainResult:
    how = {"dtype": config.dtype, "grad": config.grad, "jit": config.mode == "jit"}
    if config == exp.runs[0]:  # the reference: the seed's arithmetic, the same on any machine
        how |= {"exact": True, "path": "full"}
    bk = backends.get(config.backend)
    source = exp.settings["data"]["source"]
    return train_problem(problem, bk, config.device, exp.options.replace(**how), data=source)


def _run_record(result: TrainResult, data: str) -> dict[str, Any]:
    return {**result.to_dict(), "data_fingerprint": data}


def histories(folder: Path, exp: Experiment) -> dict[str, dict[str, Any]]:
    """The finished runs' records in ``folder``, by label, in the experiment's order."""
    found = {}
    for config in exp.runs:
        record = _read(folder, config)
        if record is not None and record["run"] is not None:
            found[_label(config)] = record["run"]
    return found
