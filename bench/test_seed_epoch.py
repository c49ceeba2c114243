"""Seconds per epoch on the seed problem, each backend beside the seed's own NumPy loop.

    pytest bench/ -n 0 --benchmark-group-by=group --benchmark-columns=median,iqr,rounds

Every timed call ends with the backend's sync (inside ``xptrain.train``); jit variants are
compiled once before timing, so the numbers are steady state. The seed problem is tiny: this
measures per-epoch overhead (Python, dispatch, kernel launch), not bandwidth.
"""

from __future__ import annotations

import numpy as np
import pytest

import xptrain
from xptrain import backends
from xptrain.data import SEED_X, SEED_Y, seed_problem
from xptrain.reference import reference_run

EPOCHS = 200
CASES = [
    (name, jit)
    for name in backends.available()
    for jit in (False, True)
    if not jit or backends.get(name).caps.jit
]


def test_seed_numpy_loop(benchmark):
    """The seed's code as written: the baseline every backend is compared with."""
    benchmark.group = "seed problem, float64"
    benchmark.extra_info.update(backend="seed-numpy-loop", epochs=EPOCHS)
    ref = benchmark(reference_run, seed_problem(), epochs=EPOCHS)
    assert np.isfinite(ref.losses).all()


@pytest.mark.parametrize(
    "name, jit", CASES, ids=[f"{n}-{'jit' if j else 'eager'}" for n, j in CASES]
)
def test_backend(benchmark, name, jit):
    bk = backends.get(name)
    device = bk.devices()[0]
    run = lambda: xptrain.train(  # noqa: E731
        SEED_X, SEED_Y, backend=name, device=device, epochs=EPOCHS, jit=jit
    )
    run()  # compile (jit) and warm up outside the timing
    benchmark.group = "seed problem, float64"
    benchmark.extra_info.update(
        backend=name, device=device, jit=jit, epochs=EPOCHS, bytes_X=SEED_X.size * 8
    )
    result = benchmark(run)
    assert len(result.losses) == EPOCHS
