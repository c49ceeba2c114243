"""The ``xptrain`` command. Every refusal is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import backends, checkpoint, problems
from .bench import SWEEP_N, parse_sizes
from .data import load
from .errors import BackendUnavailable, InvalidInput, XptrainError
from .files import check_output_dir, check_writable, json_writer, write_all
from .loss import LOSSES
from .model import ACTIVATIONS
from .optim import OPTIMIZERS
from .runinfo import xptrain_version
from .terminal import align, progress
from .train import GRADS, EpochCallback, Options, TrainResult, train_problem


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (no usage dump), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``xptrain`` argument parser, one sub-parser per command."""
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
        "--seed",
        type=int,
        default=1,
        help="seed for the initial weights (the seed's np.random.seed) and the batch order",
    )
    train.add_argument(
        "--data",
        default="seed",
        metavar="PATH|seed",
        help="seed, linear:N,D[,S], blobs:N,D[,S], breast_cancer, digits, a .npz "
        "(X, y, optional W, b) or .csv (label last), or a folder of X.npy and y.npy (X "
        "memory-mapped)",
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
    train.add_argument(
        "--exact",
        action="store_true",
        help="the seed's full-batch arithmetic (default: on the CPU, large problems read X "
        "once per epoch in cache-sized blocks: the same numbers up to rounding)",
    )
    train.add_argument(
        "--block-rows",
        type=int,
        metavar="R",
        help="rows per block of the one-pass gradient (default: chosen from the problem and "
        "the CPU's cache)",
    )
    train.add_argument(
        "--batch-size",
        type=int,
        metavar="B",
        help="minibatches of B rows, in an order drawn on the host from --seed "
        "and the epoch (default: full batch, as the seed)",
    )
    train.add_argument(
        "--loss",
        default="bce",
        choices=LOSSES,
        help="the seed's binary cross-entropy, or the same from logits (stable "
        "when probabilities saturate)",
    )
    train.add_argument(
        "--standardize",
        action="store_true",
        help="scale every feature to mean 0, standard deviation 1 (with the training rows' "
        "statistics when --val-split holds rows out)",
    )
    train.add_argument(
        "--val-split",
        type=float,
        metavar="F",
        help="hold out this fraction of the rows (drawn from --seed) and report their loss "
        "and accuracy after every epoch",
    )
    train.add_argument(
        "--model",
        default="logistic",
        choices=("logistic", "mlp"),
        help="the seed's logistic regressor, or an MLP with --hidden layers",
    )
    train.add_argument(
        "--hidden",
        type=_arg(_positive_ints),
        metavar="H,...",
        help="MLP hidden layer sizes (default 16)",
    )
    train.add_argument(
        "--activation",
        default="sigmoid",
        choices=list(ACTIVATIONS),
        help="the MLP's hidden activation",
    )
    train.add_argument(
        "--optimizer",
        default="sgd",
        choices=list(OPTIMIZERS),
        help="sgd (the seed's), momentum (0.9) or adam (0.9, 0.999, 1e-8)",
    )
    train.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --backend dask: compute on the dask.distributed scheduler at "
        "tcp://HOST:PORT (it must answer, with a worker, within --scheduler-timeout)",
    )
    train.add_argument(
        "--scheduler-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for the scheduler and a worker (default 10)",
    )
    train.add_argument(
        "--data-parallel",
        type=int,
        metavar="N",
        help="with --backend jax: spread the rows over N devices of this process (sharded, "
        "gradients added by psum); CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N",
    )
    train.add_argument(
        "--distributed",
        action="store_true",
        help="join the launcher's process group (torchrun for torch and jax; RANK, WORLD_SIZE, "
        "MASTER_ADDR, MASTER_PORT) and spread the rows over its processes; rank 0 prints "
        "and writes",
    )
    _timeout_option(train)
    train.add_argument("--json", metavar="PATH", help="write the result as JSON")
    train.add_argument("--plot", metavar="PATH", help="draw the loss curve (png, svg, pdf, ...)")
    train.add_argument("--quiet", action="store_true", help="print nothing per epoch")
    train.add_argument("--checkpoint-dir", metavar="DIR", help="save checkpoints (.npz) here")
    train.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="K",
        help="save every K epochs (default: at the end only)",
    )
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue from the latest checkpoint in --checkpoint-dir (on any "
        "backend) up to --epochs in all",
    )
    train.set_defaults(run=run_train)

    check = sub.add_parser(
        "check",
        help="do the backends agree? every configuration against the float64 reference",
        description="Run every reference problem on every backend × device × dtype × gradient "
        "engine × mode, twice, and compare each with the float64 NumPy reference. Exit code 0 "
        "when all pass, 1 when any fails, 2 for bad input.",
    )
    check.add_argument(
        "--backends",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="built-in backends or importable Array API modules (default: every "
        "built-in backend that starts here)",
    )
    check.add_argument(
        "--devices",
        nargs="+",
        action="extend",
        metavar="DEV",
        help="cpu, cuda (every GPU) or cuda:N (default: all)",
    )
    check.add_argument(
        "--dtypes",
        nargs="+",
        action="extend",
        metavar="DTYPE",
        help="float64, float32 (default: both)",
    )
    check.add_argument(
        "--problems",
        nargs="+",
        action="extend",
        metavar="NAME",
        help=f"{', '.join(problems.PROBLEMS)} (default: all whose data is installed)",
    )
    check.add_argument(
        "--data-parallel",
        type=int,
        metavar="N",
        help="spread every configuration's rows over N devices of this process (jax; others "
        "are skipped)",
    )
    check.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: every configuration spread over the processes of the group "
        "(one --backends: torch or jax); rank 0 prints and writes",
    )
    _timeout_option(check)
    check.add_argument(
        "--scale-out",
        action="store_true",
        help="also check data-parallel runs, each in processes of its own: jax over 2 emulated "
        "CPU devices and over 2 processes, torch over 2 gloo ranks (torchrun)",
    )
    check.add_argument("--json", metavar="PATH", help="write the report as JSON")
    check.add_argument("--plot", metavar="PATH", help="draw relative error per epoch")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(run=run_check)

    bench = sub.add_parser(
        "bench",
        help="seconds per epoch on each backend × device × size, against a bound",
        description="Time the same problem (linear:N,D, made once on the host) on each backend "
        "× device × mode × size. Each record is appended to --out as one JSON line as soon as "
        "it is measured.",
    )
    bench.add_argument(
        "--backends",
        nargs="+",
        action="extend",
        metavar="NAME",
        help="default: every built-in backend that starts here",
    )
    bench.add_argument(
        "--devices",
        nargs="+",
        action="extend",
        metavar="DEV",
        help="cpu, cuda (every GPU) or cuda:N (default: all)",
    )
    bench.add_argument("--dtype", default="float32", choices=backends.DTYPES)
    bench.add_argument(
        "--sizes",
        type=_arg(parse_sizes),
        metavar="NxD,...",
        help="problem sizes (default 65536x64)",
    )
    bench.add_argument(
        "--sweep",
        action="store_true",
        help=f"N = {', '.join(map(str, SWEEP_N))} for each D in --dims",
    )
    bench.add_argument(
        "--dims",
        type=_arg(_positive_ints),
        default=(64,),
        metavar="D,...",
        help="the D values of --sweep (default 64)",
    )
    bench.add_argument(
        "--modes",
        nargs="+",
        action="extend",
        metavar="MODE",
        help="eager, jit (default both; jit where the backend has it)",
    )
    bench.add_argument(
        "--paths",
        nargs="+",
        action="extend",
        metavar="PATH",
        help="fast (what train chooses: the one-pass gradient on the CPU where it wins) "
        "and/or exact (the seed's full-batch arithmetic); default fast",
    )
    bench.add_argument(
        "--data-parallel",
        type=_arg(_positive_ints),
        metavar="N,...",
        help="with jax: time the rows spread over each of these numbers of devices of this "
        "process (jit only; CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N)",
    )
    bench.add_argument(
        "--workers",
        type=_arg(_positive_ints),
        metavar="N,...",
        help="with dask: time on a LocalCluster of each of these numbers of one-thread workers",
    )
    bench.add_argument(
        "--distributed",
        action="store_true",
        help="under torchrun: time the rows spread over the group's processes (one "
        "--backends: torch or jax); rank 0 writes",
    )
    _timeout_option(bench)
    bench.add_argument(
        "--scale-out",
        type=_arg(_positive_ints),
        metavar="N,...",
        help="time 1 vs 2 (these numbers of) replicas, each in processes of its own: jax "
        "devices and processes, torch ranks (torchrun), dask workers; into the same --out",
    )
    bench.add_argument("--epochs", type=int, help="epochs per timed run (default 10)")
    bench.add_argument("--repeat", type=int, help="timed runs per configuration (default 5)")
    bench.add_argument(
        "--out",
        default="xptrain-bench.jsonl",
        metavar="PATH",
        help="results, one JSON line per configuration, appended",
    )
    bench.add_argument("--resume", action="store_true", help="skip configurations already in --out")
    bench.add_argument("--plot", metavar="PATH", help="draw time per epoch and speedup vs N")
    bench.add_argument(
        "--quick",
        action="store_true",
        help="a smoke test: by default one small size (4096x32), 5 epochs, 3 repeats",
    )
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(run=run_bench)

    experiment = sub.add_parser(
        "run",
        help="run an experiment file on several backends and compare them",
        description="Run the experiment a TOML file describes (data, model, optimizer, epochs, "
        "and the backends × devices × dtypes to run it on) into one folder: each run's "
        "history (runs/*.json, written as each finishes), the agreement table against the "
        "float64 NumPy run (agreement.txt, agreement.json) and plots. Exit code 0 when every "
        "run agrees, 1 when any does not, 2 for bad input.",
    )
    experiment.add_argument("file", metavar="EXPERIMENT.toml")
    experiment.add_argument(
        "--out", metavar="DIR", help="the results folder (default: the experiment's name)"
    )
    experiment.add_argument(
        "--resume", action="store_true", help="finish an interrupted run of the same file in --out"
    )
    experiment.add_argument("--quiet", action="store_true", help="no progress bar")
    experiment.set_defaults(run=run_experiment)

    listing = sub.add_parser("backends", help="list backends, their versions and devices")
    listing.set_defaults(run=run_backends)
    return parser


