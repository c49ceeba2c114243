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
included there), each run ending with the backend's sync. The machine is shared: rerun when
figures look off, and compare ratios, not times.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import call_cost  # bench/call_cost.py, beside this script
import numpy as np

import xptrain
from xptrain import backends
from xptrain.bench import LR, bench_problem, device_stream, memory_bound
from xptrain.data import SEED_X, SEED_Y
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
    sync(loss)
    return loss


def _naive(name: str, problem: Any, epochs: int, repeat: int) -> float:
    """Seconds per epoch of the seed's naive epoch in ``name``'s own eager API."""
    X, y, W = (a.astype(np.float32) for a in (problem.X, problem.y, problem.W))
    if name == "numpy":
        return _median_time(lambda: _seed_epochs(np, X, y, W, epochs, lambda x: x), repeat) / epochs
    if name == "torch":
        import torch

        t = [torch.from_numpy(a) for a in (X, y, W)]
        return _median_time(lambda: _seed_epochs(torch, *t, epochs, lambda x: x), repeat) / epochs
    import jax
    import jax.numpy as jnp

    j = [jnp.asarray(a) for a in (X, y, W)]
    return (
        _median_time(lambda: _seed_epochs(jnp, *j, epochs, jax.block_until_ready), repeat) / epochs
    )


def _peak_rss_reset() -> None:
    # Free memory goes back to the system first, so temporaries that would reuse it count.
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def _xptrain(name: str, problem: Any, epochs: int, repeat: int, **how: Any) -> dict[str, Any]:
    """Seconds per epoch of what ``xptrain train`` runs on backend ``name`` (the data already on
    the device; each run ends with a host transfer of its losses), and the peak memory the
    epochs take above the resident data."""
    bk = backends.get(name)
    options = Options(dtype="float32", lr=LR, **how)
    with bk.float_scope("float32"):
        run = place(problem, bk, "cpu", options, [problem.W, np.zeros((1, 1))])
        run.fit(epochs=epochs)  # compile, warm up
        seconds, extra = [], []
        for _ in range(repeat):
            _peak_rss_reset()
            before = _rss("VmRSS")
            start = time.perf_counter()
            carry, _ = run.fit(epochs=epochs)
            bk.sync(carry[0][0])
            seconds.append((time.perf_counter() - start) / epochs)
            extra.append(_rss("VmHWM") - before)
    return {"epoch_s": statistics.median(seconds), "block": run.block, "extra_bytes": min(extra)}


def _bounds(problem: Any, repeat: int) -> dict[str, Any]:
    """The CPU's STREAM line (copy, triad, on every core) and the one-pass bound: the bytes of
    X over the copy bandwidth; and the memory bound as ``xptrain bench`` takes it (the
    fastest real read of X by NumPy or torch, each figure kept; none if X is in cache)."""
    X = problem.X.astype(np.float32)
    stream = device_stream("cpu", repeat)
    read = memory_bound("cpu", X, "float32", stream, repeat)
    gbps = read["bound_gbps"]
    return {
        "one_pass_s": X.nbytes / (stream["copy_gbps"] * 1e9),  # bytes of X / copy bandwidth
        "copy_gbps": stream["copy_gbps"],
        "stream": stream,
        "read": read,
        "fastest_read_s": X.nbytes / (gbps * 1e9) if gbps else None,
        "fastest_read_by": read["bound_by"] or ("X in cache" if read["in_cache"] else "none"),
    }


def large(n: int, d: int, epochs: int, repeat: int, names: list[str]) -> dict[str, Any]:
    problem = bench_problem(n, d)
    rows: dict[str, Any] = {"bounds": _bounds(problem, repeat), "x_bytes": n * d * 4}
    for name in names:
        jit = name == "jax"
        rows[name] = {
            "naive_s": _naive(name, problem, epochs, repeat),
            "fast": _xptrain(name, problem, epochs, repeat, jit=jit),
            "exact": _xptrain(name, problem, epochs, repeat, jit=jit, exact=True),
        }
    return rows


def small(
    epochs: int, repeat: int, names: list[str], clock: Callable[[], float] = time.perf_counter
) -> dict[str, float]:
    """Seconds per epoch on the seed's 4x3 (float64): the raw NumPy loop and ``xptrain.train``
    on each backend (the whole call), alternated ``repeat`` times in this process (a shared
    machine's slow spell hits them alike), timed by ``clock``; medians."""
    from xptrain.reference import reference_run

    problem = xptrain.data.seed_problem()
    runs: dict[str, Callable[[], Any]] = {"raw NumPy loop": lambda: reference_run(problem, epochs)}
    for name in names:
        runs[name] = lambda n=name: xptrain.train(
            SEED_X, SEED_Y, backend=n, jit=n == "jax", epochs=epochs
        )
    times: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up: imports, compilation, the step's cache
    for _ in range(repeat):
        for name, run in runs.items():
            times[name].append(_seconds(run, clock) / epochs)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _seconds(run: Callable[[], Any], clock: Callable[[], float]) -> float:
    start = clock()
    run()
    return clock() - start


KERAS_EPOCHS = 200  # per fit call


def keras_fit(repeat: int, clock: Callable[[], float] = time.perf_counter) -> float | str:
    """Seconds per epoch of Keras 3's warm ``fit`` (JAX backend, float64) on the seed's 4x3:
    a Dense(1, sigmoid) from the seed's initial weights, binary cross-entropy, SGD lr 1, batch
    size 4 (the full batch), 200 epochs a call, after one untimed call (compilation); the
    median of ``repeat`` calls, timed by ``clock``. A string says why it was not measured."""
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
    floatx = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        with jax.enable_x64(True):  # else JAX makes float64 float32 (jax >= 0.7)
            return _keras_seconds(keras, repeat, clock)
    finally:
        keras.config.set_floatx(floatx)


def _keras_seconds(keras: Any, repeat: int, clock: Callable[[], float]) -> float:
    """The timed fits of :func:`keras_fit` (inside its float64 settings)."""
    from xptrain.data import initial_weights

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights([initial_weights(3, 1), np.zeros(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1.0), loss="binary_crossentropy")
    X, y = SEED_X.astype(np.float64), SEED_Y.astype(np.float64).reshape(-1, 1)

    def fit() -> None:
        model.fit(X, y, epochs=KERAS_EPOCHS, batch_size=4, verbose=0, shuffle=False)

    return _median_time(fit, repeat, clock) / KERAS_EPOCHS


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
    keras = tiny.get("keras 3 fit (jax)")
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
    tiny["keras 3 fit (jax)"] = keras_fit(args.repeat, clock)
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
