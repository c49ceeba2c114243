"""``xptrain bench``: seconds per epoch of the same problem on each backend × device × size, with
the device's read bandwidth measured in the same run as the bound to compare against.

Honest timing: every timed region ends with the backend's sync; moving the data to the device
(``transfer_s``) and the first run's extra time over the steady state (``compile_s``:
compilation for jit, first-call overhead for eager) are reported apart from the steady state,
which follows one more untimed run and is ``repeat`` runs of ``epochs`` epochs (median, min and
max per epoch), each run as ``xptrain train`` does it (JAX jit: one compiled call). ``path``
``fast`` is what ``train`` chooses (the one-pass blocked gradient on the CPU where it wins;
``block`` records its rows), ``exact`` the seed's full-batch arithmetic. The bound
(:func:`memory_bound`): the fastest real read of X from the device's main memory, ``sum(X)`` by
each eager library that reads (NumPy and torch on the CPU; CuPy and torch on a GPU), each
figure kept, one faster than the device's STREAM copy refused; none where X fits in the
last-level cache (``in_cache``). ``ratio_to_bound`` is how close an epoch comes to one pass
over X at that speed. Each record also carries its device's ``stream`` line (copy, triad).

Long sweeps lose nothing: each record is appended to the output file as one JSON line, flushed,
as soon as its configuration finishes; ``--resume`` skips configurations already in the file;
out-of-memory and failures are recorded with their status and the sweep goes on; Ctrl-C keeps
what finished.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import platform
import secrets
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import backends, launch, matrix
from .backends.threads import cores
from .data import Problem, linear
from .errors import InvalidInput, XptrainError
from .grad import cache_bytes
from .loss import get as get_loss
from .model_setup import starting_params
from .options import Options
from .placement import place
from .runinfo import versions
from .steps import model_of
from .terminal import progress

LR = 0.1  # small enough that no size of linear:N,D saturates the seed's BCE in float32
DEFAULTS = {"sizes": [(65536, 64)], "epochs": 10, "repeat": 5}
QUICK = {"sizes": [(4096, 32)], "epochs": 5, "repeat": 3}
SWEEP_N = [2**k for k in range(10, 21, 2)]  # 1k ... 1M rows, log-spaced
SPREADS = ("", "devices", "processes", "workers")


@dataclass(frozen=True)
class BenchConfig:
    """One timed configuration."""

    backend: str
    device: str
    dtype: str
    mode: str  # "eager" or "jit"
    grad: str
    n: int
    d: int
    epochs: int
    repeat: int
    path: str = "fast"  # "fast": what train chooses (one-pass on the CPU); "exact": the seed's
    # Data-parallel: the rows spread over `replicas` "devices" (JAX, one process), "processes"
    # (a torchrun group: torch ranks, JAX processes) or "workers" (a dask LocalCluster).
    spread: str = ""
    replicas: int = 1
    model: str = "logistic"  # logistic, mlp, or a user's FILE.py:NAME / package.module:NAME
    model_args: str = ""  # its class's arguments, as a JSON object ("" for none)
    loss: str = "bce"

    def key(self) -> tuple:
        """What makes two records the same configuration (for ``--resume``)."""
        return tuple(asdict(self).values())


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1000x64,4096x32"`` → [(1000, 64), (4096, 32)]."""
    sizes = []
    for item in text.split(","):
        n, _, d = item.strip().lower().partition("x")
        try:
            size = (int(n), int(d))
        except ValueError:
            raise InvalidInput(f"size {item.strip()!r}: write NxD, e.g. 65536x64") from None
        if min(size) < 1:
            raise InvalidInput(f"size {item.strip()!r}: N and D must be ≥ 1")
        sizes.append(size)
    return sizes


def bench_problem(n: int, d: int) -> Problem:
    """The benchmark data: ``linear:N,D`` (seed 0), with the seed's initial weights scaled by
    1/√D so that no logit saturates the seed's BCE however large D is."""
    problem = linear(f"{n},{d}")
    W = 2 * np.random.RandomState(1).random_sample((d, 1)) - 1
    return Problem(problem.X, problem.y, W / math.sqrt(d), 0.0)


