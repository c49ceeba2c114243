"""Steady-state epochs on linear:65536,64 (float32, 16 MiB of X), every backend and mode side by
side in one run, grouped per problem:

    pytest bench/ -n 0 --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

Setup (moving the data, compiling, warming up) happens before the timing; every timed call ends
with the backend's sync. ``extra_info`` carries the bytes of X read per epoch, so GB/s follow.
"""

from __future__ import annotations

import numpy as np
import pytest

from xptrain import backends
from xptrain.bench import LR, bench_problem
from xptrain.loop import fit
from xptrain.steps import StepSpec, initial_carry, make_step

N, D, DTYPE, EPOCHS = 65536, 64, "float32", 5
CASES = [
    (name, mode)
    for name in backends.available()
    for mode in ("eager", "jit")
    if mode == "eager" or backends.get(name).caps.jit
]


@pytest.mark.parametrize("name, mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_epoch(benchmark, name, mode):
    bk = backends.get(name)
    device = bk.devices()[0]
    problem = bench_problem(N, D)
    with bk.float_scope(DTYPE):
        dev = bk.native_device(device)
        X, y, W, b = (
            bk.asarray(a, DTYPE, dev) for a in (problem.X, problem.y, problem.W, np.zeros((1, 1)))
        )
        step = make_step(bk, StepSpec(lr=LR), mode == "jit")
        carry, _ = fit(step, initial_carry(bk, (W, b)), X, y, bk, epochs=3)  # compile, warm up

        def run():
            _, history = fit(step, carry, X, y, bk, epochs=EPOCHS)  # ends with a host transfer
            return history["loss"]

        benchmark.group = f"linear {N}x{D} {DTYPE}, {EPOCHS} epochs"
        benchmark.extra_info.update(
            backend=name, device=device, mode=mode, epochs=EPOCHS, bytes_per_epoch=N * D * 4
        )
        losses = benchmark(run)
    assert len(losses) == EPOCHS and np.isfinite(losses).all()
