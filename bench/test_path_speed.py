"""The default path is never slower than ``--exact`` (the seed's full batch) by more than the
noise, on any CPU backend here: with ``path="auto"`` the full batch is one of the measured
candidates, so a machine where blocks lose keeps the full batch.

    pytest bench/test_path_speed.py -n 0 -s        # N = 2**20, D = 64, float32; ~2 min

Each backend's default and exact runs alternate, ``ROUNDS`` times, after one untimed call of
each (the path's measurement, compilation); the figure is the ratio of the medians of
``TrainResult.seconds`` (the epochs, synced). XPTRAIN_FASTPATH_N overrides N.
"""

from __future__ import annotations

import os
import statistics

import pytest

import xptrain
from xptrain import backends
from xptrain.bench import bench_problem

N = int(os.environ.get("XPTRAIN_FASTPATH_N", 2**20))
D, EPOCHS, ROUNDS = 64, 5, 5
NOISE = 1.05  # the default may be at most 5% slower than --exact
CASES = [
    (name, jit)
    for name in ("numpy", "torch", "jax")
    if name in backends.available()
    for jit in ((False, True) if name == "jax" else (False,))
]


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory):
    """Measure the path afresh (not a decision cached by an earlier, other run)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XPTRAIN_CACHE_DIR", str(tmp_path_factory.mktemp("paths")))
        yield


@pytest.mark.parametrize("name, jit", CASES, ids=[f"{n}{'-jit' if j else ''}" for n, j in CASES])
def test_the_default_path_is_not_slower_than_exact(name: str, jit: bool) -> None:
    problem = bench_problem(N, D)

    def seconds(**how: bool) -> tuple[float, str]:
        result = xptrain.train(
            problem.X, problem.y, backend=name, dtype="float32", epochs=EPOCHS, jit=jit, **how
        )
        return result.seconds, result.path

    seconds(), seconds(exact=True)  # the path's measurement, compilation, first touch
    default, exact = [], []
    for _ in range(ROUNDS):
        (s, path), (e, _) = seconds(), seconds(exact=True)
        default.append(s)
        exact.append(e)
    ratio = statistics.median(default) / statistics.median(exact)
    print(f"\n{name}{' jit' if jit else ''}: default / exact = {ratio:.3f} ({path})")
    if path.startswith("full batch"):  # the exact path itself: the ratio is the noise
        return
    assert ratio <= NOISE, f"the default ({path}) took {ratio:.2f}x the exact path's time"
