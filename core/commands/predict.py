"""``xptrain predict``: a model saved by ``train --save-model`` applied to data, on any backend:
every row's probability and class (CSV), and the loss and accuracy where the data has labels."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from .. import backends, fitted
from ..data import as_features, load
from ..errors import InvalidInput
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
        "--data", required=True, metavar="PATH|NAME",
        help="the rows, as train's --data; or rows without labels: a .csv of the model's "
        "features only, or an .npy of X",
    )  # fmt: skip
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
    X, y = _rows(args.data, model.features)
    where = {"backend": args.backend, "device": args.device, "dtype": args.dtype}
    header, rows, formats = _columns(model, X, where)
    scores = model.evaluate(X, y, **where) if y is not None else {}
    table = io.StringIO()
    np.savetxt(table, rows, fmt=formats, delimiter=",", header=header, comments="")
    if args.out is None:
        sys.stdout.write(table.getvalue())
    else:
        text = table.getvalue()
        write_all([(args.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))])
    said = ", ".join(f"{name} {value:.6g}" for name, value in scores.items()) or "no labels"
    print(f"xptrain predict: {len(rows)} rows on {args.backend}; {said}", file=sys.stderr)
    return 0


def _rows(spec: str, features: int) -> tuple[np.ndarray, np.ndarray | None]:
    """The rows to predict and their labels (None: the data has none): an .npy is X alone;
    a CSV with exactly the model's features has no label column; else as train reads it."""
    if spec.endswith(".npy"):
        try:
            X = np.load(spec, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InvalidInput(f"{spec}: not a readable .npy of numbers ({err})") from None
        try:
            X = as_features("X", X)  # as training checks X: in place, a chunk at a time
        except InvalidInput:
            X = None
        if X is None or X.ndim != 2:
            raise InvalidInput(f"{spec}: X must be a 2-D array of finite numbers")
        return X, None
    problem = load(spec)
    if spec.endswith(".csv") and problem.X.shape[1] + 1 == features:
        return np.column_stack([problem.X, problem.y]), None  # every column a feature
    return problem.X, problem.y


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
