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
    proba = model.predict_proba(problem.X, **where)
    scores = model.evaluate(problem.X, problem.y, **where)
    table = io.StringIO()
    rows = np.column_stack([proba, (proba > 0.5).astype(np.int64)])
    np.savetxt(
        table,
        rows,
        fmt=["%.17g", "%d"],
        delimiter=",",
        header="probability,prediction",
        comments="",
    )
    if args.out is None:
        sys.stdout.write(table.getvalue())
    else:
        text = table.getvalue()
        write_all([(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    print(
        f"xptrain predict: {len(proba)} rows on {args.backend}; loss {scores['loss']:.6g}, "
        f"accuracy {scores['accuracy']:.4f}",
        file=sys.stderr,
    )
    return 0