def plan(
    backend_names: Sequence[str] | None,
    devices: Sequence[str] | None,
    dtype: str,
    sizes: Sequence[tuple[int, int]],
    epochs: int,
    repeat: int,
    modes: Sequence[str] = ("eager", "jit"),
    grad: str = "analytic",
    paths: Sequence[str] = ("fast",),
    spread: str = "",
    counts: Sequence[int] = (1,),
    model: str = "logistic",
    model_args: tuple = (),
    loss: str = "bce",
) -> list[BenchConfig]:
    """Every backend × device × mode × size to time (jit only where the backend has it), with
    the rows spread over each of ``counts`` replicas of kind ``spread`` (see BenchConfig)."""
    matrix.check_dtypes([dtype])
    if epochs < 1 or repeat < 1:
        raise InvalidInput("--epochs and --repeat must be ≥ 1")
    # as the backends declare their spreads: this plan is also made before a launch; `grad` is
    # every run's, not an axis of the matrix (a backend without it records its refusal)
    how = matrix.Spread(spread) if spread else None
    cells, _ = matrix.plan(backend_names, devices, [dtype], ["analytic"], modes, spread=how)
    _check_paths(paths, spread)
    counts = counts if spread else (1,)
    own = _model_fields(model, model_args, loss)
    configs = [
        BenchConfig(
            c.backend.name,
            c.device,
            dtype,
            c.mode,
            grad,
            n,
            d,
            epochs,
            repeat,
            path,
            spread,
            k,
            **own,
        )
        for (n, d), c, path, k in itertools.product(sizes, cells, paths, counts)
    ]
    if not configs and spread:
        raise InvalidInput(f"nothing to benchmark: none of these backends spreads over {spread}")
    if not configs:
        raise InvalidInput("nothing to benchmark: no backend, device and size left to combine")
    return configs


def _model_fields(model: str, model_args: tuple, loss: str) -> dict[str, str]:
    """A configuration's model, its arguments and loss, checked now (before anything runs)."""
    options = Options(model=model, model_args=model_args, loss=loss)
    model_of(options)  # a file that is not there, or a class refusing its arguments
    args = json.dumps(options.to_json()["model_args"], sort_keys=True) if model_args else ""
    return {"model": options.to_json()["model"], "model_args": args, "loss": loss}


def _check_paths(paths: Sequence[str], spread: str) -> None:
    """Refuse an unknown path or spread, and the exact path spread."""
    wrong = set(paths) - {"fast", "exact"}
    if wrong:
        raise InvalidInput(f"unknown path {sorted(wrong)[0]!r}; use fast and/or exact")
    if spread not in SPREADS:
        raise InvalidInput(f"unknown spread {spread!r}; one of {', '.join(SPREADS)}")
    if spread and "exact" in paths:
        raise InvalidInput(
            "--paths exact is the seed's single-device arithmetic: data-parallel runs take the "
            "fast path only"
        )


