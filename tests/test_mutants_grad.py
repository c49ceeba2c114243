"""Full-batch and one-pass gradients against the logistic model's gradient written out in NumPy
(X·W + b, σ, Xᵀ(A − y)/N), over block sizes, row groups and padding rows: the tests that kill
core/grad.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

from xptrain.backends.base import in_turn
from xptrain.grad import (
    MIN_ROWS,
    PAD_LABEL,
    _vector,
    block_rows,
    blocked_loss_and_grads,
    blocked_sums,
    cache_bytes,
    loss_and_grads,
    masked_targets,
    metric_means,
    metric_sums,
)
from xptrain.loss import get
from xptrain.models import MLP, Logistic

RNG = np.random.default_rng(11)
N, D = 23, 4
X = RNG.normal(size=(N, D))
Y = (RNG.random((N, 1)) < 0.5).astype(np.float64)
PARAMS = (RNG.normal(size=(D, 1)), np.array([[0.3]]))


def _by_hand(X, y, W, b):
    """bce through the logistic model in plain NumPy: ([loss, accuracy], (dW, db))."""
    z = X @ W + b
    A = 1 / (1 + np.exp(-z))
    loss = -np.mean(y * np.log(A) + (1 - y) * np.log(1 - A))
    accuracy = np.mean((z > 0) == (y > 0.5))
    return [loss, accuracy], ((X.T @ (A - y)) / len(y), np.sum(A - y, keepdims=True) / len(y))


def _close(got, want):
    metrics, grads = got
    np.testing.assert_allclose(metrics, want[0], rtol=1e-13, atol=1e-15)
    assert len(grads) == len(want[1])
    for g, w in zip(grads, want[1], strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_full_batch_is_the_logistic_gradient():
    _close(loss_and_grads(xp, Logistic(), get("bce"), PARAMS, X, Y), _by_hand(X, Y, *PARAMS))


@pytest.mark.parametrize("block", [1, 2, 5, 7, 22, 23, 100])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_blocked_is_the_same_gradient(block, workers):
    got = blocked_loss_and_grads(
        xp, Logistic(), get("bce"), PARAMS, X, Y, block=block, spread=in_turn, workers=workers
    )
    _close(got, _by_hand(X, Y, *PARAMS))


def test_row_groups_fold_their_blocks_in_order():
    """workers=2 over 4 blocks: spread is asked for two groups, each folded over two blocks."""
    calls = []

    def spread(fn, count):
        calls.append(count)
        return [fn(i) for i in range(count)]

    def fold(body, init, count):
        calls.append(("fold", count))
        carry = init
        for i in range(count):
            carry = body(i, carry)
        return carry

    got = blocked_loss_and_grads(
        xp, Logistic(), get("bce"), PARAMS, X[:20], Y[:20], 5, fold, spread, workers=2
    )
    assert calls == [2, ("fold", 2), ("fold", 2)]
    _close(got, _by_hand(X[:20], Y[:20], *PARAMS))


def test_blocked_mse_and_softmax_through_an_mlp_match_full_batch():
    mlp = MLP((3,), "tanh")
    params = mlp.init(np.random.default_rng(0), D, 3)
    targets = RNG.normal(size=(N, 3))
    onehot = get("softmax-ce").targets(RNG.integers(0, 3, size=(N, 1)), 3)
    for name, y in (("mse", targets), ("softmax-ce", onehot)):
        full = loss_and_grads(xp, mlp, get(name), params, X, y)
        blocked = blocked_loss_and_grads(xp, mlp, get(name), params, X, y, block=4)
        _close(blocked, (full[0], full[1]))
    metrics, _ = loss_and_grads(xp, mlp, get("mse"), params, X, targets)
    out = mlp.forward(xp, params, X)
    assert metrics.shape == (1,)
    np.testing.assert_allclose(metrics[0], np.mean((out - targets) ** 2), rtol=1e-14)


def test_padding_rows_add_nothing():
    pad = np.vstack([X, RNG.normal(size=(3, D))])
    y = np.vstack([Y, np.full((3, 1), PAD_LABEL)])
    keep, clean = masked_targets(xp, y)
    assert keep[:, 0].tolist() == [True] * N + [False] * 3
    assert np.array_equal(clean, np.vstack([Y, np.zeros((3, 1))]))
    for block in (4, 26):
        totals, sums = blocked_sums(
            xp, Logistic(), get("bce"), PARAMS, pad, y, block=block, masked=True
        )
        want_metrics, want_grads = _by_hand(X, Y, *PARAMS)
        np.testing.assert_allclose(totals, [want_metrics[0] * N, want_metrics[1] * N], rtol=1e-13)
        for s, w in zip(sums, want_grads, strict=True):
            np.testing.assert_allclose(s, w * N, rtol=1e-12, atol=1e-15)


def test_metric_means():
    sums = (np.array(6.0), np.array(3.0))
    assert metric_means(xp, get("bce"), sums, 4, 1).tolist() == [1.5, 0.75]
    assert metric_means(xp, get("mse"), (np.array(6.0),), 4, 3).tolist() == [0.5]
    assert metric_means(xp, get("bce"), np.array([6.0, 3.0]), 4, 1).tolist() == [1.5, 0.75]
    # softmax-ce's targets are one-hot, 3 columns: still a mean over the rows
    assert metric_means(xp, get("softmax-ce"), sums, 4, 3).tolist() == [1.5, 0.75]


def test_a_block_must_hold_a_row():
    with pytest.raises(ValueError, match=r"^block must be ≥ 1 row, got 0$"):
        blocked_loss_and_grads(xp, Logistic(), get("bce"), PARAMS, X, Y, block=0)


def test_block_rows_documented_examples():
    """The docstring's: 1 MiB L2, D = 64, float32, compiled: 2048 rows; 32 MiB L3, eager:
    16384 rows; never below MIN_ROWS, never above N."""
    assert block_rows(1 << 20, 64, 4, compiled=True, cache=1 << 20) == 2048
    assert block_rows(1 << 20, 64, 4, cache=32 << 20) == 16384
    assert block_rows(1000, 64, 4, cache=32 << 20) == 1000
    assert block_rows(1 << 20, 10**6, 8, cache=32 << 20) == MIN_ROWS
    rows = block_rows(1 << 30, 3, 8, cache=10**7)
    assert rows & (rows - 1) == 0 and rows * 3 * 8 <= 10**7 // 8 < 2 * rows * 3 * 8


def test_cache_bytes_reads_the_data_cache_of_a_level(tmp_path):
    for name, level, kind, size in (
        ("index0", 1, "Data", "48K"),
        ("index1", 1, "Instruction", "32K"),
        ("index2", 2, "Unified", "1024K"),
        ("index3", 3, "Unified", "32M"),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "level").write_text(f"{level}\n")
        (tmp_path / name / "type").write_text(f"{kind}\n")
        (tmp_path / name / "size").write_text(f"{size}\n")
    cpu = str(tmp_path)
    assert [cache_bytes(level, cpu) for level in (1, 2, 3)] == [48 << 10, 1 << 20, 32 << 20]
    assert cache_bytes(4, cpu) == 1 << 20  # no such level: the fallback
    (tmp_path / "index3" / "size").write_text("0K\n")
    (tmp_path / "index2" / "size").write_text("2G\n")
    cpu2 = str(tmp_path) + "/."  # another key for functools.cache
    assert cache_bytes(3, cpu2) == 8 << 20 and cache_bytes(2, cpu2) == 2 << 30
    (tmp_path / "index2" / "size").write_text("524288\n")
    assert cache_bytes(2, str(tmp_path) + "/./.") == 524288
    missing = str(tmp_path / "none")
    assert [cache_bytes(level, missing) for level in (1, 2, 3)] == [32 << 10, 1 << 20, 8 << 20]


def test_padding_rows_of_one_hot_targets_add_nothing():
    onehot = get("softmax-ce").targets(RNG.integers(0, 3, size=(N, 1)), 3)
    y = np.vstack([onehot, np.full((2, 3), PAD_LABEL)])
    keep, _ = masked_targets(xp, y)
    assert keep.shape == (N + 2, 1) and keep[:, 0].tolist() == [True] * N + [False] * 2
    mlp = MLP((3,), "tanh")
    params = mlp.init(np.random.default_rng(0), D, 3)
    padded = np.vstack([X, np.ones((2, D))])
    got = blocked_sums(xp, mlp, get("softmax-ce"), params, padded, y, block=5, masked=True)
    want = blocked_sums(xp, mlp, get("softmax-ce"), params, X, onehot, block=5)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    for g, w in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_one_worker_by_default():
    """The default sums the blocks in one order: bit for bit the workers=1 result."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(4096, 3))
    y = (rng.random((4096, 1)) < 0.5).astype(np.float64)
    params = (rng.normal(size=(3, 1)), np.zeros((1, 1)))
    loss = get("bce")
    one = blocked_loss_and_grads(xp, Logistic(), loss, params, X, y, 64, workers=1)
    default = blocked_loss_and_grads(xp, Logistic(), loss, params, X, y, 64)
    assert np.array_equal(one[0], default[0])
    assert all(np.array_equal(a, b) for a, b in zip(one[1], default[1], strict=True))


