"""``xptrain check``: every reference problem on every backend × device × dtype × gradient
engine × mode, against the float64 reference; exit 1 with a one-line summary on any failure."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .. import backends, check, check_table, path_choice, problems
from ..check_jobs import default_jobs
from ..errors import InvalidInput
from ..files import json_writer, write_all
from ..options import key_value
from ..plot import agreement_figure, figure_writer
from .common import add_list, add_timeout, arg, check_outputs, listed

DESCRIPTION = (
    "Run every reference problem on every backend × device × dtype × gradient engine × mode, "
    "twice, and compare each with the float64 NumPy reference. Exit code 0 when all pass, 1 "
    "when any fails, 2 for bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``check``'s options: what to combine, how to spread, the outputs."""
    add_list(
        parser,
        "--backends",
        "NAME",
        "built-in backends or importable Array API modules (default: every built-in backend "
        "that starts here)",
    )
    add_list(parser, "--devices", "DEV", "cpu, cuda (every GPU) or cuda:N (default: all)")
    add_list(parser, "--dtypes", "DTYPE", "float64, float32 (default: both)")
    add_list(
        parser,
        "--problems",
        "NAME",
        f"{', '.join(problems.PROBLEMS)} (default: all whose data is installed)",
    )
    own = parser.add_argument_group(
        "your own model",
        "check it instead of the reference problems (its reference: its own "
        "float64 NumPy run; its backward is also compared with torch's and JAX's autodiff)",
    )
    own.add_argument(
        "--model", metavar="FILE.py:NAME", help="the model (importing FILE.py runs it)"
    )
    own.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="an argument for the model's class, VALUE a TOML value (repeatable)",
    )  # fmt: skip
    own.add_argument("--data", metavar="SPEC", help="its data (default seed)")
    own.add_argument(
        "--standardize", action="store_true", help="scale its features to mean 0, deviation 1"
    )
    own.add_argument(
        "--loss",
        help="bce, bce-logits, softmax-ce or mse (default: from the labels: bce for 0/1, "
        "softmax-ce for classes 0..K-1, mse for other numbers)",
    )
    own.add_argument("--epochs", type=int, help="epochs (default 20)")
    own.add_argument("--lr", type=float, help="learning rate (default 0.5)")
    parser.add_argument(
        "--data-parallel",
        type=int,
        metavar="N",
        help="spread every configuration's rows over N devices of this process (jax; others "
        "are skipped)",
    )
    parser.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: every configuration spread over the processes of the group "
        "(one --backends: torch or jax); rank 0 prints and writes",
    )
    add_timeout(parser)
    parser.add_argument(
        "--scale-out",
        action="store_true",
        help="also check data-parallel runs, each in processes of its own: jax over 2 emulated "
        "CPU devices and over 2 processes, torch over 2 gloo ranks (torchrun)",
    )
    parser.add_argument(
        "--explain", action=argparse.BooleanOptionalAction, default=True,
        help="name the culprit of each failing row (xptrain explain; default on)",
    )  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="write the report as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw relative error per epoch")
    parser.add_argument(
        "--jobs", type=arg(_jobs), default=default_jobs(), metavar="N",
        help="run single-device CPU configurations in N worker processes, each with its "
        "share of the cores (default: the cores here, at most 4: %(default)s; 1: one after "
        "another in this process)",
    )  # fmt: skip
    parser.add_argument(
        "--compile-cache", action=argparse.BooleanOptionalAction, default=True,
        help="keep the code JAX and torch.compile compile between checks, in the user's cache "
        "folder (default on; --no-compile-cache: compile everything anew, as a first check)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _jobs(text: str) -> int:
    """``--jobs``: a whole number of worker processes ≥ 1."""
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise InvalidInput(f"must be a whole number ≥ 1, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """The agreement table; exit 1 with a one-line summary on any failure."""
    check_outputs(args)
    _check_spread(args)
    if not args.distributed:
        return _check_and_report(args, processes=None, main=True)
    named = listed(args.backends, "--backends") or []
    if len(named) != 1:
        raise InvalidInput("--distributed checks one backend: give --backends torch or jax")
    with backends.process_group(named[0], args.distributed_timeout) as joined:
        return _check_and_report(args, processes=joined.size, main=joined.rank == 0)


def _check_spread(args: argparse.Namespace) -> None:
    """Refuse data-parallel options that cannot go together."""
    if args.data_parallel is not None and args.data_parallel < 1:
        raise InvalidInput(f"--data-parallel must be ≥ 1 devices, got {args.data_parallel}")
    if args.scale_out and (args.distributed or args.data_parallel is not None):
        raise InvalidInput("--scale-out launches its own data-parallel checks: give it alone")
    devices = listed(args.devices, "--devices")
    if args.scale_out and devices and set(devices) != {"cpu"}:
        raise InvalidInput("--scale-out runs on this machine's CPU: drop --devices, or it")


def _check_and_report(args: argparse.Namespace, *, processes: int | None, main: bool) -> int:
    """Plan and run the check (every process of a group runs every configuration, in the same
    order); ``main`` prints the table and writes the outputs."""
    problem_names = _problem_names(args)
    backend_names = listed(args.backends, "--backends")
    dtypes = listed(args.dtypes, "--dtypes")
    configs, skipped = check.plan(
        problem_names,
        backend_names,
        listed(args.devices, "--devices"),
        dtypes,
        args.data_parallel,
        processes,
    )
    kept = backends.keep_compiled(_compile_cache(args))
    report = check.run(
        configs, skipped, progress_bar=not args.quiet and main, explain=args.explain,
        jobs=1 if processes is not None else args.jobs,  # a group's ranks step in lockstep
    )  # fmt: skip
    report.notes += cache_note(args, kept)
    if args.scale_out:
        with tempfile.TemporaryDirectory(prefix="xptrain-scale-out-") as directory:
            names = [backends.canonical_name(n) for n in backend_names or []]
            check.scale_out(
                report, problem_names, names, dtypes, args.distributed_timeout, Path(directory)
            )
    elif processes is None and args.data_parallel is None:
        report.notes.append(
            "data-parallel runs (JAX devices and processes, torch ranks): not checked here; "
            "add --scale-out"
        )
    if not main:
        return 0 if report.passed else 1
    return _report(args, report)


def _compile_cache(args: argparse.Namespace) -> Path | None:
    """Where the libraries keep compiled code between checks (None: ``--no-compile-cache``)."""
    return path_choice.cache_folder() / "compiled" if args.compile_cache else None


def cache_note(args: argparse.Namespace, kept: list[str]) -> list[str]:
    """What the report says of compiled code kept between checks (nothing where no library
    of the check compiles)."""
    if not args.compile_cache:
        return ["compiled code: every compilation paid in this check (--no-compile-cache)"]
    if not kept:
        return []
    return [f"compiled code between checks: {'; '.join(kept)} (--no-compile-cache: none kept)"]


def _problem_names(args: argparse.Namespace) -> list[str] | None:
    """The problems named by --problems, and the user's model's with --model (checked now:
    a model that breaks its protocol is bad input, exit 2); None: every reference problem."""
    names = listed(args.problems, "--problems")
    if args.model is not None:
        own = own_problem(args).name
        check.ready(own)
        return [*(names or []), own]
    own_options = ("data", "loss", "epochs", "lr", "model_arg", "standardize")
    given = [name for name in own_options if getattr(args, name)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise InvalidInput(f"{flag} is for your own model: add --model FILE.py:NAME")
    return names


def own_problem(args: argparse.Namespace) -> problems.ReferenceProblem:
    """The user's model (logistic without --model) on its data, as a problem of the check."""
    return problems.custom(
        args.model or "logistic", args.data or "seed", args.loss,
        20 if args.epochs is None else args.epochs, 0.5 if args.lr is None else args.lr,
        model_args=tuple(key_value(text) for text in args.model_arg), scaled=args.standardize,
    )  # fmt: skip


def _report(args: argparse.Namespace, report: check.Report) -> int:
    """Write --json and --plot, then print the table and the summary line."""
    outputs = []
    if args.json is not None:
        outputs.append((args.json, json_writer(report.to_dict())))
    if args.plot is not None:
        outputs.append((args.plot, figure_writer(agreement_figure(report))))
    write_all(outputs)  # before printing: a closed stdout must not lose the report
    print(check_table.format_table(report))
    line = check_table.summary(report)
    print(line)
    if not report.passed:
        print(f"xptrain check: {line}", file=sys.stderr)
        return 1
    return 0