def _timed(fn: Callable[[], Any], sync: Callable[[Any], None]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    sync(out)
    return time.perf_counter() - start, out


def read_rate(bk: backends.Backend, X: Any, repeat: int = 3) -> float:
    """Bytes of X per second for the fastest of a few ``sum(X)`` reductions (after one warm-up).
    Each sum is brought to the host: a lazy library (dask) computes it only then — timed
    without that, the "read" was the graph's construction (137-187 GB/s on 2 cores)."""

    def read() -> Any:
        return bk.to_numpy(bk.xp.sum(X))

    _timed(read, lambda _: None)
    best = min(_timed(read, lambda _: None)[0] for _ in range(repeat))
    return math.prod(X.shape) * bk.xp.finfo(X.dtype).bits // 8 / best


def _options(config: BenchConfig) -> Options:
    """The run options a configuration times."""
    return Options(
        model=config.model,
        model_args=json.loads(config.model_args) if config.model_args else (),
        loss=config.loss,
        dtype=config.dtype,
        lr=LR,
        jit=config.mode == "jit",
        grad=config.grad,
        exact=config.path == "exact",
        data_parallel=config.replicas if config.spread == "devices" else None,
        distributed=config.spread == "processes",
    )


def measure(config: BenchConfig, problem: Problem) -> dict[str, Any]:
    """Time one configuration; the record's metrics (no status)."""
    bk = backends.get(config.backend)
    options = _options(config)
    replicas = None
    if config.spread in ("devices", "processes"):
        replicas = bk.replicas(options.data_parallel or 1, options.distributed, config.device)
    params = [problem.W, np.zeros((1, 1))]
    if config.model != "logistic":  # another model starts from its own init
        d_out = get_loss(config.loss).outputs(problem.y)
        rows = Problem(problem.X, problem.y)  # the data's W is the logistic model's
        params = starting_params(model_of(options), rows, d_out, options.seed)
        problem = Problem(problem.X, get_loss(config.loss).targets(problem.y, d_out))
    with _workers(bk, config), bk.float_scope(config.dtype):
        transfer_s, run = _timed(
            lambda: place(problem, bk, config.device, options, params, replicas=replicas),
            lambda _: None,
        )  # place waits for the transfer

        def epochs() -> tuple[Any, Any]:
            return run.fit(run.carry, epochs=config.epochs)  # ends with a host transfer

        def timed() -> float:
            return _timed(epochs, lambda out: bk.sync(out[0][0][0]))[0]

        first_s = timed()  # compiles, warms up
        timed()
        per_run = [timed() for _ in range(config.repeat)]
        own_gbps = read_rate(bk, run.X) / 1e9 if replicas is None else None
        about = {
            "precision": bk.precision(config.dtype),
            "versions": versions(bk),
            "threads": bk.threads(),
            "device_name": bk.device_name(config.device),
        }
    per_epoch = [seconds / config.epochs for seconds in per_run]
    epoch_s = statistics.median(per_epoch)
    itemsize = backends.itemsize(config.dtype)
    nbytes = config.n * config.d * itemsize  # all of X
    spread = {"replicas_record": None, "allreduce_bytes": None}
    if replicas is not None:
        # what one all-reduce adds each epoch: the loss and every gradient, one buffer
        allreduce = (1 + sum(p.size for p in params)) * itemsize
        spread = {"replicas_record": replicas.record(), "allreduce_bytes": allreduce}
    return {
        "transfer_s": transfer_s - run.path.seconds,  # place measures the path: apart
        "path_choice_s": run.path.seconds,
        "compile_s": max(0.0, first_s - statistics.median(per_run)),  # the first run's extra
        "block": run.block,
        "path_chosen": run.path.why,
        "epoch_s": epoch_s,
        "epoch_s_min": min(per_epoch),
        "epoch_s_max": max(per_epoch),
        "samples_per_s": config.n / epoch_s,
        "bytes_per_epoch": nbytes,
        "gbps": nbytes / epoch_s / 1e9,
        "own_read_gbps": own_gbps,
        **spread,
        **about,
    }


@contextlib.contextmanager
def _workers(bk: backends.Backend, config: BenchConfig) -> Iterator[None]:
    """For a "workers" configuration: a dask LocalCluster of that many one-thread worker
    processes, computed on inside; nothing otherwise."""
    if config.spread != "workers":
        yield
        return
    from distributed import LocalCluster

    with (
        LocalCluster(
            n_workers=config.replicas,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        bk.scheduler(cluster),
    ):
        yield


def _status(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".splitlines()[0][:300]
    lowered = text.lower()
    if (
        isinstance(err, MemoryError)
        or "out of memory" in lowered
        or "resource_exhausted" in lowered
    ):
        return "oom"
    return f"error: {text}"


def record_key(record: dict[str, Any]) -> tuple | None:
    """The configuration a record is of (None for a line that is not a record)."""
    try:
        return tuple({**_OLD_DEFAULTS, **record}[k] for k in BenchConfig.__dataclass_fields__)
    except (KeyError, TypeError):
        return None


# Records written before `path` existed timed the seed's full-batch epoch: they are "exact";
# before `spread`, every run was on one device.
_OLD_DEFAULTS = {"path": "exact", "spread": "", "replicas": 1}
_OLD_DEFAULTS |= {"model": "logistic", "model_args": "", "loss": "bce"}


def load_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record in a results file; a line that does not parse is skipped (a run
    killed mid-write leaves at most one), and so is one of bytes that are not UTF-8 (read as
    bytes, each line decoded by json.loads: a UnicodeDecodeError is a ValueError)."""
    records = []
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record_key(record) is not None:
                    records.append(record)
    return records


def run(
    configs: Iterable[BenchConfig],
    out: Path,
    resume: bool = False,
    progress_bar: bool = True,
    write: bool = True,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    """Time every configuration not already in ``out`` (with ``resume``), appending each record
    as it completes, marked with ``run_id`` (default a new one, :func:`new_run_id`) and the
    run's start. Returns the records of this run. Without ``write`` nothing is written:
    the other processes of a group time alongside the one that writes (their collectives
    need them), the same configurations in the same order."""
    skip = {record_key(r) for r in load_records(out)} if resume else set()
    todo = [c for c in configs if c.key() not in skip]
    written: list[dict[str, Any]] = []
    bounds: dict[Any, dict[str, Any]] = {}  # per device: its stream; per size: its bound
    data: dict[tuple[int, int], Problem] = {}
    bar = progress(todo, "xptrain bench", progress_bar)
    run = {"run_id": run_id or new_run_id(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with open(out, "a+", encoding="utf-8") if write else contextlib.nullcontext() as f:
        if f is not None:
            _start_line(f)
        for config in bar:
            bar.set_postfix_str(
                f"{config.backend}/{config.device} {config.mode} {config.n}x{config.d}",
                refresh=False,
            )
            size = (config.n, config.d)
            if size not in data:
                data = {size: bench_problem(*size)}  # one size in memory at a time
            record = {**_record(config, data[size]), **run}
            _attach_bound(record, bounds, config, data[size])
            _append(f, record)
            written.append(record)
    return written


def _append(f: Any, record: dict[str, Any]) -> None:
    """One record as one line, on disk before the next is timed (None: not written)."""
    if f is not None:
        f.write(json.dumps(record, allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def new_run_id() -> str:
    """An id for one bench run: its start time and a random suffix (two runs started in the
    same second differ)."""
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)


def _record(config: BenchConfig, problem: Problem) -> dict[str, Any]:
    """One configuration's record: what it is, where and when, and its timings or why not."""
    record = {
        **asdict(config),
        "lr": LR,
        "host": platform.node(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        record |= measure(config, problem)
        record["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as err:  # recorded, and the sweep goes on
        if config.spread == "processes" and not isinstance(err, XptrainError):
            raise  # a process group out of step (a lost rank): the rest would wait
        record["status"] = _status(err)
    return record


def _start_line(f: Any) -> None:
    """Append from the start of a line: a run killed mid-write leaves an unfinished one."""
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:
        f.seek(f.tell() - 1)
        if f.read(1) != "\n":
            f.write("\n")


def scale_out(
    counts: Sequence[int],
    backend_names: Sequence[str] | None,
    common: Sequence[str],
) -> tuple[list[tuple[str, str]], list[str]]:
    """Time every configuration on 1, 2, ... (``counts``) replicas of each engine of
    ``launch.SCALE_OUT``: JAX over emulated CPU devices and over processes, torch over gloo
    ranks (under torchrun), dask over LocalCluster workers; each an ``xptrain bench`` of its
    own, with ``common`` options (sizes, dtype, out, ...) so every record lands in the same
    file. Returns the (backend, spread) pairs that ran, and a note for each that could not."""
    ran, notes = [], []
    every = [engine.backend for engine in launch.SCALE_OUT]
    wanted = {backends.canonical_name(n) for n in backend_names or every}
    for engine in launch.SCALE_OUT:
        name, spread = engine.backend, engine.spread
        if name not in wanted:
            continue
        reason = launch.unavailable(name, spread)
        if reason is not None:
            notes.append(f"{name} over {spread}: {reason}")
            continue
        args = ["bench", "--backends", name, "--devices", "cpu", *common]
        launched = [each.run([*args, *each.options]) for each in engine.launches(counts)]
        notes += [f"{name} over {spread}: {launch.failure(d)}" for d in launched if d.returncode]
        ran.append((name, spread))
    return ran, notes


def _attach_bound(
    record: dict[str, Any],
    bounds: dict,
    config: BenchConfig,
    problem: Problem,
) -> None:
    """The device's memory bound for this size (:func:`memory_bound`, measured once per
    device, size and dtype) and its ``stream`` line (once per device), into the record;
    ``ratio_to_bound`` where a bound was claimed."""
    if config.spread:  # several processes or workers share the machine: no one-device bound
        record["bound_gbps"] = record["bound_by"] = record["ratio_to_bound"] = None
        return
    if config.device not in bounds:
        bounds[config.device] = device_stream(config.device)
    key = (config.device, config.n, config.d, config.dtype)
    if key not in bounds:
        bounds[key] = memory_bound(config.device, problem.X, config.dtype, bounds[config.device])
    bound = bounds[key]
    record["bound"], record["stream"] = bound, bounds[config.device]
    record["bound_gbps"], record["bound_by"] = bound["bound_gbps"], bound["bound_by"]
    ok = record.get("status") == "ok" and record["bound_gbps"]
    record["ratio_to_bound"] = record["gbps"] / record["bound_gbps"] if ok else None


# -- the memory bound: a real read of X from main memory ------------------------------------------

# The eager libraries whose sum(X) reads every byte of X when asked, per kind of device. Lazy or
# caching ones (dask: a graph, computed by a pool that may keep chunks) never bound anything.
READERS = {"cpu": ("numpy", "torch"), "cuda": ("cupy", "torch")}
# A read is refused when it beats the device's STREAM copy (read + write of the same bytes, no
# write-allocate: large copies stream their stores) by more than this: it did not read memory.
# Not 0: a pure read meets no read/write turnarounds on the memory bus (some machines read ~10-20%
# faster than they copy), and a shared machine's timings move by ~10%. A cache or a lazy library
# is far beyond it (dask's "read" of 256 MiB on 2 cores: 137-187 GB/s against a 17 GB/s copy).
NOISE = 0.25
# STREAM arrays: at least this many times the last-level cache, so none of them stays in it.
STREAM_CACHES = 4
STREAM_GPU_BYTES = 1 << 30  # per array on a GPU (whose L2 size is not read here)
_SCALAR = 3.0  # STREAM's triad a = b + s*c


def memory_bound(
    device: str, X: np.ndarray, dtype: str, stream: dict[str, Any], repeat: int = 3
) -> dict[str, Any]:
    """The bound an epoch is compared with: the fastest *real* read of X from the device's
    main memory, GB/s. No bound when X fits in the last-level cache (``in_cache``: a read of
    it measures the cache). Otherwise each of :data:`READERS` that loads here reads X
    (``sum``, brought to the host), and its figure is kept; one faster than the device's
    STREAM copy (``stream``) by more than :data:`NOISE` is refused, with the reason; the
    fastest accepted one is the bound (``bound_by``)."""
    x_bytes = X.size * backends.itemsize(dtype)
    llc = cache_bytes(3) if device == "cpu" else None
    out: dict[str, Any] = {"x_bytes": x_bytes, "llc_bytes": llc, "in_cache": False}
    out |= {"candidates": {}, "bound_gbps": None, "bound_by": None}
    if llc is not None and x_bytes <= llc:
        out["in_cache"] = True  # X is read from the cache: no memory bound is claimed
        return out
    for name in READERS[_kind(device)]:
        out["candidates"][name] = _candidate(name, device, X, dtype, stream, repeat)
    accepted = {n: c["read_gbps"] for n, c in out["candidates"].items() if c["status"] == "ok"}
    if accepted:
        out["bound_by"] = max(accepted, key=accepted.get)
        out["bound_gbps"] = accepted[out["bound_by"]]
    return out


def _kind(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda"


def _candidate(
    name: str, device: str, X: np.ndarray, dtype: str, stream: dict[str, Any], repeat: int
) -> dict[str, Any]:
    """One reader's figure for X on ``device``: ``read_gbps`` and ``status`` (``ok``, or why
    it does not count)."""
    try:
        bk = backends.get(name)
        with bk.float_scope(dtype):
            on_device = bk.asarray(X, dtype, bk.native_device(bk.resolve_device(device)))
            gbps = read_rate(bk, on_device, repeat) / 1e9
            del on_device
    except Exception as err:  # not installed, no such device, out of memory: no figure
        return {"read_gbps": None, "status": f"unavailable: {str(err).splitlines()[0][:200]}"}
    return {"read_gbps": gbps, "status": refusal(gbps, stream.get("copy_gbps")) or "ok"}


def refusal(read_gbps: float, copy_gbps: float | None) -> str | None:
    """Why a read of ``read_gbps`` is not a read of main memory, given the device's STREAM
    copy bandwidth (None: it is accepted)."""
    if copy_gbps and read_gbps > copy_gbps * (1 + NOISE):
        return (
            f"refused: {read_gbps:.3g} GB/s beats the device's copy ({copy_gbps:.3g} GB/s) by "
            f"more than {NOISE:.0%}: a cache or a lazy library, not a read of memory"
        )
    return None


def device_stream(device: str, repeat: int = 3) -> dict[str, Any]:
    """STREAM's copy (``a = b``, 2 arrays of bytes moved) and triad (``a = b + s·c``, 3) on
    ``device``, GB/s, each the best of ``repeat`` after a warm-up: on the CPU by NumPy on
    every core (:func:`host_stream`); on a GPU by its first reader that loads."""
    if device == "cpu":
        return host_stream(max(STREAM_CACHES * cache_bytes(3), 64 << 20), repeat)
    for name in READERS["cuda"]:
        try:
            return _library_stream(backends.get(name), device, STREAM_GPU_BYTES, repeat)
        except Exception:  # not installed, no such device: the next reader
            continue
    return {"copy_gbps": None, "triad_gbps": None, "by": None, "array_bytes": None}


def host_stream(nbytes: int, repeat: int = 3) -> dict[str, Any]:
    """STREAM on the host: float64 arrays of ``nbytes``, each cut into one contiguous share
    per thread (NumPy releases the GIL), on every core and on one, the faster kept (``by``
    says which: a core busy with another job slows the threads that wait for it). The triad
    runs in pieces a quarter of the L2 in size, ``a = s·c`` then ``a += b`` on each piece
    while it is in cache, so memory sees one pass, as in STREAM: read b and c, write a."""
    n = nbytes // 8
    arrays = np.zeros(n), np.ones(n), np.full(n, 2.0)  # written: every page touched
    best: dict[str, Any] = {"copy_gbps": 0.0, "triad_gbps": 0.0}
    for threads in sorted({cores(), 1}, reverse=True):
        for kind, seconds in _stream_seconds(arrays, threads, repeat).items():
            rate = (2 if kind == "copy" else 3) * n * 8 / seconds / 1e9
            if rate > best[f"{kind}_gbps"]:
                by = f"numpy, {threads} thread{'s' if threads > 1 else ''}"
                best |= {f"{kind}_gbps": rate, f"{kind}_by": by}
    return best | {"by": f"{best['copy_by']} (copy)", "array_bytes": n * 8}


def _stream_seconds(arrays: tuple, threads: int, repeat: int) -> dict[str, float]:
    """The best seconds of STREAM's copy and triad on ``arrays`` (a, b, c) over ``threads``."""
    a, b, c = arrays
    n = len(a)
    piece = max(4096, cache_bytes(2) // 4 // 8)
    shares = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]

    def copy(share: slice) -> None:
        np.copyto(a[share], b[share])

    def triad(share: slice) -> None:
        for start in range(share.start, share.stop, piece):
            part = slice(start, min(start + piece, share.stop))
            np.multiply(c[part], _SCALAR, out=a[part])
            np.add(a[part], b[part], out=a[part])

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        return {
            kind: _best(lambda f=fn: list(pool.map(f, shares)), repeat)
            for kind, fn in (("copy", copy), ("triad", triad))
        }


def _library_stream(bk: backends.Backend, device: str, nbytes: int, repeat: int) -> dict[str, Any]:
    """STREAM through a backend's namespace on ``device``: copy ``asarray(b, copy=True)`` (the
    library's allocator keeps the block between runs), triad ``b + s·c`` (two kernels and a
    temporary: memory moves 5 arrays where STREAM counts 3, so the figure is low)."""
    xp, n = bk.xp, nbytes // 8
    with bk.float_scope("float64"):
        dev = bk.native_device(bk.resolve_device(device))
        b = bk.asarray(np.ones(n), "float64", dev)
        c = bk.asarray(np.full(n, 2.0), "float64", dev)

        def timed(fn: Callable[[], Any]) -> float:
            return _best(lambda: bk.sync(fn()), repeat)

        copy_s = timed(lambda: xp.asarray(b, copy=True))
        triad_s = timed(lambda: b + _SCALAR * c)
    return {
        "copy_gbps": 2 * n * 8 / copy_s / 1e9,
        "triad_gbps": 3 * n * 8 / triad_s / 1e9,
        "by": f"{bk.name} (triad: two kernels)",
        "array_bytes": n * 8,
    }


def _best(run: Callable[[], Any], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls of ``run``, after one untimed."""
    run()
    return min(_timed(run, lambda _: None)[0] for _ in range(repeat))