def _timeout_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--distributed-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="seconds to wait for the other processes to join (torch: and at every "
        "collective; default 120)",
    )


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises InvalidInput: its message, not argparse's."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except InvalidInput as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _positive_ints(text: str) -> tuple[int, ...]:
    """``64,32`` as whole numbers ≥ 1 (hidden layer sizes, sweep dimensions)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise InvalidInput(f"{text!r}: give whole numbers, e.g. 64,32") from None
    if min(values) < 1:
        raise InvalidInput(f"{text!r}: every value must be ≥ 1")
    return values


def _hidden(args: argparse.Namespace) -> tuple[int, ...]:
    """The hidden layers ``train`` asks for: none for the seed's model, 16 by default for mlp."""
    if args.model == "logistic":
        if args.hidden is not None or args.activation != "sigmoid":
            raise InvalidInput("--hidden and --activation need --model mlp")
        return ()
    return args.hidden or (16,)


def _listed(values: list[str] | None, option: str) -> list[str] | None:
    """A list option's names, commas or spaces between them (``--backends numpy,torch`` or
    ``--backends numpy torch``, given once or repeated), each once; None when not given."""
    if values is None:
        return None
    names = list(
        dict.fromkeys(v.strip() for value in values for v in value.split(",") if v.strip())
    )
    if not names:
        raise InvalidInput(f"{option} needs at least one name")
    return names