def test_block_rows_reads_the_cache_of_its_kind_and_the_dtype():
    assert block_rows(1 << 30, 4, 8, compiled=True) == block_rows(
        1 << 30, 4, 8, compiled=True, cache=cache_bytes(2)
    )
    assert block_rows(1 << 30, 4, 8) == block_rows(1 << 30, 4, 8, cache=cache_bytes(3))
    assert block_rows(1, 4, 8) == 1
    # the default block of a float32 X is block_rows(..., itemsize 4)
    X32 = np.ones((1024, 2048), dtype=np.float32)
    counts = []

    def fold(body, init, count):
        counts.append(count)
        return init

    params32 = (np.zeros((2048, 1), np.float32), np.zeros((1, 1), np.float32))
    y32 = np.zeros((1024, 1), np.float32)
    blocked_sums(xp, Logistic(), get("bce"), params32, X32, y32, fold=fold)
    assert counts in ([1024 // block_rows(1024, 2048, 4)], [])  # [] : one block, no fold


def test_a_cache_of_one_kib_is_read(tmp_path):
    (tmp_path / "index0").mkdir()
    for name, text in (("level", "2"), ("type", "Data"), ("size", "1K")):
        (tmp_path / "index0" / name).write_text(text + "\n")
    assert cache_bytes(2, str(tmp_path)) == 1024


def test_padding_rows_add_no_hits():
    """A padding row's target becomes 0: with a negative logit it would count as a hit."""
    W, b = PARAMS
    pad = -10 * np.sign(W.T) * np.ones((2, D))  # z far below 0
    y = np.vstack([Y, np.full((2, 1), PAD_LABEL)])
    totals, _ = blocked_sums(
        xp, Logistic(), get("bce"), PARAMS, np.vstack([X, pad]), y, block=5, masked=True
    )
    want, _ = _by_hand(X, Y, W, b)
    assert totals.dtype == np.float64
    np.testing.assert_allclose(totals[1], want[1] * N, rtol=1e-13)


def test_blocked_sums_default_to_one_worker_and_take_one_row():
    rng = np.random.default_rng(6)
    Xb = rng.normal(size=(4096, 3))
    yb = (rng.random((4096, 1)) < 0.5).astype(np.float64)
    params = (rng.normal(size=(3, 1)), np.zeros((1, 1)))
    one = blocked_sums(xp, Logistic(), get("bce"), params, Xb, yb, 64, workers=1)
    default = blocked_sums(xp, Logistic(), get("bce"), params, Xb, yb, 64)
    assert np.array_equal(one[0], default[0])
    assert all(np.array_equal(a, b) for a, b in zip(one[1], default[1], strict=True))
    got = blocked_loss_and_grads(xp, Logistic(), get("bce"), PARAMS, X[:1], Y[:1])
    _close(got, _by_hand(X[:1], Y[:1], *PARAMS))


def test_the_default_block_of_a_float32_x_counts_4_bytes_a_number(monkeypatch):
    """With the L3 read as 32 MiB (as on a 2-core AMD EPYC; a larger L3 may hold all of X in
    one block), a float32 X of 1165 columns is summed in blocks of 4 MiB / (1165 · 4 bytes) =
    900 rows, down to a power of two: 512; four blocks of 2048 rows (8 bytes a number: eight
    blocks of 256; 3 bytes: two of 1024)."""
    import xptrain.grad

    monkeypatch.setattr(xptrain.grad, "cache_bytes", lambda level=2: 32 << 20)
    n, d = 2048, 1165
    counts = []

    def fold(body, init, count):
        counts.append(count)
        return init

    params32 = (np.zeros((d, 1), np.float32), np.zeros((1, 1), np.float32))
    X32, y32 = np.ones((n, d), np.float32), np.zeros((n, 1), np.float32)
    blocked_sums(xp, Logistic(), get("bce"), params32, X32, y32, fold=fold)
    assert counts == [4]


def test_other_libraries_0d_sums_are_stacked_into_one_vector():
    """0-d arrays that are not NumPy's host scalars (here NumPy's own 0-d arrays, as another
    library's reductions give) take ``stack``: one vector of their dtype."""
    got = _vector(xp, (np.asarray(1.5, np.float32), np.asarray(0.25, np.float32)))
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert got.tolist() == [1.5, 0.25]


def test_masked_hits_are_summed_in_the_logits_dtype():
    """The padding rows' hits are replaced by zeros of the hits' own dtype: their sum stays a
    float32 NumPy value, not an object sum of Python floats."""
    z = np.array([[2.0], [-1.0], [3.0]], np.float32)
    y = np.array([[1.0], [0.0], [0.0]], np.float32)
    keep = np.array([[True], [True], [False]])
    terms = get("bce").terms(xp, y, z)
    sums = metric_sums(xp, get("bce"), y, z, terms, keep)
    assert [type(s) for s in sums] == [np.float32, np.float32]
    assert sums[1] == 2.0


def test_one_feature_is_blocked_like_the_full_batch():
    """X of a single column: the blocked sums start from a zero of X's dtype read at X[0, 0]."""
    X1, W1 = X[:, :1], PARAMS[0][:1]
    got = blocked_loss_and_grads(xp, Logistic(), get("bce"), (W1, PARAMS[1]), X1, Y, block=5)
    _close(got, _by_hand(X1, Y, W1, PARAMS[1]))
