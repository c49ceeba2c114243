"""The ``xptrain`` command. Every refusal is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import backends
from .data import load
from .errors import BackendUnavailable, XptrainError
from .files import check_writable, write_json
from .runinfo import xptrain_version
from .train import GRADS, TrainResult, check_options, train_problem


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="xptrain",
        description="One training loop on every array library: "
        "does it give the same numbers, and how fast?",
    )
    parser.add_argument("--version", action="version", version=f"xptrain {xptrain_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train the seed's logistic regressor on one backend",
        description="Train on one backend. With no options: the seed's run, "
        "printed as the seed prints it.",
    )
    train.add_argument(
        "--backend", default="numpy", help=f"one of {', '.join(backends.SPECS)} (default numpy)"
    )
    train.add_argument(
        "--device", help="cpu, cuda (alias gpu) or cuda:N (default: the backend's default device)"
    )
    train.add_argument("--dtype", default="float64", choices=backends.DTYPES)
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--lr", type=float, default=1.0, help="learning rate (the seed's alpha)")
    train.add_argument(
        "--seed", type=int, default=1, help="seed for the initial W (the seed's np.random.seed)"
    )
    train.add_argument(
        "--data",
        default="seed",
        metavar="PATH|seed",
        help="'seed', or a .npz (X, y, optional W, b) or .csv (label last)",
    )
    train.add_argument(
        "--jit", action="store_true", help="compile the training step (jax.jit, torch.compile)"
    )
    train.add_argument(
        "--grad",
        default="analytic",
        choices=GRADS,
        help="analytic backprop (the seed's) or the backend's autodiff",
    )
    train.add_argument("--json", metavar="PATH", help="write the result as JSON")
    train.add_argument("--plot", metavar="PATH", help="draw the loss curve (png, svg, pdf, ...)")
    train.add_argument("--quiet", action="store_true", help="print nothing per epoch")
    train.set_defaults(run=run_train)

    listing = sub.add_parser("backends", help="list backends, their versions and devices")
    listing.set_defaults(run=run_backends)
    return parser


def run_train(args: argparse.Namespace) -> int:
    check_options(dtype=args.dtype, epochs=args.epochs, lr=args.lr, grad=args.grad)
    if args.json:
        check_writable(args.json, "--json")
    if args.plot:
        from .plot import check_plot_path

        check_writable(args.plot, "--plot")
        check_plot_path(args.plot)
    bk = backends.get(args.backend)
    device = bk.resolve_device(args.device)
    problem = load(args.data)
    result = train_problem(
        problem,
        bk,
        device,
        dtype=args.dtype,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        jit=args.jit,
        grad=args.grad,
        on_epoch=None if args.quiet else _print_epoch,
    )
    if args.json:
        write_json(args.json, {**result.to_dict(), "data": args.data, "seed": args.seed})
    if args.plot:
        from .plot import plot_losses

        plot_losses(args.plot, result.losses, _title(result))
    return 0


def _print_epoch(epoch: int, loss: float) -> None:
    # 12 significant digits: how the seed's Python printed its floats.
    print(f"Epoch: {epoch} Loss: {loss:.12g}")


def _title(result: TrainResult) -> str:
    mode = ("jit" if result.jit else "eager") + f", {result.grad}"
    return f"{result.backend} on {result.device} ({result.dtype}, {mode})"


def run_backends(args: argparse.Namespace) -> int:
    header = ("backend", "installed", "version", "devices", "float64", "jit", "autodiff")
    rows = [header]
    for name in backends.SPECS:
        try:
            bk = backends.get(name)
        except BackendUnavailable as err:
            rows.append((name, f"no: {err}", "-", "-", "-", "-", "-"))
            continue
        rows.append(
            (
                name,
                "yes",
                bk.version,
                ", ".join(bk.devices()),
                bk.float64,
                _yes(bk.has_jit),
                _yes(bk.has_autodiff),
            )
        )
    # A missing backend's row is its name and the reason; the other columns size to the rest.
    widths = [
        max(len(row[i]) for row in rows if i == 0 or not row[1].startswith("no:"))
        for i in range(len(header))
    ]
    for row in rows:
        cells = row[:2] if row[1].startswith("no:") else row
        print("  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=False)).rstrip())
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xptrain`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except XptrainError as err:
        print(f"xptrain {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xptrain: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xptrain train | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