def run_train(args: argparse.Namespace) -> int:
    """``xptrain train``: check everything, train, then write the outputs together."""
    options = Options(
        dtype=args.dtype,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        jit=args.jit,
        grad=args.grad,
        optimizer=args.optimizer,
        hidden=_hidden(args),
        activation=args.activation,
        batch_size=args.batch_size,
        loss=args.loss,
        val_split=args.val_split,
        exact=args.exact,
        block=args.block_rows,
        standardize=args.standardize,
        data_parallel=args.data_parallel,
        distributed=args.distributed,
    )
    _check_outputs(args)
    start, save = _checkpointing(args)
    if args.distributed:  # before the backend's first use: JAX joins before computing
        group = backends.process_group(args.backend, args.distributed_timeout)
        with group as joined:  # rank 0 prints and writes; the ranks step alike (fit's lockstep)
            main = joined.rank == 0
            return _train_and_write(args, options, start, save if main else None, main=main)
    return _train_and_write(args, options, start, save, main=True)


def _train_and_write(
    args: argparse.Namespace,
    options: Options,
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
    if not args.scheduler_timeout > 0:
        raise InvalidInput(f"--scheduler-timeout must be > 0, got {args.scheduler_timeout}")
    device = bk.resolve_device(args.device)
    problem = load(args.data)
    cluster = (
        bk.scheduler(args.scheduler, args.scheduler_timeout)
        if args.scheduler is not None
        else contextlib.nullcontext()
    )
    printer = (
        _epoch_printer(args, start.epoch if start else 0) if main else contextlib.nullcontext()
    )
    with cluster, printer as on_epoch:
        result = train_problem(
            problem,
            bk,
            device,
            options,
            on_epoch=on_epoch,
            start=start,
            checkpoint_every=args.checkpoint_every,
            on_checkpoint=save,
        )
    if not main:
        return 0
    outputs = []
    if args.json is not None:
        record = {
            **result.to_dict(),
            "data": str(args.data),
            "standardize": args.standardize,
            "seed": args.seed,
        }
        outputs.append((args.json, json_writer(record)))
    if args.plot is not None:
        from .plot import figure_writer, loss_figure

        outputs.append((args.plot, figure_writer(loss_figure(result.losses, _title(result)))))
    write_all(outputs)
    return 0


def _checkpointing(
    args: argparse.Namespace,
) -> tuple[checkpoint.Checkpoint | None, Callable[[checkpoint.Checkpoint], None] | None]:
    """The checkpoint to resume from (if any) and the function that saves new ones."""
    if args.checkpoint_dir is None:
        if args.resume or args.checkpoint_every is not None:
            raise InvalidInput("--resume and --checkpoint-every need --checkpoint-dir DIR")
        return None, None
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise InvalidInput(f"--checkpoint-every must be ≥ 1, got {args.checkpoint_every}")
    directory = check_output_dir(args.checkpoint_dir, "--checkpoint-dir")
    latest = checkpoint.latest(directory) if directory.is_dir() else None
    if latest is not None and not args.resume:
        raise InvalidInput(
            f"--checkpoint-dir {str(directory)!r} already holds another run's checkpoints; "
            "add --resume to continue it, or give an empty folder"
        )
    # a group's other ranks read the same (shared) folder; rank 0 alone says what it found
    if (
        latest is None
        and args.resume
        and not (args.distributed and os.environ.get("RANK", "0") != "0")
    ):
        print(
            f"xptrain train: no checkpoint in {str(directory)!r} yet; starting from epoch 0",
            file=sys.stderr,
        )
    start = checkpoint.load(latest) if latest is not None else None

    def save(ckpt: checkpoint.Checkpoint) -> None:
        directory.mkdir(exist_ok=True)
        checkpoint.save(checkpoint.path_for(directory, ckpt.epoch), ckpt)

    return start, save


@contextlib.contextmanager
def _epoch_printer(args: argparse.Namespace, first: int) -> Iterator[EpochCallback | None]:
    """The seed's line per epoch on stdout and, when stderr is a terminal, a progress bar with
    the live loss under them; nothing at all with --quiet."""
    if args.quiet:
        yield None
        return
    bar = progress(None, "xptrain train", unit="epoch", total=args.epochs, initial=first)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        # 12 significant digits: how the seed's Python printed its floats.
        loss = metrics["loss"]
        line = f"Epoch: {epoch} Loss: {loss:.12g}"
        if "val_loss" in metrics:
            line += (
                f" Val loss: {metrics['val_loss']:.12g} Val accuracy: {metrics['val_accuracy']:.4f}"
            )
        try:
            if bar.disable:
                print(line)
            else:
                bar.write(line, file=sys.stdout)
        except BrokenPipeError:  # `xptrain train --json r.json | head`: the run goes on
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        bar.set_postfix_str(f"loss {loss:.6g}", refresh=False)
        bar.update(1)

    try:
        yield on_epoch
    finally:
        bar.close()


def _title(result: TrainResult) -> str:
    mode = ("jit" if result.jit else "eager") + f", {result.grad}"
    return f"{result.backend} on {result.device} ({result.dtype}, {mode})"


def run_check(args: argparse.Namespace) -> int:
    """``xptrain check``: the agreement table; exit 1 with a one-line summary on any failure."""
    _check_outputs(args)
    if args.data_parallel is not None and args.data_parallel < 1:
        raise InvalidInput(f"--data-parallel must be ≥ 1 devices, got {args.data_parallel}")
    if args.scale_out and (args.distributed or args.data_parallel is not None):
        raise InvalidInput("--scale-out launches its own data-parallel checks: give it alone")
    devices = _listed(args.devices, "--devices")
    if args.scale_out and devices and set(devices) != {"cpu"}:
        raise InvalidInput("--scale-out runs on this machine's CPU: drop --devices, or it")
    if not args.distributed:
        return _check_and_report(args, processes=None, main=True)
    named = _listed(args.backends, "--backends") or []
    if len(named) != 1:
        raise InvalidInput("--distributed checks one backend: give --backends torch or jax")
    with backends.process_group(named[0], args.distributed_timeout) as joined:
        return _check_and_report(args, processes=joined.size, main=joined.rank == 0)


def _check_and_report(args: argparse.Namespace, *, processes: int | None, main: bool) -> int:
    """Plan and run the check (every process of a group runs every configuration, in the same
    order); ``main`` prints the table and writes the outputs."""
    from . import check

    configs, skipped = check.plan(
        _listed(args.problems, "--problems"),
        _listed(args.backends, "--backends"),
        _listed(args.devices, "--devices"),
        _listed(args.dtypes, "--dtypes"),
        args.data_parallel,
        processes,
    )
    report = check.run(configs, skipped, progress_bar=not args.quiet and main)
    if args.scale_out:
        with tempfile.TemporaryDirectory(prefix="xptrain-scale-out-") as directory:
            check.scale_out(
                report,
                _listed(args.problems, "--problems"),
                [backends.canonical_name(n) for n in _listed(args.backends, "--backends") or []],
                _listed(args.dtypes, "--dtypes"),
                args.distributed_timeout,
                Path(directory),
            )
    elif processes is None and args.data_parallel is None:
        report.notes.append(
            "data-parallel runs (JAX devices and processes, torch ranks): not checked here; "
            "add --scale-out"
        )
    if not main:
        return 0 if report.passed else 1
    outputs = []
    if args.json is not None:
        outputs.append((args.json, json_writer(report.to_dict())))
    if args.plot is not None:
        from .plot import agreement_figure, figure_writer

        outputs.append((args.plot, figure_writer(agreement_figure(report))))
    write_all(outputs)  # before printing: a closed stdout must not lose the report
    print(check.format_table(report))
    line = check.summary(report)
    print(line)
    if not report.passed:
        print(f"xptrain check: {line}", file=sys.stderr)
        return 1
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable output paths (--json, --out, --plot) before any work."""
    files = {
        flag: getattr(args, flag.lstrip("-"))
        for flag in ("--json", "--out", "--plot")
        if getattr(args, flag.lstrip("-"), None) is not None
    }
    for flag, path in files.items():
        check_writable(path, flag)
    if len({os.path.realpath(path) for path in files.values()}) < len(files):
        raise InvalidInput(f"{' and '.join(files)} name the same file; give one each")
    if "--plot" in files:
        from .plot import check_plot_path

        check_plot_path(files["--plot"])


def run_bench(args: argparse.Namespace) -> int:
    """``xptrain bench``: time, append records as they come, then the table and crossover."""
    from . import bench

    defaults = bench.QUICK if args.quick else bench.DEFAULTS
    sizes = args.sizes or defaults["sizes"]
    epochs = defaults["epochs"] if args.epochs is None else args.epochs
    repeat = defaults["repeat"] if args.repeat is None else args.repeat
    if args.sweep:
        sizes = [(n, d) for d in args.dims for n in bench.SWEEP_N]
    _check_outputs(args)
    modes = _listed(args.modes, "--modes") or ["eager", "jit"]
    if set(modes) - {"eager", "jit"}:
        raise InvalidInput(f"unknown mode in {modes}; use eager and/or jit")
    paths = _listed(args.paths, "--paths") or ["fast"]
    spreads = {
        "devices": args.data_parallel,
        "workers": args.workers,
        "processes": () if args.distributed else None,  # the group's size, once joined
        "scale-out": args.scale_out,
    }
    chosen = [(kind, counts) for kind, counts in spreads.items() if counts is not None]
    if len(chosen) > 1:
        raise InvalidInput(
            "give one of --data-parallel, --workers, --distributed and --scale-out at a time"
        )
    spread, counts = chosen[0] if chosen else ("", (1,))
    # every plan of this run: sizes, dtype, epochs, modes, paths; backends and devices vary
    plan = functools.partial(
        bench.plan,
        dtype=args.dtype,
        sizes=sizes,
        epochs=epochs,
        repeat=repeat,
        modes=modes,
        paths=paths,
    )
    named = _listed(args.backends, "--backends")
    devices = _listed(args.devices, "--devices")
    if spread == "scale-out":
        if devices and set(devices) != {"cpu"}:
            raise InvalidInput("--scale-out runs on this machine's CPU: drop --devices")
        common = ["--dtype", args.dtype, "--epochs", str(epochs), "--repeat", str(repeat)]
        common += ["--sizes", ",".join(f"{n}x{d}" for n, d in sizes), "--out", args.out]
        common += ["--modes", *modes, "--paths", *paths, "--quiet"]
        common += ["--distributed-timeout", str(args.distributed_timeout)]
        common += ["--resume"] if args.resume else []
        ran, notes = bench.scale_out(counts, named, common)
        # the configurations the launched benches planned (a 1-process group included)
        configs = [c for name, how in ran for c in plan([name], ["cpu"], spread=how, counts=counts)]
        code = _bench_report(args, configs)
        for note in notes:
            print(f"xptrain bench: scale-out: {note}", file=sys.stderr)
        return 1 if notes else code
    if spread != "processes":
        return _bench(args, plan(named, devices, spread=spread, counts=counts), main=True)
    if len(named or []) != 1:
        raise InvalidInput("--distributed times one backend: give --backends torch or jax")
    with backends.process_group(named[0], args.distributed_timeout) as joined:
        configs = plan(named, devices, spread="processes", counts=(joined.size,))
        return _bench(args, configs, main=joined.rank == 0)


def _bench(args: argparse.Namespace, configs: list, *, main: bool) -> int:
    """Time ``configs`` into --out (``main``: this process writes and prints; the other
    processes of a group time alongside it, as their collectives need), then the table."""
    from . import bench

    interrupted = False
    try:
        bench.run(
            configs,
            Path(args.out),
            resume=args.resume,
            progress_bar=not args.quiet and main,
            write=main,
        )
    except KeyboardInterrupt:
        interrupted = True
    if not main:
        return 0
    return _bench_report(args, configs, interrupted)


def _bench_report(args: argparse.Namespace, configs: list, interrupted: bool = False) -> int:
    """The table of the records of ``configs`` in --out (and --plot)."""
    from . import bench

    out = Path(args.out)
    wanted = {c.key() for c in configs}
    records = [r for r in bench.load_records(out) if bench.record_key(r) in wanted]
    print(bench.format_table(records))
    if args.plot is not None and records:
        from .plot import bench_figure, figure_writer

        write_all([(args.plot, figure_writer(bench_figure(records)))])
    if interrupted:
        print(
            f"xptrain bench: interrupted; {len(records)} of {len(configs)} configurations are "
            f"in {out} (rerun with --resume to finish)",
            file=sys.stderr,
        )
        return 130
    return 0


def run_experiment(args: argparse.Namespace) -> int:
    """``xptrain run``: every run of an experiment file into one folder, then the table."""
    from . import check, experiment

    exp = experiment.read(args.file)
    folder = check_output_dir(args.out or exp.name, "--out")
    report = experiment.run(exp, folder, resume=args.resume, progress_bar=not args.quiet)
    table = check.format_table(report)
    document = {"experiment": exp.settings, "name": exp.name, **report.to_dict()}
    outputs = [
        (folder / "agreement.json", json_writer(document)),
        (folder / "agreement.txt", lambda tmp: Path(tmp).write_text(table + "\n", "utf-8")),
    ]
    try:
        from .plot import agreement_figure, figure_writer, history_figure

        runs = experiment.histories(folder, exp)
        outputs += [
            (folder / "losses.png", figure_writer(history_figure(runs, exp.name))),
            (folder / "agreement.png", figure_writer(agreement_figure(report))),
        ]
    except InvalidInput as err:  # no matplotlib: the results stand without their plots
        print(f"xptrain run: no plots: {err}", file=sys.stderr)
    write_all(outputs)
    print(table)
    line = check.summary(report)
    print(f"{line}\nresults in {folder}")
    if not report.passed:
        print(f"xptrain run: {line}", file=sys.stderr)
        return 1
    return 0


def run_backends(args: argparse.Namespace) -> int:
    """``xptrain backends``: one row per built-in backend, installed or not."""
    header = ("backend", "installed", "version", "devices", "float64", "jit", "autodiff", "spreads")
    rows = [header]
    for name in backends.SPECS:
        try:
            bk = backends.get(name)
        except BackendUnavailable as err:
            rows.append((name, f"no: {err}"))  # the reason runs on; it sets no width
            continue
        rows.append(
            (
                name,
                "yes",
                bk.version,
                ", ".join(bk.devices()),
                bk.caps.float64,
                _yes(bk.caps.jit),
                _yes(bk.caps.autodiff),
                ", ".join(bk.caps.spreads) or "-",  # data-parallel: devices, processes, workers
            )
        )
    print("\n".join(align(rows)))
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
    except BrokenPipeError:  # `xptrain backends | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except MemoryError:
        print(
            f"xptrain {args.command}: error: out of memory; try a smaller problem or model",
            file=sys.stderr,
        )
        return 2
    except OSError as err:  # a full disk, a vanished folder: one line, and no partial file
        where = f" ({err.filename})" if err.filename else ""
        print(f"xptrain {args.command}: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
