"""What one whole ``xptrain.train`` call costs on big data beside its epochs, side by side in one
process: the time outside the epochs as a multiple of one copy of X, and the peak memory above
the caller's data as a multiple of X.

    python bench/call_cost.py                    # N = 2**20, D = 64, float32 (X = 256 MiB)
    python bench/call_cost.py --n 262144 --json call.json

For each backend (numpy, torch, JAX, on the CPU) one untimed call first (imports, compilation,
thread pools), then ``--repeat`` timed calls of one epoch on the caller's float32 X, each
``train(X, y, backend=..., dtype="float32", epochs=1)``: the call's wall time, the epoch's
(``result.seconds``) and the difference, the time outside the epochs (validation, placement,
bringing the parameters back). One copy of X is ``np.copyto`` into a buffer already touched,
timed just before each call; the time outside the epochs is given in copies of X as the
median of the calls' ratios (the machine's load moves both alike).
Memory: the resident set's high-water mark during the call above the resident set before it
(the caller's X already in it), and, for NumPy, the peak of tracemalloc (every NumPy
allocation, deterministic). Machine-dependent: compare the ratios, and name the machine.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import xptrain
from xptrain import backends
from xptrain.backends.base import cpu_name

OUTSIDE_COPIES = 2.0  # target: time outside the epochs, in copies of X
PEAK_X = 1.1  # target: peak memory above the caller's data, in X (one device copy + 10%)
BACKENDS = ("numpy", "torch", "jax")


def caller_data(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The caller's data: a C-contiguous float32 X (N×D, standard normal) and 0/1 labels from
    a random linear rule, both touched (resident) before anything is measured."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal(d).astype(np.float32)
    y = (X @ w > 0).astype(np.float32)
    return X, y


def copier(X: np.ndarray) -> Callable[[], float]:
    """``copy()``: the seconds one copy of X into a buffer already in memory takes now."""
    out = np.empty_like(X)
    np.copyto(out, X)  # first touch of the buffer, untimed

    def copy() -> float:
        start = time.perf_counter()
        np.copyto(out, X)
        return time.perf_counter() - start

    return copy


def fresh_copy_seconds(X: np.ndarray, repeat: int) -> float:
    """The median seconds of ``X.copy()``: a copy into memory not touched before, page faults
    included (what a backend that must copy X pays; on a VM without transparent huge pages a
    fault per 4 KiB page)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        X.copy()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def peak_rss_above(run: Callable[[], Any]) -> int | None:
    """Bytes the resident set's high-water mark rose above the resident set before ``run()``
    (Linux; None elsewhere). Free memory goes back to the system first, so a temporary that
    would reuse it counts."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = _rss("VmRSS")
    except (OSError, AttributeError):
        return None
    run()
    return _rss("VmHWM") - before


def traced_peak(run: Callable[[], Any]) -> int:
    """The peak of the memory tracemalloc sees allocated during ``run()`` (NumPy's arrays,
    Python objects; not torch's nor XLA's own allocators)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def one_backend(
    name: str, X: np.ndarray, y: np.ndarray, repeat: int, copy: Callable[[], float]
) -> dict[str, Any]:
    """Median call and epoch seconds of ``repeat`` one-epoch calls on ``name``, each call's
    time outside the epochs over a copy of X timed just before it (the median ratio: the
    machine is shared, and its load moves both alike), and the peak memory of a call above
    the caller's data (RSS; tracemalloc too for NumPy)."""

    def call() -> Any:
        return xptrain.train(X, y, backend=name, dtype="float32", epochs=1)

    # the first call: imports, compilation, thread pools, paid once (its peak reported too)
    start = time.perf_counter()
    first_peak = peak_rss_above(call)
    first_s = time.perf_counter() - start
    calls, epochs, copies = [], [], []
    for _ in range(repeat):
        copies.append(copy())
        start = time.perf_counter()
        result = call()
        calls.append(time.perf_counter() - start)
        epochs.append(result.seconds)
    outside = [c - e for c, e in zip(calls, epochs, strict=True)]
    row: dict[str, Any] = {
        "call_s": statistics.median(calls),
        "epoch_s": statistics.median(epochs),
        "outside_s": statistics.median(outside),
        "copy_s": statistics.median(copies),
        "outside_copies": statistics.median(o / c for o, c in zip(outside, copies, strict=True)),
        "peak_rss_bytes": min((peak_rss_above(call) for _ in range(2)), key=lambda b: b or 0),
        "first_call_s": first_s,
        "first_peak_rss_bytes": first_peak,
    }
    if name == "numpy":
        row["traced_peak_bytes"] = traced_peak(call)
    return row


