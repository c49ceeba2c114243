"""What one ``xptrain.train`` call costs beyond its epochs, side by side in one process: the
seed's problem through the public API against the seed's own NumPy loop.

    python bench/call_overhead.py [--calls 300] [--epochs 2000] [--rounds 7] [--cpu-time]

Prints the median time of a one-epoch call (the per-call overhead), and microseconds per epoch
of a long run through the API (the whole call) and of the plain loop, alternated ``--rounds``
times, with the median of their ratios. Machine-dependent: compare ratios, and state the
machine beside any figure.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import xptrain
from xptrain.backends.base import cpu_name
from xptrain.data import SEED_X, SEED_Y, initial_weights

CLOCK = time.perf_counter  # --cpu-time: time.process_time


def seed_loop(epochs: int) -> float:
    """The seed's loop (sigmoid, BCE, dz = A - y, gradient descent), seconds per epoch."""
    X, y = SEED_X.astype(np.float64), SEED_Y.astype(np.float64)
    W, b, n = initial_weights(3, 1), 0.0, len(y)
    start = CLOCK()
    for _ in range(epochs):
        A = 1 / (1 + np.exp(-(X @ W + b)))
        float(-1 / n * np.sum(y * np.log(A) + (1 - y) * np.log(1 - A)))
        dz = A - y
        W = W - 1 / n * X.T @ dz
        b = b - 1 / n * np.sum(dz)
    return (CLOCK() - start) / epochs


def api_loop(epochs: int) -> float:
    """Seconds per epoch of the whole ``xptrain.train`` call on the seed's problem."""
    start = CLOCK()
    xptrain.train(SEED_X, SEED_Y, epochs=epochs)
    return (CLOCK() - start) / epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7, help="API and plain loop, alternated")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time the rounds in CPU seconds of this process (a busy machine's waits left out)",
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.cpu_time else time.perf_counter
    xptrain.train(SEED_X, SEED_Y, epochs=1)  # imports and first-call caches
    calls = []
    for _ in range(args.calls):
        start = time.perf_counter()
        xptrain.train(SEED_X, SEED_Y, epochs=1)
        calls.append(time.perf_counter() - start)
    api, plain = [], []
    for _ in range(args.rounds):  # alternated: a shared machine's slow spell hits both
        api.append(api_loop(args.epochs))
        plain.append(seed_loop(args.epochs))
    ratios = [a / p for a, p in zip(api, plain, strict=True)]
    api_s, plain_s = statistics.median(api), statistics.median(plain)
    print(f"machine: {cpu_name()}, numpy {np.__version__}")
    print(f"one-epoch call: {statistics.median(calls) * 1e3:.3f} ms (median of {args.calls})")
    print(f"{args.epochs} epochs: API {api_s * 1e6:.1f} us/epoch, plain NumPy loop "
          f"{plain_s * 1e6:.1f} us/epoch, ratio {statistics.median(ratios):.2f} "
          f"(median of {args.rounds} alternated rounds, min {min(ratios):.2f}; "
          f"{'CPU' if args.cpu_time else 'wall'} time)")  # fmt: skip


if __name__ == "__main__":
    main()
