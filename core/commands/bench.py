"""``xptrain bench``: seconds per epoch on each backend × device × size, against a bound;
records appended to --out as they come, then the table and the CPU/GPU crossover."""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

from .. import backends, bench, bench_compare, bench_table, matrix
from ..errors import InvalidInput
from ..files import write_all
from ..options import key_value, positive_ints
from ..plot import bench_figure, figure_writer
from .common import add_list, add_timeout, arg, check_outputs, listed

DESCRIPTION = (
    "Time the same problem (linear:N,D, made once on the host) on each backend × device × "
    "mode × size. Each record is appended to --out as one JSON line as soon as it is measured."
)
# how a run spreads its rows, by the option that asks for it
_SPREAD_FLAGS = ("--data-parallel", "--workers", "--distributed", "--scale-out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench``'s options: what to time, how long, how to spread, the outputs."""
    add_list(parser, "--backends", "NAME", "default: every built-in backend that starts here")
    add_list(parser, "--devices", "DEV", "cpu, cuda (every GPU) or cuda:N (default: all)")
    parser.add_argument("--dtype", default="float32", choices=backends.DTYPES)
    parser.add_argument(
        "--sizes", type=arg(bench.parse_sizes), metavar="NxD,...", help="problem sizes "
        "(default 65536x64)",
    )  # fmt: skip
    parser.add_argument(
        "--sweep", action="store_true",
        help=f"N = {', '.join(map(str, bench.SWEEP_N))} for each D in --dims",
    )  # fmt: skip
    parser.add_argument(
        "--dims", type=arg(positive_ints), default=(64,), metavar="D,...",
        help="the D values of --sweep (default 64)",
    )  # fmt: skip
    add_list(parser, "--modes", "MODE", "eager, jit (default both; jit where the backend has it)")
    add_list(
        parser,
        "--paths",
        "PATH",
        "fast (what train chooses: the one-pass gradient on the CPU where it wins) and/or "
        "exact (the seed's full-batch arithmetic); default fast",
    )
    parser.add_argument(
        "--model", default="logistic", metavar="MODEL",
        help="logistic (default), mlp, or your own FILE.py:NAME (importing it runs it)",
    )  # fmt: skip
    parser.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE",
        help="an argument for your model's class, VALUE a TOML value (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--loss", default="bce", help="bce (default), bce-logits, softmax-ce or mse (the data: "
        "linear:N,D's 0/1 labels, also read as 2 classes or as targets)",
    )  # fmt: skip
    _spread_options(parser)
    parser.add_argument("--epochs", type=int, help="epochs per timed run (default 10)")
    parser.add_argument("--repeat", type=int, help="timed runs per configuration (default 5)")
    parser.add_argument(
        "--out", metavar="PATH",
        help="keep the results: one JSON line per configuration, appended as it is measured, "
        "each with the run's run_id (default: none kept)",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true", help="skip configurations already in --out"
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("A", "B"),
        help="compare two saved runs (results files, or run ids in --out): B/A per "
        "configuration with its min-max spread; times nothing",
    )  # fmt: skip
    parser.add_argument("--plot", metavar="PATH", help="draw time per epoch and speedup vs N")
    parser.add_argument(
        "--quick", action="store_true",
        help="a smoke test: by default one small size (4096x32), 5 epochs, 3 repeats",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _spread_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-parallel", type=arg(positive_ints), metavar="N,...",
        help="with jax: time the rows spread over each of these numbers of devices of this "
        "process (jit only; CPU devices: XLA_FLAGS=--xla_force_host_platform_device_count=N)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=arg(positive_ints), metavar="N,...",
        help="with dask: time on a LocalCluster of each of these numbers of one-thread workers",
    )  # fmt: skip
    parser.add_argument(
        "--distributed", action="store_true",
        help="under torchrun: time the rows spread over the group's processes (one "
        "--backends: torch or jax); rank 0 writes",
    )  # fmt: skip
    add_timeout(parser)
    parser.add_argument(
        "--scale-out", type=arg(positive_ints), metavar="N,...",
        help="time 1 vs 2 (these numbers of) replicas, each in processes of its own: jax "
        "devices and processes, torch ranks (torchrun), dask workers; into the same --out",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Time, append records as they come, then the table and crossover (or --compare)."""
    check_outputs(args)
    if args.compare is not None:
        a, b = (bench_compare.records_of(spec, args.out) for spec in args.compare)
        print(bench_compare.compare_table(a, b))
        return 0
    if args.resume and args.out is None:
        raise InvalidInput("--resume needs --out: the file of the run to finish")
    if args.out is not None:
        return _timed(args)
    with tempfile.TemporaryDirectory(prefix="xptrain-bench-") as folder:
        args.out = str(Path(folder) / "bench.jsonl")  # this run's records, for its table only
        return _timed(args)


def _timed(args: argparse.Namespace) -> int:
    """Plan, time into --out, report."""
    plan = _planner(args)
    spread, counts = _spread(args)
    named, devices = listed(args.backends, "--backends"), listed(args.devices, "--devices")
    if spread == "scale-out":
        return _scale_out(args, plan, counts, named, devices)
    if spread != "processes":
        configs = plan(named, devices, spread=spread, counts=counts)
        started, unavailable = matrix.select_backends(named)
        for note in matrix.devices_missing(started, devices or (), unavailable):
            print(f"xptrain bench: skipped: {note}", file=sys.stderr)
        return _bench(args, configs, main=True)
    if len(named or []) != 1:
        raise InvalidInput("--distributed times one backend: give --backends torch or jax")
    with backends.process_group(named[0], args.distributed_timeout) as joined:
        configs = plan(named, devices, spread="processes", counts=(joined.size,))
        return _bench(args, configs, main=joined.rank == 0)


def _planner(args: argparse.Namespace) -> functools.partial:
    """``bench.plan`` with what every plan of this run shares (sizes, dtype, epochs, modes,
    paths); the backends, devices and spread vary."""
    defaults = bench.QUICK if args.quick else bench.DEFAULTS
    sizes = _sweep(args.dims) if args.sweep else args.sizes
    modes = listed(args.modes, "--modes") or ["eager", "jit"]
    if set(modes) - {"eager", "jit"}:
        raise InvalidInput(f"unknown mode in {modes}; use eager and/or jit")
    return functools.partial(
        bench.plan,
        dtype=args.dtype,
        sizes=sizes or defaults["sizes"],
        epochs=defaults["epochs"] if args.epochs is None else args.epochs,
        repeat=defaults["repeat"] if args.repeat is None else args.repeat,
        modes=modes,
        paths=listed(args.paths, "--paths") or ["fast"],
        model=args.model,
        model_args=tuple(key_value(text) for text in args.model_arg),
        loss=args.loss,
    )


def _sweep(dims: tuple[int, ...]) -> list[tuple[int, int]]:
    """--sweep's sizes: every N of the sweep for each D."""
    return [(n, d) for d in dims for n in bench.SWEEP_N]


def _spread(args: argparse.Namespace) -> tuple[str, tuple[int, ...]]:
    """How the rows are spread ("" for one device, "devices", "workers", "processes",
    "scale-out") and over how many replicas; one way at a time."""
    spreads = {
        "devices": args.data_parallel,
        "workers": args.workers,
        "processes": () if args.distributed else None,  # the group's size, once joined
        "scale-out": args.scale_out,
    }
    chosen = [(kind, counts) for kind, counts in spreads.items() if counts is not None]
    if len(chosen) > 1:
        raise InvalidInput(f"give one of {', '.join(_SPREAD_FLAGS)} at a time")
    return chosen[0] if chosen else ("", (1,))


def _passed_on(args: argparse.Namespace, p: dict) -> list[str]:
    """The options every launched bench of a scale-out is given: this bench's own."""
    common = ["--dtype", args.dtype, "--epochs", str(p["epochs"]), "--repeat", str(p["repeat"])]
    common += ["--sizes", ",".join(f"{n}x{d}" for n, d in p["sizes"]), "--out", args.out]
    common += ["--modes", *p["modes"], "--paths", *p["paths"], "--quiet"]
    common += ["--distributed-timeout", str(args.distributed_timeout)]
    common += ["--resume"] if args.resume else []
    common += ["--model", args.model, "--loss", args.loss]
    return common + [word for text in args.model_arg for word in ("--model-arg", text)]


def _scale_out(
    args: argparse.Namespace,
    plan: functools.partial,
    counts: tuple[int, ...],
    named: list[str] | None,
    devices: list[str] | None,
) -> int:
    """Each spread timed in processes of its own, into the same --out, then the table."""
    if devices and set(devices) != {"cpu"}:
        raise InvalidInput("--scale-out runs on this machine's CPU: drop --devices")
    ran, notes = bench.scale_out(counts, named, _passed_on(args, plan.keywords))
    # the configurations the launched benches planned (a 1-process group included)
    configs = [c for name, how in ran for c in plan([name], ["cpu"], spread=how, counts=counts)]
    code = _report(args, configs)
    for note in notes:
        print(f"xptrain bench: scale-out: {note}", file=sys.stderr)
    return 1 if notes else code


def _bench(args: argparse.Namespace, configs: list, *, main: bool) -> int:
    """Time ``configs`` into --out (``main``: this process writes and prints; the other
    processes of a group time alongside it, as their collectives need), then the table."""
    interrupted = False
    try:
        bench.run(
            configs,
            Path(args.out),
            resume=args.resume,
            progress_bar=not args.quiet and main,
            write=main,
            run_id=bench.new_run_id(),
        )
    except KeyboardInterrupt:
        interrupted = True
    if not main:
        return 0
    return _report(args, configs, interrupted)


def _report(args: argparse.Namespace, configs: list, interrupted: bool = False) -> int:
    """The table of ``configs``' records in --out, each one's latest (and --plot)."""
    out = Path(args.out)
    wanted = {c.key() for c in configs}
    latest = bench_compare.latest(bench.load_records(out))
    records = [r for key, r in latest.items() if key in wanted]
    print(bench_table.format_table(records))
    if args.plot is not None and records:
        figure = bench_figure(records, bench_table.best_cpu_times(records))
        write_all([(args.plot, figure_writer(figure))])
    if interrupted:
        print(
            f"xptrain bench: interrupted; {len(records)} of {len(configs)} configurations are "
            f"in {out} (rerun with --resume to finish)",
            file=sys.stderr,
        )
        return 130
    return 0
