"""The one-pass blocked gradient (``xptrain.grad.blocked_loss_and_grads``): the same loss and
gradients as the full-batch path on every backend, and JAX's block loop stays a loop when jitted.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from xptrain import backends
from xptrain.backends.base import Backend, python_fold
from xptrain.grad import (
    MIN_ROWS,
    block_rows,
    blocked_loss_and_grads,
    cache_bytes,
    loss_and_grads,
)
from xptrain.loss import get as get_loss
from xptrain.models import MLP, Logistic

LOGISTIC, BCE = Logistic(), get_loss("bce")

N, D = 101, 4
MODELS = {  # name: (hidden sizes, activation)
    "logistic": ((), "sigmoid"),
    "mlp-tanh": ((5, 3), "tanh"),
    "mlp-relu": ((5, 3), "relu"),
}
BLOCKS = (7, 50, N, 4 * N)  # remainders 3 and 1; one block exactly; one block bigger than N


def _data(hidden: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(5)
    X = rng.standard_normal((N, D))
    y = (X @ rng.standard_normal(D) + 0.5 * rng.standard_normal(N) > 0).astype(np.float64)
    sizes = [D, *hidden, 1]
    params = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        scale = math.sqrt(6 / (fan_in + fan_out))
        params += [
            scale * rng.uniform(-1, 1, (fan_in, fan_out)),
            0.1 * rng.standard_normal((1, fan_out)),
        ]
    return X, y[:, None], params


def _on(bk: Backend, dtype: str, device: str, *arrays: Any) -> list[Any]:
    dev = bk.native_device(device)
    return [bk.asarray(a, dtype, dev) for a in arrays]


def _full_batch(xp: Any, params: tuple, X: Any, y: Any, activation: str, loss: str) -> tuple:
    return loss_and_grads(xp, MLP((), activation), get_loss(loss), params, X, y)


def _rel_err(bk: Backend, got: Any, want: Any) -> float:
    """Normwise relative difference: max |got - want| / max |want|."""
    g, w = bk.to_numpy(got).astype(np.float64), bk.to_numpy(want).astype(np.float64)
    assert g.shape == w.shape
    return float(np.max(np.abs(g - w)) / max(np.max(np.abs(w)), np.finfo(np.float64).tiny))


def _tolerance(dtype: str) -> float:
    # A few ulps times √N: sums of N terms in another order (blocks, then across blocks).
    eps = np.finfo(dtype).eps
    return 16 * eps * math.sqrt(N)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("loss", ["bce", "bce-logits"])
@pytest.mark.parametrize("model", list(MODELS))
def test_blocked_matches_full_batch(backend, dtype, model, loss, block):
    bk, (hidden, activation) = backend.impl, MODELS[model]
    X0, y0, params0 = _data(hidden)
    with bk.float_scope(dtype):
        X, y, *params = _on(bk, dtype, backend.device, X0, y0, *params0)
        params = tuple(params)
        want_loss, want_grads = _full_batch(bk.xp, params, X, y, activation, loss)
        got_loss, got_grads = blocked_loss_and_grads(
            bk.xp, MLP((), activation), get_loss(loss), params, X, y, block, bk.fold
        )
        assert got_loss.dtype == want_loss.dtype and got_loss.shape == want_loss.shape == (2,)
        assert len(got_grads) == len(params)
        tol = _tolerance(dtype)
        assert _rel_err(bk, got_loss, want_loss) <= tol
        for got, want, p in zip(got_grads, want_grads, params, strict=True):
            assert got.dtype == p.dtype and got.shape == p.shape
            assert _rel_err(bk, got, want) <= tol


def test_float64_agreement_is_tight(backend):
    """float64: the blocked sums differ from the full-batch ones by rounding only (~1e-15)."""
    bk = backend.impl
    X0, y0, params0 = _data((5, 3))
    with bk.float_scope("float64"):
        X, y, *params = _on(bk, "float64", backend.device, X0, y0, *params0)
        want_loss, want_grads = _full_batch(bk.xp, tuple(params), X, y, "tanh", "bce")
        got_loss, got_grads = blocked_loss_and_grads(
            bk.xp, MLP((), "tanh"), get_loss("bce"), tuple(params), X, y, 8, bk.fold
        )
        errors = [_rel_err(bk, got_loss, want_loss)]
        errors += [_rel_err(bk, g, w) for g, w in zip(got_grads, want_grads, strict=True)]
    assert max(errors) < 1e-13


@pytest.mark.backends("jax")
def test_blocked_under_jax_jit():
    """Compiled with jax.jit (the loop a real lax.fori_loop): the same numbers as eager."""
    bk = backends.get("jax")
    X0, y0, params0 = _data((5, 3))
    with bk.float_scope("float64"):
        X, y, *params = _on(bk, "float64", "cpu", X0, y0, *params0)

        def run(params: tuple, X: Any, y: Any) -> tuple:
            return blocked_loss_and_grads(
                bk.xp, MLP((), "relu"), get_loss("bce-logits"), params, X, y, 7, bk.fold
            )

        eager_loss, eager_grads = run(tuple(params), X, y)
        jit_loss, jit_grads = bk.jit(run)(tuple(params), X, y)
        want_loss, want_grads = _full_batch(bk.xp, tuple(params), X, y, "relu", "bce-logits")
        assert _rel_err(bk, jit_loss, eager_loss) < 1e-13
        assert _rel_err(bk, jit_loss, want_loss) < 1e-13
        for g, e, w in zip(jit_grads, eager_grads, want_grads, strict=True):
            assert _rel_err(bk, g, e) < 1e-13 and _rel_err(bk, g, w) < 1e-13


# -- JAX: the block loop is a loop in the compiled program --------------------------------------


def _jaxpr_stats(fold: Any, n: int, block: int) -> tuple[int, set[str]]:
    """(number of top-level equations, primitive names at any depth) of the jitted blocked
    gradient for n rows (a test calling this declares it needs the jax backend)."""
    import jax
    from jax.extend.core import jaxprs_in_params

    bk = backends.get("jax")
    X0, y0, params0 = _data((5, 3))
    rng = np.random.default_rng(0)
    X0 = rng.standard_normal((n, D))
    y0 = (rng.random((n, 1)) > 0.5).astype(np.float64)
    with bk.float_scope("float32"):
        X, y, *params = _on(bk, "float32", "cpu", X0, y0, *params0)

        def run(params: tuple, X: Any, y: Any) -> tuple:
            return blocked_loss_and_grads(
                bk.xp, MLP((), "tanh"), get_loss("bce"), params, X, y, block, fold
            )

        closed = jax.make_jaxpr(jax.jit(run))(tuple(params), X, y)
    names: set[str] = set()

    def walk(jaxpr: Any) -> None:
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for sub in jaxprs_in_params(eqn.params):
                walk(sub)

    walk(closed.jaxpr)
    inner = closed.jaxpr.eqns[0].params["jaxpr"].jaxpr  # inside the pjit
    return len(inner.eqns), names


@pytest.mark.backends("jax")
def test_jax_fold_is_a_loop_not_unrolled():
    fold = backends.get("jax").fold
    small, names = _jaxpr_stats(fold, 10 * 8 + 3, 8)  # 10 blocks and a remainder
    large, _ = _jaxpr_stats(fold, 100 * 8 + 3, 8)  # 100 blocks and a remainder
    assert names & {"while", "scan"}, f"no loop primitive among {sorted(names)}"
    assert small == large, "the traced program grew with the number of blocks: unrolled"


@pytest.mark.backends("jax")
def test_python_fold_unrolls_under_jit():
    """The control for the test above: the plain Python loop is unrolled by tracing, so the
    program does grow with the number of blocks (the reason JAX overrides ``fold``)."""
    small, names = _jaxpr_stats(python_fold, 10 * 8 + 3, 8)
    large, _ = _jaxpr_stats(python_fold, 100 * 8 + 3, 8)
    assert large > small
    assert not names & {"while", "scan"}


# -- fold -----------------------------------------------------------------------------------------


def test_default_fold_runs_body_in_order():
    seen: list[int] = []

    def body(i: int, carry: int) -> int:
        seen.append(i)
        return 10 * carry + i

    assert Backend().fold(body, 0, 4) == 123
    assert seen == [0, 1, 2, 3]
    assert python_fold(body, 0, 0) == 0


def test_backend_fold_agrees_with_python_loop(backend):
    bk = backend.impl
    with bk.float_scope("float64"):
        (v,) = _on(bk, "float64", backend.device, np.arange(12.0).reshape(4, 3))

        def body(i: Any, carry: Any) -> Any:
            return 2 * carry + v[i, ...]

        init = bk.xp.zeros_like(v[0, ...])
        got, want = bk.fold(body, init, 4), python_fold(body, init, 4)
        np.testing.assert_array_equal(bk.to_numpy(got), bk.to_numpy(want))


# -- block size -----------------------------------------------------------------------------------


def test_block_rows_compiled_fits_half_the_l2():
    mib = 1 << 20
    assert block_rows(2**20, 64, 4, compiled=True, cache=mib) == 2048  # 512 KiB of float32
    assert block_rows(2**20, 64, 8, compiled=True, cache=mib) == 1024
    assert block_rows(2**20, 48, 4, compiled=True, cache=mib) == 2048  # a power of two, down
    assert block_rows(2**20, 10_000, 8, compiled=True, cache=mib) == MIN_ROWS  # the floor
    assert block_rows(100, 64, 4, compiled=True, cache=mib) == 100  # never more than N


def test_block_rows_eager_fits_an_eighth_of_the_l3():
    assert block_rows(2**20, 64, 4, cache=32 << 20) == 16384  # 4 MiB of float32
    assert block_rows(2**20, 64, 8, cache=32 << 20) == 8192
    assert block_rows(5000, 64, 4, cache=32 << 20) == 5000


def test_block_rows_default_reads_this_machine():
    for compiled in (False, True):
        rows = block_rows(2**24, 64, 4, compiled=compiled)
        assert MIN_ROWS <= rows <= 2**24 and rows & (rows - 1) == 0
    assert block_rows(2**24, 64, 4, cache=cache_bytes(3)) == block_rows(2**24, 64, 4)


def test_cache_bytes_from_sysfs(tmp_path):
    for i, (level, kind, size) in enumerate(
        [
            (1, "Data", "48K"),
            (1, "Instruction", "32K"),
            (2, "Unified", "2048K"),
            (3, "Unified", "32M"),
        ]
    ):
        index = tmp_path / f"index{i}"
        index.mkdir()
        (index / "level").write_text(f"{level}\n")
        (index / "type").write_text(f"{kind}\n")
        (index / "size").write_text(f"{size}\n")
    assert cache_bytes(1, str(tmp_path)) == 48 << 10
    assert cache_bytes(2, str(tmp_path)) == 2 << 20
    assert cache_bytes(3, str(tmp_path)) == 32 << 20
    assert cache_bytes(2, str(tmp_path / "absent")) == 1 << 20  # the fallback
    assert cache_bytes(4, str(tmp_path)) == 1 << 20


def test_default_block_is_block_rows():
    xp = backends.get("numpy").xp
    X0, y0, params0 = _data(())
    want = blocked_loss_and_grads(
        xp, LOGISTIC, BCE, tuple(params0), X0, y0, block=block_rows(N, D, 8)
    )
    got = blocked_loss_and_grads(xp, LOGISTIC, BCE, tuple(params0), X0, y0)
    assert got[0].tolist() == want[0].tolist()


def test_block_must_be_positive():
    xp = backends.get("numpy").xp
    X0, y0, params0 = _data(())
    with pytest.raises(ValueError, match="block"):
        blocked_loss_and_grads(xp, LOGISTIC, BCE, tuple(params0), X0, y0, block=0)


@pytest.mark.slow
@pytest.mark.backends("torch")
def test_blocked_under_torch_compile():
    """torch.compile of the whole blocked gradient (its Python fold is unrolled into the graph:
    fine for a few blocks): the same numbers as eager."""
    bk = backends.get("torch")
    X0, y0, params0 = _data(())
    with bk.float_scope("float64"):
        X, y, *params = _on(bk, "float64", "cpu", X0, y0, *params0)

        def run(params: tuple, X: Any, y: Any) -> tuple:
            return blocked_loss_and_grads(
                bk.xp, MLP((), "sigmoid"), get_loss("bce"), params, X, y, 25, bk.fold
            )

        eager_loss, eager_grads = run(tuple(params), X, y)
        jit_loss, jit_grads = bk.jit(run)(tuple(params), X, y)
        assert _rel_err(bk, jit_loss, eager_loss) < 1e-13
        for g, e in zip(jit_grads, eager_grads, strict=True):
            assert _rel_err(bk, g, e) < 1e-13


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_row_groups_on_threads_agree(backend, workers):
    """With ``workers`` > 1 the blocks are cut into contiguous groups, folded apart (on NumPy,
    on threads) and added in order: the same loss and gradients up to rounding, and the same
    bits every time for a given ``workers``."""
    import threading

    bk = backend.impl
    X0, y0, params0 = _data(MODELS["mlp-tanh"][0])
    seen = set()

    def spread(fn, count):
        def tracked(i):
            seen.add(threading.current_thread().name)
            return fn(i)

        return bk.spread(tracked, count)

    with bk.float_scope("float64"):
        X, y, *params = _on(bk, "float64", backend.device, X0, y0, *params0)
        params = tuple(params)
        want_loss, want_grads = _full_batch(bk.xp, params, X, y, "tanh", "bce")
        runs = [
            blocked_loss_and_grads(
                bk.xp, MLP((), "tanh"), get_loss("bce"), params, X, y, 7, bk.fold, spread, workers
            )
            for _ in range(2)
        ]
    for got_loss, got_grads in runs:
        assert _rel_err(bk, got_loss, want_loss) <= _tolerance("float64")
        for got, want in zip(got_grads, want_grads, strict=True):
            assert _rel_err(bk, got, want) <= _tolerance("float64")
    assert bk.to_numpy(runs[0][0]).tolist() == bk.to_numpy(runs[1][0]).tolist()
    if bk.workers > 1:  # NumPy on a multi-core machine: the groups ran on its threads
        assert any(name.startswith("xptrain-numpy") for name in seen)


FORKED = """
import multiprocessing, numpy as np, xptrain