def measure(n: int, d: int, repeat: int, names: list[str] | None = None) -> dict[str, Any]:
    """Every available backend's row (see :func:`one_backend`) beside one copy of X."""
    X, y = caller_data(n, d)
    names = [b for b in (names or BACKENDS) if b in backends.available()]
    copy = copier(X)
    rows = {name: one_backend(name, X, y, repeat, copy) for name in names}
    return {
        "n": n,
        "d": d,
        "x_bytes": X.nbytes,
        "copy_s": statistics.median(row["copy_s"] for row in rows.values()),
        "fresh_copy_s": fresh_copy_seconds(X, repeat),
        "x_aligned_64": X.ctypes.data % 64 == 0,  # JAX's CPU client aliases only such buffers
        "machine": cpu_name(),
        "backends": rows,
    }


def report(cost: dict[str, Any]) -> list[str]:
    """The table (ms, and the ratios the targets are in) and each target MET or MISS."""
    x = cost["x_bytes"]
    lines = [
        f"whole call: N={cost['n']} D={cost['d']} float32, X = {x / 2**20:.0f} MiB, one epoch; "
        f"one copy of X {cost['copy_s'] * 1e3:.1f} ms ({cost['machine']})",
        f"{'backend':8} {'call ms':>8} {'epoch ms':>8} {'outside ms':>10} {'x copy':>7} "
        f"{'peak RSS/X':>10} {'traced/X':>8} {'first call ms':>13} {'its peak/X':>10}",
    ]
    targets = []
    for name, row in cost["backends"].items():
        copies = row["outside_copies"]
        rss = row["peak_rss_bytes"]
        traced = row.get("traced_peak_bytes")
        lines.append(
            f"{name:8} {row['call_s'] * 1e3:8.1f} {row['epoch_s'] * 1e3:8.1f} "
            f"{row['outside_s'] * 1e3:10.1f} {copies:7.2f} "
            f"{_ratio(rss, x):>10} {_ratio(traced, x):>8} "
            f"{row['first_call_s'] * 1e3:13.1f} {_ratio(row['first_peak_rss_bytes'], x):>10}"
        )
        targets.append((f"{name}: outside the epochs (copies of X)", copies, OUTSIDE_COPIES))
        peak = rss if rss is not None else traced
        if peak is not None:
            targets.append((f"{name}: peak above the caller's data (X)", peak / x, PEAK_X))
    if "fresh_copy_s" in cost:
        fresh = cost["fresh_copy_s"]
        lines.append(
            f"one copy into fresh memory (page faults included) {fresh * 1e3:.1f} ms = "
            f"{fresh / cost['copy_s']:.2f} copies; X {'is' if cost['x_aligned_64'] else 'is not'}"
            " 64-byte aligned (JAX copies an unaligned X once)"
        )
    lines.append("whole-call targets:")
    for text, value, goal in targets:
        lines.append(f"  {'MET ' if value <= goal else 'MISS'} {text}: {value:.2f} (<= {goal})")
    return lines


def _ratio(part: float | None, whole: float) -> str:
    return "-" if part is None else f"{part / whole:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2**20)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backend", action="append", help="one of numpy, torch, jax (repeat)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    cost = measure(args.n, args.d, args.repeat, args.backend)
    lines = report(cost)
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({**cost, "report": lines}, indent=1))


if __name__ == "__main__":
    main()
