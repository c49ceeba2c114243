"""The one-pass blocked gradient against the full-batch (naive) epoch and the read bound, per
backend, on linear:2**20,64 in float32 (X = 256 MiB), all in one run and one group:

    pytest bench/test_fastpath.py -n 0 --benchmark-group-by=group \\
        --benchmark-columns=min,median,iqr,rounds --benchmark-sort=name

Variants per backend: ``naive`` (the seed's epoch: ``make_step``, jitted where the backend
compiles best that way, i.e. JAX), ``blocked-auto`` (``block_rows``'s choice) and
``blocked-<rows>`` at fixed block sizes; ``bound`` is one ``sum(X)``, the fastest read of X the
backend has. Every timed call ends with a host transfer (or the backend's sync); compiling and
warming up happen before the timing. ``extra_info`` carries the bytes of X read per epoch, so
GB/s and the ratio to the bound follow. XPTRAIN_FASTPATH_N overrides N (e.g. 65536 for a
quick run).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
import pytest

from xptrain import backends
from xptrain.bench import LR, bench_problem
from xptrain.grad import block_rows
from xptrain.steps import StepSpec, initial_carry, make_step

N = int(os.environ.get("XPTRAIN_FASTPATH_N", 2**20))
D, DTYPE, EPOCHS = 64, "float32", 3
BLOCKS = (2048, 16384)
GROUP = f"linear {N}x{D} {DTYPE}: naive vs blocked vs sum(X), ms per {EPOCHS} epochs"
# array_api_strict checks the standard; it is not a backend anyone times.
NAMES = [name for name in backends.available() if name != "array_api_strict"]
VARIANTS = ["naive", "blocked-auto", *(f"blocked-{b}" for b in BLOCKS)]
CASES = [(name, variant) for name in NAMES for variant in VARIANTS]


@functools.lru_cache(maxsize=1)
def _problem() -> Any:
    return bench_problem(N, D)


def _compiled(bk: backends.Backend) -> bool:
    """Whether the epoch is jitted here: JAX (eager JAX dispatches op by op)."""
    return bk.name == "jax"


def _data(bk: backends.Backend, device: str) -> tuple[Any, ...]:
    problem = _problem()
    dev = bk.native_device(device)
    return tuple(
        bk.asarray(a, DTYPE, dev) for a in (problem.X, problem.y, problem.W, np.zeros((1, 1)))
    )


def _epochs(bk: backends.Backend, step: Any, carry: Any, X: Any, y: Any, epochs: int) -> list:
    pending = []
    for _ in range(epochs):
        carry, loss = step(carry, X, y)
        pending.append(loss)
    return bk.to_numpy(bk.xp.stack(pending)).tolist()  # the host transfer waits for all of it


@pytest.mark.parametrize("name, variant", CASES, ids=[f"{n}-{v}" for n, v in CASES])
def test_epoch(benchmark, name, variant):
    bk = backends.get(name)
    device = bk.devices()[0]
    with bk.float_scope(DTYPE):
        X, y, W, b = _data(bk, device)
        if variant == "naive":
            block = N
            step = make_step(bk, StepSpec(lr=LR), _compiled(bk))
        else:
            size = variant.removeprefix("blocked-")
            auto = block_rows(N, D, 4, compiled=_compiled(bk))
            block = auto if size == "auto" else int(size)
            step = make_step(bk, StepSpec(lr=LR, block=block), _compiled(bk))
        carry = initial_carry(bk, (W, b))
        _epochs(bk, step, carry, X, y, 2)  # compile, warm up

        benchmark.group = GROUP
        benchmark.extra_info.update(
            backend=name,
            device=device,
            variant=variant,
            block=block,
            jit=_compiled(bk),
            epochs=EPOCHS,
            bytes_per_epoch=N * D * 4,
        )
        losses = benchmark(_epochs, bk, step, carry, X, y, EPOCHS)
    assert len(losses) == EPOCHS and np.isfinite(losses).all()


@pytest.mark.parametrize("name", NAMES)
def test_bound_sum(benchmark, name):
    """One read of X: ``sum(X)``, jitted on JAX, ending with the backend's sync."""
    bk = backends.get(name)
    device = bk.devices()[0]
    with bk.float_scope(DTYPE):
        X = _data(bk, device)[0]
        total = bk.jit(bk.xp.sum) if _compiled(bk) else bk.xp.sum

        def read() -> Any:
            out = total(X)
            bk.sync(out)
            return out

        read()
        benchmark.group = GROUP
        benchmark.extra_info.update(
            backend=name, device=device, variant="bound-sum", bytes=N * D * 4
        )
        # scaled to the same epochs as the epoch timings, so the columns compare directly
        benchmark.extra_info["epochs_equivalent"] = EPOCHS
        out = benchmark(lambda: [read() for _ in range(EPOCHS)])
    assert np.isfinite(float(bk.to_numpy(out[-1])))
