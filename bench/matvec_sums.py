"""Matrix-vector products as a library dot or as a multiply and a sum, under each compiler,
side by side: what decides ``Capabilities.matvec_sums`` (xptrain.matvec).

    python bench/matvec_sums.py                  # N = 2**20, D = 64, float32
    python bench/matvec_sums.py --n 262144 --rounds 5

One full-batch logistic epoch (logits, BCE, gradient, update), jitted by JAX and compiled by
torch.compile, its products written as ``X @ w`` and ``Gᵀ @ X`` or as xptrain.matvec writes
them (``sum(X * wᵀ, 1)``, ``sum(G * X, 0)``); medians of ``--rounds`` alternated calls after two
untimed ones, a copy of X beside them, and each form's gradient against the float64 one
(largest relative error). Machine-dependent: compare the ratios, and name the machine.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

from xptrain.backends.base import cpu_name
from xptrain.matvec import MatvecAsSums

FORMS = ("dot", "sums")


def epoch(xp, X, y, n: int, sums: bool) -> Callable:
    """``(w, b) -> (w', b', Σ loss terms, Gᵀ·X)``: one full-batch epoch of the seed's model,
    its products through :class:`~xptrain.matvec.MatvecAsSums` with ``sums``."""
    mv = MatvecAsSums(xp) if sums else xp

    def run(w, b):
        A = 1 / (1 + xp.exp(-(mv.matmul(X, w) + b)))
        G = A - y
        loss = xp.sum(-(y * xp.log(A) + (1 - y) * xp.log(1 - A)))
        g = mv.matmul(G.T, X)
        return w - g.T / n, b - xp.sum(G) / n, loss, g

    return run


def timed(calls: dict[str, Callable[[], object]], sync: Callable, rounds: int) -> dict:
    for call in calls.values():
        sync(call())
        sync(call())  # compilation, first touch
    times = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            sync(call())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2**20)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    n, d = args.n, args.d
    rng = np.random.default_rng(0)
    Xh = rng.standard_normal((n, d), dtype=np.float32)
    yh = (Xh[:, :1] > 0).astype(np.float32)
    wh = np.full((d, 1), 0.01, np.float32)
    out = np.empty_like(Xh)
    copy = timed({"copy": lambda: np.copyto(out, Xh)}, lambda _: None, args.rounds)["copy"]
    X64, y64 = Xh.astype(np.float64), yh.astype(np.float64)
    G64 = 1 / (1 + np.exp(-(X64 @ wh.astype(np.float64)))) - y64
    truth = (G64.T @ X64).T
    print(f"N={n} D={d} float32 ({cpu_name()}); one copy of X {copy * 1e3:.1f} ms")
    for name, (calls, sync, grad_of) in _libraries(Xh, yh, wh, n).items():
        seconds = timed(calls, sync, args.rounds)
        for form, s in seconds.items():
            err = np.max(np.abs(grad_of(form) - truth) / np.abs(truth))
            ratio = s / copy
            print(f"{name:14} {form:5} {s * 1e3:8.1f} ms ({ratio:.2f} copies) grad err {err:.1e}")
        print(f"{name:14} dot / sums = {seconds['dot'] / seconds['sums']:.2f}")


def _libraries(Xh, yh, wh, n) -> dict:
    """Per library installed: the two forms' calls, its sync, and each form's gradient."""
    found = {}
    for name, build in (("jax.jit", _jax), ("torch.compile", _torch)):
        try:
            found[name] = build(Xh, yh, wh, n)
        except ImportError as err:
            print(f"{name}: not installed ({err.name})")
    return found


def _jax(Xh, yh, wh, n) -> tuple:
    import jax
    import jax.numpy as jnp

    X, y, w, b = (jax.device_put(a) for a in (Xh, yh, wh, np.zeros((1, 1), np.float32)))
    steps = {f: jax.jit(epoch(jnp, X, y, n, f == "sums")) for f in FORMS}
    calls = {f: functools.partial(step, w, b) for f, step in steps.items()}
    return calls, jax.block_until_ready, lambda f: np.asarray(calls[f]()[3]).T


def _torch(Xh, yh, wh, n) -> tuple:
    import torch
    from array_api_compat import torch as xp  # axis= and keepdims= as the standard's

    X, y, w, b = (torch.from_numpy(a) for a in (Xh, yh, wh, np.zeros((1, 1), np.float32)))
    steps = {f: torch.compile(epoch(xp, X, y, n, f == "sums")) for f in FORMS}
    calls = {f: functools.partial(step, w, b) for f, step in steps.items()}
    # on the CPU a compiled call is done when it returns
    return calls, lambda _: None, lambda f: calls[f]()[3].numpy().T


if __name__ == "__main__":
    main()
