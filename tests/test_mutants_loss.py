"""Each loss's terms, derivative, count, hits and label checks against formulas written out here
in plain NumPy: the tests that kill core/loss.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import re

import array_api_compat.numpy as xp
import numpy as np
import pytest

import xptrain.loss
from xptrain.errors import InvalidInput
from xptrain.loss import LOSSES, _bce_guarded, for_labels, get, one_hot, sigmoid

RNG = np.random.default_rng(7)
Z = RNG.normal(scale=3.0, size=(6, 1))
Y01 = np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]])


def _expit(z):
    return np.exp(-np.logaddexp(0, -z))  # 1/(1+e^-z), finite everywhere


def _softmax_ce(y_onehot, z):
    lse = np.log(np.sum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1, keepdims=True))
    lse += z.max(axis=1, keepdims=True)
    return lse - np.sum(y_onehot * z, axis=1, keepdims=True), np.exp(z - lse) - y_onehot


def _fd_grad(terms, y, z, h=1e-6):
    """Central differences of Σ terms with respect to each element of z."""
    g = np.zeros_like(z)
    for i in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[i] += h
        down[i] -= h
        g[i] = (np.sum(terms(xp, y, up)) - np.sum(terms(xp, y, down))) / (2 * h)
    return g


def test_sigmoid_is_the_seeds_formula():
    z = np.array([-2.0, 0.0, 0.5, 3.0])
    assert np.array_equal(sigmoid(xp, z), 1 / (1 + np.exp(-z)))
    assert sigmoid(xp, np.array([0.0]))[0] == 0.5


@pytest.mark.parametrize("name", ["bce", "bce-logits"])
def test_binary_terms_and_derivative(name):
    loss = get(name)
    A = 1 / (1 + np.exp(-Z))
    seed = -(Y01 * np.log(A) + (1 - Y01) * np.log(1 - A))
    terms, G = loss.terms_and_grad(xp, Y01, Z)
    np.testing.assert_allclose(loss.terms(xp, Y01, Z), seed, rtol=1e-13)
    np.testing.assert_allclose(terms, seed, rtol=1e-13)
    np.testing.assert_allclose(G, A - Y01, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(G, _fd_grad(loss.terms, Y01, Z), rtol=1e-6, atol=1e-9)


def test_bce_keeps_the_seeds_bits_where_finite():
    A = 1 / (1 + np.exp(-Z))
    seed = -(Y01 * np.log(A) + (1 - Y01) * np.log(1 - A))
    terms, G = get("bce").terms_and_grad(xp, Y01, Z)
    assert np.array_equal(get("bce").terms(xp, Y01, Z), seed)
    assert np.array_equal(terms, seed) and np.array_equal(G, A - Y01)


@pytest.mark.parametrize("name", ["bce", "bce-logits"])
def test_saturated_binary_terms_are_the_logit_form(name):
    """z = 40 rounds A to 1, |z| = 800 overflows exp: there the terms are the logit form
    max(z, 0) - z·y + log1p(e^-|z|), with e^-40 kept (not rounded away)."""
    z = np.array([[40.0], [40.0], [800.0], [800.0], [-800.0], [-800.0], [-40.0]])
    y = np.array([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0], [1.0]])
    want = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    assert want[1, 0] == np.exp(-40.0)
    loss = get(name)
    with np.errstate(all="ignore"):
        both = loss.terms_and_grad(xp, y, z)
        for terms in (loss.terms(xp, y, z), both[0]):
            np.testing.assert_allclose(terms, want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(both[1], _expit(z) - y, rtol=1e-15)


def test_softmax_ce_terms_and_derivative():
    z = RNG.normal(scale=2.0, size=(5, 4))
    labels = np.array([[0], [3], [1], [1], [2]])
    y = one_hot(labels, 4)
    want, want_grad = _softmax_ce(y, z)
    loss = get("softmax-ce")
    terms, G = loss.terms_and_grad(xp, y, z)
    np.testing.assert_allclose(loss.terms(xp, y, z), want, rtol=1e-13)
    np.testing.assert_allclose(terms, want, rtol=1e-13)
    np.testing.assert_allclose(G, want_grad, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(G, _fd_grad(loss.terms, y, z), rtol=1e-6, atol=1e-9)
    assert terms.shape == (5, 1)


def test_softmax_ce_is_stable_for_huge_logits():
    """The largest logit is taken out before exp: logits of ±1000 give exact small numbers."""
    z = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]])
    y = one_hot(np.array([[0], [2]]), 3)
    loss = get("softmax-ce")
    for terms in (loss.terms(xp, y, z), loss.terms_and_grad(xp, y, z)[0]):
        np.testing.assert_allclose(terms[:, 0], [0.0, np.log1p(np.exp(-1.0)) + 1.0], atol=1e-15)
    G = loss.terms_and_grad(xp, y, z)[1]
    e = np.exp(-1.0)
    np.testing.assert_allclose(G[1], [0.0, 1 / (1 + e), e / (1 + e) - 1], atol=1e-15)


def test_mse_terms_and_derivative():
    out = RNG.normal(size=(4, 3))
    y = RNG.normal(size=(4, 3))
    terms, G = get("mse").terms_and_grad(xp, y, out)
    np.testing.assert_allclose(get("mse").terms(xp, y, out), (out - y) ** 2, rtol=1e-15)
    np.testing.assert_allclose(terms, (out - y) ** 2, rtol=1e-15)
    np.testing.assert_allclose(G, 2 * (out - y), rtol=1e-15)


def test_one_hot():
    got = one_hot(np.array([[2.0], [0.0], [1.0], [2.0]]), 4)
    want = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float64)
    assert got.dtype == np.float64 and np.array_equal(got, want)


def test_targets_encode_only_softmax_ce():
    y = np.array([[1.0], [0.0]])
    assert np.array_equal(get("softmax-ce").targets(y, 3), [[0, 1, 0], [1, 0, 0]])
    for name in ("bce", "bce-logits", "mse"):
        assert get(name).targets(y, 3) is y


def test_count_and_value():
    y = np.zeros((4, 3))
    out = np.arange(12.0).reshape(4, 3)
    assert get("mse").count(y) == 12 and get("bce").count(y[:, :1]) == 4
    assert get("mse").value(xp, y, out) == 1 / 12 * np.sum(out * out)
    z = np.array([[0.5], [-1.0], [2.0], [0.0]])
    yb = np.array([[1.0], [0.0], [0.0], [1.0]])
    A = 1 / (1 + np.exp(-z))
    want = 1 / 4 * np.sum(-(yb * np.log(A) + (1 - yb) * np.log(1 - A)))
    assert get("bce").value(xp, yb, z) == want


def test_hits():
    z = np.array([[-1.0], [0.0], [2.0], [0.5], [-3.0]])
    y = np.array([[0.0], [0.0], [1.0], [0.0], [1.0]])
    hits = get("bce").hits(xp, y, z)
    assert hits.dtype == z.dtype and np.array_equal(hits, [[1], [1], [1], [0], [0]])
    logits = np.array([[0.1, 0.9, 0.0], [2.0, 2.0, 1.0], [0.0, 0.0, 3.0], [5.0, 1.0, 0.0]])
    y = one_hot(np.array([[1], [0], [1], [0]]), 3)
    hits = get("softmax-ce").hits(xp, y, logits)
    assert hits.shape == (4, 1) and np.array_equal(hits[:, 0], [1, 1, 0, 1])
    assert get("mse").hits is None


def test_classifies():
    assert [n for n, loss in LOSSES.items() if loss.classifies] == [
        "bce",
        "bce-logits",
        "softmax-ce",
    ]
    assert set(LOSSES) == {"bce", "bce-logits", "softmax-ce", "mse"}
    assert LOSSES["mse"].per_element and not LOSSES["bce"].per_element


@pytest.mark.parametrize("name", ["bce", "bce-logits"])
def test_binary_labels(name):
    assert get(name).outputs(np.array([0.0, 1.0, 1.0])) == 1
    msg = f"loss {name} needs one column of 0/1 labels; y has 2"
    with pytest.raises(InvalidInput, match=f"^{re.escape(msg)}$"):
        get(name).outputs(np.zeros((3, 2)))
    msg = (
        f"labels must be 0 or 1 for loss {name}; y holds 2 "
        "(class labels 0..K-1: --loss softmax-ce; numbers: --loss mse)"
    )
    with pytest.raises(InvalidInput, match=f"^{re.escape(msg)}$"):
        get(name).outputs(np.array([0.0, 1.0, 2.0, 3.0]))


def test_class_labels():
    loss = get("softmax-ce")
    assert loss.outputs(np.array([0.0, 2.0, 1.0])) == 3
    assert loss.outputs(np.array([4.0])) == 5
    assert loss.check("softmax-ce", np.zeros((0, 1))) == 1
    msg = "loss softmax-ce needs one column of class labels; y has 2"
    with pytest.raises(InvalidInput, match=f"^{re.escape(msg)}$"):
        loss.outputs(np.zeros((3, 2)))
    for bad, shown in ((1.5, "1.5"), (-1.0, "-1"), (-2.0, "-2")):
        msg = f"labels must be whole numbers 0..K-1 for loss softmax-ce; y holds {shown}"
        with pytest.raises(InvalidInput, match=f"^{re.escape(msg)}$"):
            loss.outputs(np.array([0.0, bad, 1.0]))


def test_any_targets():
    assert get("mse").outputs(np.zeros((5, 3))) == 3
    assert get("mse").outputs(np.zeros(5)) == 1
    assert get("mse").outputs(np.zeros((5, 2, 2))) == 4


def test_softmax_ce_takes_each_rows_own_largest_logit():
    """Rows of very different scale: a shift by another row's maximum would underflow to
    log 0 in the small row."""
    z = np.array([[1000.0, 0.0], [0.0, 1.0]])
    y = one_hot(np.array([[0], [1]]), 2)
    want = [np.log1p(np.exp(-1000.0)), np.log1p(np.exp(-1.0))]
    loss = get("softmax-ce")
    for terms in (loss.terms(xp, y, z), loss.terms_and_grad(xp, y, z)[0]):
        np.testing.assert_allclose(terms[:, 0], want, rtol=1e-15)


def test_hits_are_in_the_logits_dtype():
    z = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float32)
    y = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert get("softmax-ce").hits(xp, y, z).dtype == np.float32
    assert get("bce").hits(xp, y[:, :1], z[:, :1]).dtype == np.float32


def test_softmax_ce_counts_rows_of_its_one_hot_targets():
    y = one_hot(np.array([[0], [2], [1]]), 3)
    z = np.zeros((3, 3))
    assert get("softmax-ce").count(y) == 3
    np.testing.assert_allclose(get("softmax-ce").value(xp, y, z), np.log(3.0), rtol=1e-15)


# saturated (z = ±800: A rounds to 0 or 1) and ordinary rows together
Z_MIXED = np.array([[800.0], [-800.0], [0.5], [-1.5], [800.0], [2.0]])
Y_MIXED = np.array([[0.0], [1.0], [1.0], [0.0], [1.0], [0.0]])
WANT_MIXED = np.maximum(Z_MIXED, 0) - Z_MIXED * Y_MIXED + np.log1p(np.exp(-np.abs(Z_MIXED)))


def test_bce_guard_replaces_only_the_saturated_rows_terms():
    """Beside saturated rows, the ordinary rows keep the seed's terms, not the logit form's
    ``G·z + e^-|z|`` (exact only where the sigmoid saturated)."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        terms, G = get("bce").terms_and_grad(xp, Y_MIXED, Z_MIXED)
        A = 1 / (1 + np.exp(-Z_MIXED))
        seed = -(Y_MIXED * np.log(A) + (1 - Y_MIXED) * np.log(1 - A))
    ordinary = [2, 3, 5]
    assert np.array_equal(terms[ordinary], seed[ordinary])
    np.testing.assert_allclose(terms, WANT_MIXED, rtol=1e-15, atol=0)
    np.testing.assert_allclose(G, _expit(Z_MIXED) - Y_MIXED, rtol=1e-15)


