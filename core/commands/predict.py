"""``xptrain predict``: a model saved by ``train --save-model`` applied to data, on any backend:
every row's probability and class (CSV), and the loss and accuracy where the data has labels."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from .. import backends, fitted
from ..data import load
from ..files import write_all
from ..loss import get as get_loss
from .common import check_outputs

DESCRIPTION = (
    "Apply a model saved by `xptrain train --save-model` to data (any --data of train), on any "
    "backend: writes probability,prediction per row as CSV (--out, or stdout) and prints the "
    "loss and accuracy on the data's labels to stderr."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``predict``'s options: the model file, the data, where to compute, the output."""
    parser.add_argument("--model-file", required=True, metavar="PATH", help="a saved model")
    parser.add_argument(
        "--data", required=True, metavar="PATH|NAME", help="the rows, as train's --data"
    )
    parser.add_argument(
        "--backend", default="numpy", help=f"one of {', '.join(backends.SPECS)} (default numpy)"
    )
    parser.add_argument("--device", help="cpu, cuda or cuda:N (default: the backend's default)")
    parser.add_argument("--dtype", default="float64", choices=backends.DTYPES)
    parser.add_argument("--out", metavar="PATH", help="write the CSV here (default: stdout)")


def run(args: argparse.Namespace) -> int:
    """Predict, write the CSV, then say how well the model did on the labels."""
    check_outputs(args)
    model = fitted.load(args.model_file)
    problem = load(args.data)
    where = {"backend": args.backend, "device": args.device, "dtype": args.dtype}
    header, rows, formats = _columns(model, problem.X, where)
    scores = model.evaluate(problem.X, problem.y, **where)
    table = io.StringIO()
    np.savetxt(table, rows, fmt=formats, delimiter=",", header=header, comments="")
    if args.out is None:
        sys.stdout.write(table.getvalue())
    else:
        text = table.getvalue()
        write_all([(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    said = ", ".join(f"{name} {value:.6g}" for name, value in scores.items())
    print(f"xptrain predict: {len(rows)} rows on {args.backend}; {said}", file=sys.stderr)
    return 0


def _columns(model: fitted.FittedModel, X: np.ndarray, where: dict) -> tuple:
    """The CSV's header, rows and formats: each row's probability (of class 1, or of every
    class) and class; a regression's predictions."""
    if not get_loss(model.options.loss).classifies:
        out = np.atleast_2d(model.predict(X, **where).T).T
        names = (
            ["prediction"]
            if out.shape[1] == 1
            else [f"prediction_{k}" for k in range(out.shape[1])]
        )
        return ",".join(names), out, ["%.17g"] * out.shape[1]
    proba = np.atleast_2d(model.predict_proba(X, **where).T).T
    classes = model.predict(X, **where)
    names = ["probability"] if proba.shape[1] == 1 else [f"p{k}" for k in range(proba.shape[1])]
    rows = np.column_stack([proba, classes])
    return ",".join([*names, "prediction"]), rows, ["%.17g"] * proba.shape[1] + ["%d"]
