"""``xptrain train``: one run on one backend, printed as the seed prints it; every run option
is a flag derived from :mod:`xptrain.options`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .. import backends, checkpoint, options
from ..api import TrainResult, train_problem
from ..data import load
from ..errors import InvalidInput
from ..files import check_output_dir, json_writer, write_all
from ..loop import EpochCallback
from ..plot import figure_writer, loss_figure
from ..terminal import progress
from .common import add_timeout, arg, check_outputs

DESCRIPTION = (
    "Train on one backend. With no options: the seed's run, printed as the seed prints it."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``train``'s flags: where to run, the run options, the data, the outputs."""
    parser.add_argument(
        "--backend", default="numpy", help=f"one of {', '.join(backends.SPECS)} (default numpy)"
    )
    parser.add_argument(
        "--device", help="cpu, cuda (alias gpu) or cuda:N (default: the backend's default device)"
    )
    parser.add_argument(
        "--data",
        default="seed",
        metavar="PATH|seed",
        help="seed, linear:N,D[,S], blobs:N,D[,K[,S]] (K classes), breast_cancer, digits (digit "
        "≥ 5, binary), digits10 (10 classes), diabetes (regression), a .npz (X, y: labels or "
        "targets, optional W, b) or .csv (label or target last), or a folder of X.npy and "
        "y.npy (X memory-mapped)",
    )
    options.add_flags(parser, arg)
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --backend dask: compute on the dask.distributed scheduler at "
        "tcp://HOST:PORT (it must answer, with a worker, within --scheduler-timeout)",
    )
    parser.add_argument(
        "--scheduler-timeout",
        type=arg(options.seconds),
        default=10.0,
        metavar="S",
        help="seconds to wait for the scheduler and a worker (default 10)",
    )
    add_timeout(parser)
    parser.add_argument("--json", metavar="PATH", help="write the result as JSON")
    parser.add_argument("--plot", metavar="PATH", help="draw the loss curve (png, svg, pdf, ...)")
    parser.add_argument(
        "--save-model",
        metavar="PATH",
        help="write the trained model (.npz: parameters, options, feature scaling) for "
        "`xptrain predict`",
    )
    parser.add_argument(
        "--quiet", action="store_true", help="print nothing: no line per epoch, no summary"
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="save checkpoints (.npz) here, the loss history beside them (history.jsonl); "
        "one run at a time (a second one is refused)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="save every K epochs (default: at the end only)",
    )
    parser.add_argument(
        "--keep-checkpoints",
        type=arg(_kept),
        metavar="N|all",
        help=f"keep the newest N checkpoints in --checkpoint-dir, deleting older ones (default "
        f"{checkpoint.KEEP}; all: keep every one; 0 is refused, a run always keeps its latest)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in --checkpoint-dir (on any "
        "backend) up to --epochs in all; an unreadable one is set aside (*.corrupt) for the "
        "newest that reads back",
    )


def run(args: argparse.Namespace) -> int:
    """Check everything, train, then write the outputs together."""
    run_options = options.from_flags(args)
    check_outputs(args)
    with _checkpointing(args) as (start, save):
        if run_options.distributed:  # before the backend's first use: JAX joins before computing
            group = backends.process_group(args.backend, args.distributed_timeout)
            with group as joined:  # rank 0 prints and writes; the ranks step alike (fit's lockstep)
                main = joined.rank == 0
                return _train_and_write(args, run_options, start, save if main else None, main=main)
        return _train_and_write(args, run_options, start, save, main=True)


def _train_and_write(
    args: argparse.Namespace,
    run_options: options.Options,
    start: checkpoint.Checkpoint | None,
    save: Callable[[checkpoint.Checkpoint], None] | None,
    *,
    main: bool,
) -> int:
    """Train, then write the outputs together (``main``: the process that prints and writes;
    the others of a process group train silently)."""
    bk = backends.get(args.backend)
    if args.scheduler is not None and not bk.caps.scheduler:
        raise InvalidInput("--scheduler is for --backend dask (a dask.distributed cluster)")
    device = bk.resolve_device(args.device)
    problem = load(args.data)
    cluster = (
        bk.scheduler(args.scheduler, args.scheduler_timeout)
        if args.scheduler is not None
        else contextlib.nullcontext()
    )
    first = start.epoch if start else 0
    printer = _epoch_printer(args, run_options.epochs, first) if main else contextlib.nullcontext()
    with cluster, printer as on_epoch:
        result = train_problem(
            problem,
            bk,
            device,
            run_options,
            on_epoch=on_epoch,
            start=start,
            checkpoint_every=args.checkpoint_every,
            on_checkpoint=save,
            data=str(args.data),
        )
    if main:
        _write(args, result)
        if not args.quiet:
            print(_summary(result, first), file=sys.stderr)
    return 0


def _summary(result: TrainResult, first: int) -> str:
    """One line after training: the epochs this call ran and their time, the last epoch's loss
    (named: by default the labels chose it) and training accuracy (a loss with classes), and
    the held-out accuracy (a regression's loss) with --val-split (from the history: no pass
    over the data)."""
    line = (
        f"xptrain train: {len(result.losses) - first} epochs in {result.seconds:.3g} s; "
        f"last {result.options.loss} loss {result.losses[-1]:.6g}"
    )
    if result.accuracy:
        line += f"; training accuracy {result.accuracy[-1]:.4f}"
    if result.val_accuracy:
        line += f"; held-out accuracy {result.val_accuracy[-1]:.4f}"
    elif result.val_losses:  # a regression: no accuracy
        line += f"; held-out loss {result.val_losses[-1]:.6g}"
    return line