def test_bce_terms_take_no_log_of_zero_or_of_a_negative():
    """Autodiff's terms replace a saturated row's A before the logs (log 0 would be inf, and a
    NaN gradient through ``where``): NumPy raises on a division by zero or an invalid log."""
    with np.errstate(over="ignore", divide="raise", invalid="raise"):
        terms = get("bce").terms(xp, Y_MIXED, Z_MIXED)
    np.testing.assert_allclose(terms, WANT_MIXED, rtol=1e-15, atol=0)


def test_bce_guard_given_the_tail_computes_the_seeds_terms_itself():
    """``tail`` without ``seed``: the guard computes the seed's terms from A and keeps them
    wherever they are finite."""
    z, y = Z_MIXED, Y_MIXED
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        e = np.exp(-z)
        A = 1 / (1 + e)
        got = _bce_guarded(xp, y, A, z, A - y, np.minimum(e, 1 / e))
    np.testing.assert_allclose(got, WANT_MIXED, rtol=1e-15, atol=0)


def test_bce_runs_its_guard_only_for_a_non_finite_term_and_reuses_the_seeds_terms(monkeypatch):
    """Training's bce takes the guard's extra operations only when a term is not finite, and
    hands it the seed's terms already computed."""
    seeds = []
    guard = xptrain.loss._bce_guarded

    def spy(xp_, y, A, z, G, tail=None, seed=None):
        seeds.append(seed)
        return guard(xp_, y, A, z, G, tail, seed)

    monkeypatch.setattr(xptrain.loss, "_bce_guarded", spy)
    get("bce").terms_and_grad(xp, Y01, Z)
    assert seeds == []
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        terms, _ = get("bce").terms_and_grad(xp, Y_MIXED, Z_MIXED)
    assert len(seeds) == 1 and seeds[0] is not None
    assert seeds[0].shape == Z_MIXED.shape and np.isinf(seeds[0][0, 0])
    np.testing.assert_allclose(terms, WANT_MIXED, rtol=1e-15, atol=0)