def run(_=0):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((2000, 5))
    return xptrain.train(X, (X[:, 0] > 0).astype(float), epochs=3, lr=0.5, path="block:256").losses

if __name__ == "__main__":
    want = run()  # the parent's pool exists now
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(run).get(timeout=60) == want
    print("ok")
"""


@pytest.mark.needs("fork")
def test_numpy_row_groups_work_in_a_forked_child(tmp_path):
    """A child forked after a run has the parent's pool object but none of its threads: the
    backend makes a new pool there instead of waiting on the dead one forever. (In a fresh
    process: forking this one, which has JAX's threads, could deadlock for other reasons.)"""
    from helpers import run_python

    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    run = run_python(str(script), timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_shared_settings_come_back_when_runs_overlap():
    """Two runs lowering a process-wide setting with interleaved spans: the setting stays low
    while either runs and returns to its first value after both (not to the lowered one)."""
    from xptrain.backends.base import Shared

    value = {"threads": 2}

    class Lowered:
        def __enter__(self):
            self.before = value["threads"]
            value["threads"] = 1

        def __exit__(self, *exc):
            value["threads"] = self.before

    shared = Shared(Lowered)
    a, b = shared(), shared()
    a.__enter__()
    b.__enter__()
    a.__exit__(None, None, None)
    assert value["threads"] == 1  # b still runs
    b.__exit__(None, None, None)
    assert value["threads"] == 2


@pytest.mark.needs("threads")
def test_worker_threads_keep_the_callers_float_settings():
    """np.errstate is per thread: the row groups run with the caller's settings, so the
    one-pass path warns (or not) exactly as the full-batch path does."""
    import warnings

    bk = backends.get("numpy")
    big = np.full((4, 1), 1e4)
    with warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("error")
        bk.spread(lambda i: np.exp(big), 2)  # would raise RuntimeWarning without the settings