def _write(args: argparse.Namespace, result: TrainResult) -> None:
    """The --json record and the --plot figure, written together."""
    outputs = []
    if args.json is not None:
        outputs.append((args.json, json_writer(result.to_dict())))
    if args.plot is not None:
        figure = loss_figure(result.to_dict(), _title(result))
        outputs.append((args.plot, figure_writer(figure)))
    if args.save_model is not None:
        outputs.append((args.save_model, result.fitted.writer()))
    write_all(outputs)


def _kept(text: str) -> int | str:
    """--keep-checkpoints' value: a whole number ≥ 1, or ``all``."""
    if text == "all":
        return text
    if not text.isdigit() or int(text) < 1:
        raise InvalidInput(f"--keep-checkpoints must be a whole number ≥ 1 or all, got {text!r}")
    return int(text)


@contextlib.contextmanager
def _checkpointing(
    args: argparse.Namespace,
) -> Iterator[tuple[checkpoint.Checkpoint | None, Callable[[checkpoint.Checkpoint], None] | None]]:
    """The checkpoint to resume from (if any) and the function that saves new ones, with the
    checkpoint folder locked meanwhile by the process that writes it."""
    if args.checkpoint_dir is None:
        if args.resume or args.checkpoint_every is not None or args.keep_checkpoints is not None:
            raise InvalidInput(
                "--resume, --checkpoint-every and --keep-checkpoints need --checkpoint-dir DIR"
            )
        yield None, None
        return
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise InvalidInput(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    directory = check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    if not _writes(args):  # another rank of a group: it reads the folder rank 0 holds
        yield _resumed(args, directory, None), None
        return
    kept = args.keep_checkpoints
    keep = None if kept == "all" else (kept or checkpoint.KEEP)  # None: every one
    with checkpoint.Folder(directory, keep) as folder:
        yield _resumed(args, directory, folder), folder.save


def _writes(args: argparse.Namespace) -> bool:
    """Whether this process writes the checkpoints: any but a process group's other ranks."""
    return not (args.distributed and os.environ.get("RANK", "0") != "0")


def _resumed(
    args: argparse.Namespace, directory: Path, folder: checkpoint.Folder | None
) -> checkpoint.Checkpoint | None:
    """The checkpoint in ``directory`` to resume from (None: start afresh); a folder holding
    another run's checkpoints is refused without --resume."""
    latest = checkpoint.latest(directory) if directory.is_dir() else None
    if latest is not None and not args.resume:
        raise InvalidInput(
            f"--checkpoint-dir {str(directory)!r} already holds another run's checkpoints; "
            "add --resume to continue it, or give an empty folder"
        )
    if latest is None:
        if args.resume and folder is not None:  # a group's other ranks stay silent
            print(
                f"xptrain train: no checkpoint in {str(directory)!r} yet; starting from epoch 0",
                file=sys.stderr,
            )
        return None
    return _newest_readable(directory, folder)


def _newest_readable(
    directory: Path, folder: checkpoint.Folder | None
) -> checkpoint.Checkpoint | None:
    """The newest checkpoint in ``directory`` that reads back whole; the ``folder``'s holder
    sets newer unreadable ones aside, and says so."""
    start, unreadable = checkpoint.newest_valid(directory)
    if folder is not None and unreadable:
        moved = folder.set_aside([path for path, _ in unreadable])
        print(
            f"xptrain train: {unreadable[0][1]}; resuming from {start.source} (epoch "
            f"{start.epoch}) instead; set aside: {', '.join(p.name for p in moved)}",
            file=sys.stderr,
        )
    return start


@contextlib.contextmanager
def _epoch_printer(
    args: argparse.Namespace, epochs: int, first: int
) -> Iterator[EpochCallback | None]:
    """The seed's line per epoch on stdout and, when stderr is a terminal, a progress bar with
    the live loss under them; nothing at all with --quiet."""
    if args.quiet:
        yield None
        return
    bar = progress(None, "xptrain train", unit="epoch", total=epochs, initial=first)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        _print(bar, _epoch_line(epoch, metrics))
        live = f"loss {metrics['loss']:.6g}"
        if "accuracy" in metrics:
            live += f" accuracy {metrics['accuracy']:.4f}"
        bar.set_postfix_str(live, refresh=False)
        bar.update(1)

    try:
        yield on_epoch
    finally:
        bar.close()


def _epoch_line(epoch: int, metrics: dict[str, float]) -> str:
    # 12 significant digits: how the seed's Python printed its floats.
    line = f"Epoch: {epoch} Loss: {metrics['loss']:.12g}"
    if "val_loss" in metrics:
        line += f" Val loss: {metrics['val_loss']:.12g}"
    if "val_accuracy" in metrics:
        line += f" Val accuracy: {metrics['val_accuracy']:.4f}"
    return line


def _print(bar: object, line: str) -> None:
    """A line on stdout (above the progress bar, when there is one)."""
    try:
        if bar.disable:
            print(line)
        else:
            bar.write(line, file=sys.stdout)
    except BrokenPipeError:  # `xptrain train --json r.json | head`: the run goes on
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _title(result: TrainResult) -> str:
    mode = ("jit" if result.jit else "eager") + f", {result.grad}"
    return f"{result.backend} on {result.device} ({result.dtype}, {mode})"
