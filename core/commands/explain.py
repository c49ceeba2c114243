"""``xptrain explain``: when a backend parts from the reference, name the operation that makes
it (see :mod:`xptrain.explain`)."""

from __future__ import annotations

import argparse

from .. import backends, check, explain, explain_table, problems
from ..errors import InvalidInput
from ..files import json_writer, write_all
from ..op_errors import known_op
from ..plot import explain_figure, figure_writer
from .check import own_problem
from .common import arg, check_outputs

DESCRIPTION = (
    "Replay one configuration's epoch with every Array API call watched: each call's error on "
    "its own inputs against a higher-precision NumPy evaluation, the error each output carries, "
    "and the culprit (the call furthest past its expected error; for a compiled run, perhaps "
    "the compilation). Exit code 0, or 2 for bad input."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``explain``'s options: one configuration, one problem, the epoch, the outputs."""
    parser.add_argument(
        "--backend", default="numpy", help="built-in backend or importable Array API module"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the backend's first)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    parser.add_argument("--grad", default="analytic", choices=("analytic", "autodiff"))
    parser.add_argument("--jit", action="store_true", help="the compiled run (replayed eagerly)")
    parser.add_argument(
        "--problem", help=f"a reference problem: {', '.join(problems.PROBLEMS)} (default seed)"
    )
    own = parser.add_argument_group("any problem train accepts (instead of --problem)")
    own.add_argument("--model", metavar="FILE.py:NAME", help="a model (default logistic)")
    own.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="an argument for the model's class, VALUE a TOML value (repeatable)",
    )  # fmt: skip
    own.add_argument("--data", metavar="SPEC", help="the data (default seed)")
    own.add_argument("--standardize", action="store_true", help="scale the features")
    own.add_argument(
        "--loss",
        help="bce, bce-logits, softmax-ce or mse (default: from the labels: bce for 0/1, "
        "softmax-ce for classes 0..K-1, mse for other numbers)",
    )
    own.add_argument("--epochs", type=int, help="epochs (default 20)")
    own.add_argument("--lr", type=float, help="learning rate (default 0.5)")
    parser.add_argument(
        "--epoch", type=arg(_epoch), metavar="K",
        help="the epoch to replay (default: the first past tolerance, else the worst)",
    )  # fmt: skip
    parser.add_argument("--top", type=arg(_top), default=10, metavar="N", help="rows shown")
    parser.add_argument("--op", metavar="NAME", help="show only this operation (e.g. exp)")
    parser.add_argument("--json", metavar="PATH", help="write what was found as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw each call's local and carried error")


def _epoch(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must be ≥ 0")
    return value


def _top(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be ≥ 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Explain the configuration; print the table, write --json and --plot."""
    check_outputs(args)
    if args.op is not None and not known_op(args.op):
        raise InvalidInput(f"--op {args.op!r} is not an Array API operation")
    config = _config(args)
    found = explain.explain(config, args.epoch)
    outputs = []
    if args.json is not None:
        outputs.append((args.json, json_writer(found.to_dict())))
    if args.plot is not None:
        outputs.append((args.plot, figure_writer(explain_figure(found))))
    write_all(outputs)
    print(explain_table.format_table(found, args.top, args.op))
    return 0


def _config(args: argparse.Namespace) -> check.Config:
    """The configuration asked for, its problem registered (and checked) first."""
    bk = backends.get(args.backend)
    device = bk.resolve_device(args.device)
    name = _problem(args)
    return check.Config(
        name, bk.name, device, args.dtype, args.grad, "jit" if args.jit else "eager"
    )


def _problem(args: argparse.Namespace) -> str:
    """--problem, or the problem --data/--model/--loss/... describe (checked now)."""
    own = ("model", "data", "loss", "epochs", "lr", "model_arg", "standardize")
    given = [name for name in own if getattr(args, name)]
    if args.problem is not None:
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InvalidInput(f"--problem and {flag} both choose the problem: give one")
        return problems.get(args.problem).name
    if not given:
        return "seed"
    name = own_problem(args).name
    check.ready(name)
    return name
