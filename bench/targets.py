"""The fast-path targets, measured side by side in one run on one machine.

    python bench/targets.py                 # N = 2**20, D = 64, float32 (X = 256 MiB); ~2 min
    python bench/targets.py --n 65536 --json targets.json
    python bench/targets.py --no-call       # without the whole-call section (bench/call_cost.py)

Large problem (float32, N×D): the seed's naive epoch written in each framework (NumPy, torch
eager, JAX eager), xptrain's default path on each backend (one-pass blocked gradient on the CPU;
JAX: jit, the whole run one lax.scan) and its ``--exact`` path, against the one-pass bound: the
bytes of X over the STREAM copy bandwidth measured here on every core (a copy reads and writes
each byte), and the fastest real read of X (``sum`` by NumPy or torch; one faster than the copy
is refused, and none is claimed when X fits in the last-level cache). Peak memory: the resident
set's high-water mark during the epochs above the resident set with the data in place.

Small problem (the seed's 4×3, float64): the seed's raw NumPy loop against the numpy backend
and JAX's fused loop, per epoch, alternated in this process; and Keras 3's warm ``fit`` (JAX
backend, float64; ``pip install 'xptrain[bench]'``; skipped, with the reason, without it).

Every figure is the median of ``--repeat`` timed runs after an untimed warm-up (compilation
included there), each run ending with the backend's sync; a backend's naive, default and
``--exact`` epochs take turns, so their ratios share the machine's slow spells. The machine is
shared: rerun when figures look off, and compare ratios, not times.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import call_cost  # bench/call_cost.py, beside this script
import numpy as np

import xptrain
from xptrain import backends
from xptrain.bench import LR, bench_problem, device_stream, memory_bound
from xptrain.data import SEED_X, SEED_Y, initial_weights
from xptrain.options import Options
from xptrain.placement import place
from xptrain.runinfo import versions


def _median_time(
    run: Callable[[], Any], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    run()  # warm-up: compilation, caches, first-touch of memory
    times = []
    for _ in range(repeat):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)


def _seed_epochs(xp: Any, X: Any, y: Any, W: Any, epochs: int, sync: Callable) -> Any:
    """The seed's epoch as its author wrote it, in any framework's NumPy-like API."""
    n, b = X.shape[0], 0.0
    for _ in range(epochs):
        z = X @ W + b
        A = 1 / (1 + xp.exp(-z))
        loss = -1 / n * xp.sum(y * xp.log(A) + (1 - y) * xp.log(1 - A))
        dz = A - y
        W = W - LR * (1 / n * (X.T @ dz))
        b = b - LR * (1 / n * xp.sum(dz))
    sync((loss, W, b))  # every output: JAX dispatches asynchronously
    return loss


def _naive(name: str, problem: Any, epochs: int) -> Callable[[], None]:
    """``epochs`` epochs of the seed's naive epoch in ``name``'s own eager API, synced."""
    X, y, W = (a.astype(np.float32) for a in (problem.X, problem.y, problem.W))
    if name == "numpy":
        return lambda: _seed_epochs(np, X, y, W, epochs, lambda x: x)
    if name == "torch":
        import torch

        t = [torch.from_numpy(a) for a in (X, y, W)]
        return lambda: _seed_epochs(torch, *t, epochs, lambda x: x)
    import jax
    import jax.numpy as jnp

    j = [jnp.asarray(a) for a in (X, y, W)]
    return lambda: _seed_epochs(jnp, *j, epochs, jax.block_until_ready)


def _xptrain(name: str, problem: Any, epochs: int, **how: Any) -> tuple[Callable, int | None]:
    """``epochs`` epochs of what ``xptrain train`` runs on backend ``name`` (the data already on
    the device, the path chosen as a run chooses it; each call ends with the backend's sync),
    and the block it runs with. Called inside the backend's ``float_scope("float32")``."""
    bk = backends.get(name)
    run = place(problem, bk, "cpu", Options(dtype="float32", lr=LR, **how), [problem.W, ZERO])

    def epochs_synced() -> None:
        carry, _ = run.fit(epochs=epochs)
        bk.sync(carry[0][0])

    return epochs_synced, run.block


ZERO = np.zeros((1, 1))  # b's initial value


def _alternated(
    runs: dict[str, Callable[[], Any]],
    repeat: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, tuple]:
    """Each run timed ``repeat`` times by ``clock``, the runs taking turns in a rotating order
    (a shared machine's slow spell hits them alike, and none always runs after the same other
    one, whose freed memory it would fault in again), after one untimed call each: (median
    seconds, the smallest peak of the resident set above where the call began)."""
    for run in runs.values():
        run()  # compilation, first touch, the path's measurement
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    extra: dict[str, list[int]] = {k: [] for k in runs}
    keys = list(runs)
    for r in range(repeat):  # each round starts with the next run: none always follows another
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            peak = call_cost.peak_rss_above(
                lambda k=key: seconds[k].append(_seconds(runs[k], clock))  # inside the reads
            )
            if peak is None:  # not run: no /proc here
                raise OSError("the peak resident set is read from Linux's /proc/self")
            extra[key].append(peak)
    return {k: (statistics.median(seconds[k]), min(extra[k])) for k in runs}


def _bounds(problem: Any, repeat: int) -> dict[str, Any]:
    """The CPU's STREAM line (copy, triad, on every core) and the one-pass bound: the bytes of
    X over the copy bandwidth; and the memory bound as ``xptrain bench`` takes it (the
    fastest real read of X by NumPy or torch, each figure kept; none if X is in cache)."""
    X = problem.X.astype(np.float32)
    stream = device_stream("cpu", repeat)
    read = memory_bound("cpu", X, "float32", stream, repeat)
    gbps = read["bound_gbps"]
    return {
        "floors": floors(X, repeat),
        "one_pass_s": X.nbytes / (stream["copy_gbps"] * 1e9),  # bytes of X / copy bandwidth
        "copy_gbps": stream["copy_gbps"],
        "stream": stream,
        "read": read,
        "fastest_read_s": X.nbytes / (gbps * 1e9) if gbps else None,
        "fastest_read_by": read["bound_by"] or ("X in cache" if read["in_cache"] else "none"),
    }


def floors(X: np.ndarray, repeat: int) -> dict[str, Any]:
    """Where an epoch's time can go here, measured with NumPy on the run's X: ``x_w_s``, one
    product reading X from memory (``X·w``, the BLAS on every core); ``products_s``, the
    one-pass epoch's two products (``X_b·w``, ``g_bᵀ·X_b``) with each block in cache: a block of
    a quarter of the per-core L2, rerun N/block times on one thread, divided by the cores;
    ``elementwise_s``, the seed's per-row arithmetic on that block's rows, likewise."""
    from threadpoolctl import threadpool_limits

    from xptrain.backends.threads import cores
    from xptrain.grad import cache_bytes

    n, d = X.shape
    w = np.ones((d, 1), X.dtype)
    rows = max(64, min(n, cache_bytes(2) // 4 // (d * X.itemsize)))
    block, g = np.ascontiguousarray(X[:rows]), np.ones((1, rows), X.dtype)

    def products() -> None:
        for _ in range(n // rows):
            block @ w, g @ block

    z, y = block @ w / d, (np.arange(rows) % 2).astype(X.dtype).reshape(-1, 1)

    def elementwise() -> None:  # the seed's per-row arithmetic: sigmoid, terms, their sum, dz
        for _ in range(n // rows):
            A = 1 / (1 + np.exp(-z))
            np.sum(y * np.log(A) + (1 - y) * np.log(1 - A)), A - y

    per_core = n / (rows * (n // rows)) / cores()
    with threadpool_limits(1, "blas"):
        products_s = _median_time(products, repeat) * per_core
    return {
        "x_w_s": _median_time(lambda: X @ w, repeat),
        "products_s": products_s,
        "elementwise_s": _median_time(elementwise, repeat) * per_core,
        "block_rows": rows,
        "cores": cores(),
    }


def large(n: int, d: int, epochs: int, repeat: int, names: list[str]) -> dict[str, Any]:
    problem = bench_problem(n, d)
    rows: dict[str, Any] = {"bounds": _bounds(problem, repeat), "x_bytes": n * d * 4}
    for name in names:
        bk, jit = backends.get(name), name == "jax"
        with bk.float_scope("float32"):
            fast, block = _xptrain(name, problem, epochs, jit=jit)
            exact, _ = _xptrain(name, problem, epochs, jit=jit, exact=True)
            runs = {"naive": _naive(name, problem, epochs), "fast": fast, "exact": exact}
            timed = _alternated(runs, repeat)
        rows[name] = {
            "naive_s": timed["naive"][0] / epochs,
            "fast": {"epoch_s": timed["fast"][0] / epochs, "block": block,
                     "extra_bytes": timed["fast"][1]},
            "exact": {"epoch_s": timed["exact"][0] / epochs, "block": None,
                      "extra_bytes": timed["exact"][1]},
        }  # fmt: skip
    return rows


def small(
    epochs: int, repeat: int, names: list[str], clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Seconds per epoch on the seed's 4x3 (float64): the raw NumPy loop, ``xptrain.train`` on
    each backend (the whole call), numpy's epochs alone and Keras 3's warm ``fit`` (or why it
    was not run), taking turns ``repeat`` times in this process (:func:`_alternated`), timed by
    ``clock``; medians."""
    from xptrain.reference import reference_run

    problem = xptrain.data.seed_problem()
    runs: dict[str, Callable[[], Any]] = {"raw NumPy loop": lambda: reference_run(problem, epochs)}
    for name in names:
        runs[name] = lambda n=name: xptrain.train(
            SEED_X, SEED_Y, backend=n, jit=n == "jax", epochs=epochs
        )
    if "numpy" in names:  # the epochs alone: the data placed once, no per-call work
        numpy = backends.get("numpy")
        with numpy.float_scope("float64"):
            params = [initial_weights(problem.X.shape[1], 1), ZERO]
            placed = place(problem, numpy, "cpu", Options(), params)

        def epochs_only() -> None:
            with numpy.float_scope("float64"):
                placed.fit(epochs=epochs)

        runs[EPOCHS_ONLY] = epochs_only
    per_call = dict.fromkeys(runs, epochs)
    keras = keras_fit()
    if callable(keras):
        runs[KERAS], per_call[KERAS] = keras, KERAS_EPOCHS
    timed = _alternated(runs, repeat, clock)
    per_epoch: dict[str, Any] = {name: timed[name][0] / per_call[name] for name in runs}
    return per_epoch if callable(keras) else per_epoch | {KERAS: keras}


EPOCHS_ONLY = "numpy, its epochs alone"  # small()'s run of the loop without the call


def _seconds(run: Callable[[], Any], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    run()
    return clock() - start


KERAS_EPOCHS = 200  # per fit call


KERAS = "keras 3 fit (jax)"  # small()'s Keras entry


def keras_fit() -> Callable[[], None] | str:
    """One call of Keras 3's ``fit`` (JAX backend, float64) on the seed's 4x3: a Dense(1,
    sigmoid) from the seed's initial weights, binary cross-entropy, SGD lr 1, batch size 4 (the
    full batch), :data:`KERAS_EPOCHS` epochs; or a string saying why it cannot be run."""
    import os

    if "keras" not in sys.modules:
        os.environ.setdefault("KERAS_BACKEND", "jax")
    try:
        import jax
        import keras
    except ImportError as err:
        return f"skipped: {err.name} is not installed (pip install 'xptrain[bench]')"
    if keras.backend.backend() != "jax":
        return f"skipped: keras runs on {keras.backend.backend()} here (set KERAS_BACKEND=jax)"

    @contextlib.contextmanager
    def float64() -> Iterator[None]:
        floatx = keras.config.floatx()
        keras.config.set_floatx("float64")
        try:
            with jax.enable_x64(True):  # else JAX makes float64 float32 (jax >= 0.7)
                yield
        finally:
            keras.config.set_floatx(floatx)

    with float64():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
        model.set_weights([initial_weights(3, 1), np.zeros(1)])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="binary_crossentropy")
    X, y = SEED_X.astype(np.float64), SEED_Y.astype(np.float64).reshape(-1, 1)

    def fit() -> None:
        with float64():
            model.fit(X, y, epochs=KERAS_EPOCHS, batch_size=4, verbose=0, shuffle=False)

    return fit


def report(big: dict[str, Any], tiny: dict[str, Any], n: int, d: int) -> list[str]:
    bounds = big["bounds"]
    one_pass = bounds["one_pass_s"]
    read = bounds["fastest_read_s"]
    lines = [
        f"large: N={n} D={d} float32, X = {big['x_bytes'] / 2**20:.0f} MiB; one-pass bound "
        f"{one_pass * 1e3:.1f} ms (copy {bounds['copy_gbps']:.1f} GB/s, triad "
        f"{bounds['stream']['triad_gbps']:.1f} GB/s, {bounds['stream']['by']}); fastest real "
        f"read of X {f'{read * 1e3:.1f} ms' if read else '-'} ({bounds['fastest_read_by']})",
        "  reads of X: "
        + ", ".join(
            f"{name} {c['read_gbps']:.1f} GB/s {c['status']}" if c["read_gbps"] else f"{name} -"
            for name, c in bounds["read"]["candidates"].items()
        ),
        f"{'backend':8} {'naive ms':>9} {'xptrain ms':>10} {'block':>6} {'exact ms':>9} "
        f"{'x naive':>8} {'x bound':>8} {'peak +MiB':>9}",
    ]
    best = min(
        (v["fast"]["epoch_s"], k) for k, v in big.items() if isinstance(v, dict) and "fast" in v
    )
    for name, row in big.items():
        if not isinstance(row, dict) or "fast" not in row:
            continue
        fast = row["fast"]
        lines.append(
            f"{name:8} {row['naive_s'] * 1e3:9.1f} {fast['epoch_s'] * 1e3:10.1f} "
            f"{fast['block']!s:>6} {row['exact']['epoch_s'] * 1e3:9.1f} "
            f"{row['naive_s'] / fast['epoch_s']:8.2f} {fast['epoch_s'] / one_pass:8.2f} "
            f"{fast['extra_bytes'] / 2**20:9.1f}"
        )
    targets = [
        (
            "best backend within 1.5x of the one-pass bound",
            best[0] / one_pass,
            "<= 1.5",
            best[0] / one_pass <= 1.5,
        ),
    ]
    if "numpy" in big:
        r = big["numpy"]["naive_s"] / big["numpy"]["fast"]["epoch_s"]
        targets.append(
            ("numpy >= 2.5x faster than the seed's naive NumPy epoch", r, ">= 2.5", r >= 2.5)
        )
    for name in ("torch", "jax"):
        if name in big:
            r = big[name]["naive_s"] / big[name]["fast"]["epoch_s"]
            targets.append((f"{name} faster than its own naive eager epoch", r, "> 1", r > 1))
    worst = max(
        v["fast"]["extra_bytes"] for v in big.values() if isinstance(v, dict) and "fast" in v
    )
    targets.append(
        (
            "peak memory <= X + 10% (extra / X)",
            worst / big["x_bytes"],
            "<= 0.10",
            worst <= 0.1 * big["x_bytes"],
        )
    )
    per_epoch = ", ".join(
        f"{k} {v * 1e6:.1f} us" if isinstance(v, float) else f"{k} {v}" for k, v in tiny.items()
    )
    lines.append(f"small: the seed's 4x3, float64, per epoch: {per_epoch}")
    if "numpy" in tiny:
        r = tiny["numpy"] / tiny["raw NumPy loop"]
        targets.append(
            ("seed problem: numpy backend within 1.2x of the raw loop", r, "<= 1.2", r <= 1.2)
        )
    if "jax" in tiny:
        r = tiny["jax"] / tiny["raw NumPy loop"]
        targets.append(("seed problem: JAX's fused loop faster than the raw loop", r, "< 1", r < 1))
    keras = tiny.get(KERAS)
    if isinstance(keras, float) and "numpy" in tiny:
        r = keras / tiny["numpy"]
        targets.append(
            (
                "seed problem: numpy backend >= 30x faster than Keras 3's warm fit",
                r,
                ">= 30",
                r >= 30,
            )
        )
    lines.append("targets:")
    for text, value, goal, met in targets:
        lines.append(f"  {'MET ' if met else 'MISS'} {text}: {value:.2f} (goal {goal})")
    return lines + where_the_time_goes(big, tiny, n)


def where_the_time_goes(big: dict[str, Any], tiny: dict[str, Any], n: int) -> list[str]:
    """The measured pieces the targets' times are made of, so a missed target says why."""
    one_pass, f = big["bounds"]["one_pass_s"], big["bounds"]["floors"]
    ms = 1e3
    lines = [
        "where the time goes (large, measured here with NumPy):",
        f"  X·w alone, one read of X by the BLAS on every core: {f['x_w_s'] * ms:.1f} ms "
        f"= {f['x_w_s'] / one_pass:.2f}x the one-pass bound",
        f"  the one-pass epoch's two products, each block of {f['block_rows']} rows in cache: "
        f"{f['products_s'] * ms:.1f} ms an epoch on {f['cores']} cores "
        f"= {f['products_s'] / one_pass:.2f}x the bound",
    ]
    lines.append(
        f"  the seed's per-row arithmetic (sigmoid, terms, dz), blocks in cache: "
        f"{f['elementwise_s'] * ms:.1f} ms an epoch on {f['cores']} cores"
    )
    if "numpy" in big:
        fast, naive = big["numpy"]["fast"]["epoch_s"], big["numpy"]["naive_s"]
        arithmetic = f["products_s"] + f["elementwise_s"]
        lines.append(
            f"  numpy's default path {fast * ms:.1f} ms = that arithmetic {arithmetic * ms:.1f} ms"
            f" + {(fast - arithmetic) * ms:.1f} ms of the rest (its library calls, and its "
            f"temporaries' memory traffic and page faults at {big['numpy']['fast']['block'] or n}"
            f" rows a block); 2.5x the naive epoch needs {naive / 2.5 * ms:.1f} ms"
        )
    if EPOCHS_ONLY in tiny and "numpy" in tiny:
        raw, alone, call = (tiny[k] * 1e6 for k in ("raw NumPy loop", EPOCHS_ONLY, "numpy"))
        lines.append(
            f"where the time goes (small, per epoch): the raw loop {raw:.1f} us; xptrain's "
            f"epochs alone {alone:.1f} us ({alone / raw:.2f}x: the accuracy, the finite check, "
            f"the metrics vector and the loop's bookkeeping); the call's own work "
            f"{call - alone:.1f} us per epoch (its setup spread over the epochs)"
        )
    return lines


def figure(big: dict[str, Any], path: str) -> None:
    """Milliseconds per epoch: the framework's naive epoch, xptrain --exact and xptrain's
    default path per backend, against the one-pass bound and the fastest read of X."""
    from xptrain.files import atomic_write
    from xptrain.plot import _pyplot, figure_writer

    plt = _pyplot()
    names = [k for k, v in big.items() if isinstance(v, dict) and "fast" in v]
    bars = {
        "the seed's naive epoch, in the framework": [big[k]["naive_s"] for k in names],
        "xptrain --exact": [big[k]["exact"]["epoch_s"] for k in names],
        "xptrain (one pass)": [big[k]["fast"]["epoch_s"] for k in names],
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(bars)
    for i, (label, values) in enumerate(bars.items()):
        xs = [j + (i - 1) * width for j in range(len(names))]
        ax.bar(xs, [v * 1e3 for v in values], width, label=label)
    bounds = big["bounds"]
    ax.axhline(
        bounds["one_pass_s"] * 1e3,
        color="black",
        linestyle="--",
        linewidth=1,
        label="one pass over X at the copy bandwidth",
    )
    if bounds["fastest_read_s"]:
        ax.axhline(
            bounds["fastest_read_s"] * 1e3,
            color="gray",
            linestyle=":",
            linewidth=1,
            label=f"fastest real read of X ({bounds['fastest_read_by']})",
        )
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("ms per epoch")
    ax.set_title(f"one epoch, float32, X = {big['x_bytes'] / 2**20:.0f} MiB")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, figure_writer(fig))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2**20)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH", help="bars per backend against the bounds")
    parser.add_argument("--no-call", action="store_true", help="skip the whole-call section")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the small problem in CPU seconds of this process (a busy machine's waits out)",
    )
    args = parser.parse_args()
    names = [n for n in ("numpy", "torch", "jax") if n in backends.available()]
    big = large(args.n, args.d, args.epochs, args.repeat, names)
    clock = time.process_time if args.cpu_time else time.perf_counter
    tiny: dict[str, Any] = small(2000, args.repeat, [n for n in names if n != "torch"], clock)
    lines = report(big, tiny, args.n, args.d)
    # the whole train() call beside its epochs, on the same data size
    call = None if args.no_call else call_cost.measure(args.n, args.d, args.repeat, names)
    lines += call_cost.report(call) if call else []
    print("\n".join(lines))
    if args.json:
        info = {
            "large": big,
            "small": tiny,
            "report": lines,
            "versions": versions(backends.get("numpy")),
            "call": call,
        }
        info["threads"] = backends.get("numpy").threads()
        Path(args.json).write_text(json.dumps(info, indent=1))
    if args.plot:
        figure(big, args.plot)


if __name__ == "__main__":
    main()