def test_auto_is_no_loss():
    msg = "loss 'auto' names no loss until the labels choose one (for_labels)"
    with pytest.raises(ValueError, match=f"^{re.escape(msg)}$"):
        get("auto")


@pytest.mark.parametrize(
    ("y", "want"),
    [
        (np.array([0.0, 1.0, 1.0, 0.0]), "bce"),
        (np.array([[1.0], [0.0]]), "bce"),
        (np.array([1.0, 1.0]), "bce"),
        (np.array([[0.0, 1.0], [1.0, 0.0]]), "mse"),  # two columns, even of 0/1
        (np.zeros((2, 0)), "bce"),  # no target columns: the seed's loss
        (np.array([0.0, 2.0, 1.0, 2.0]), "softmax-ce"),
        (np.array([[3.0], [0.0], [1.0], [2.0]]), "softmax-ce"),
        (np.array([0.0, 2.0]), "mse"),  # a gap: class 1 absent
        (np.array([1.0, 2.0, 3.0]), "mse"),  # no class 0
        (np.array([-1.0, 0.0, 2.0]), "mse"),  # a negative number
        (np.array([0.5, 1.5, 2.5]), "mse"),  # not whole numbers
        (np.array([0.0, 1.0, 0.5]), "mse"),
    ],
)
def test_the_labels_choose_the_loss(y, want):
    assert for_labels(y) == want
