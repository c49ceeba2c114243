"""The host reference loop is the seed's: it reproduces every number the seed prints."""

import math

import numpy as np
import pytest
from helpers import reference_problems

from xptrain import problems
from xptrain.conformance import compare, tolerance
from xptrain.data import initial_weights, seed_problem
from xptrain.reference import SEED_PRINTED_LOSSES, Reference, reference_run

SimpleRef = Reference


def test_reference_matches_the_seed_to_its_printed_digits():
    ref = reference_run(seed_problem())
    assert ref.losses.shape == (20,)
    for printed, value in zip(SEED_PRINTED_LOSSES, ref.losses, strict=True):
        half_unit = 0.5 * 10.0 ** (math.floor(math.log10(printed)) - 11)  # 12 significant digits
        assert abs(value - printed) <= half_unit
        assert f"{value:.12g}" == repr(printed)


def _mp_reference(problem, epochs, lr, digits=50) -> tuple[list[float], list[float]]:
    """The seed's loop in mpmath at ``digits`` significant digits: the truth, for small N. The
    losses of every epoch, and the final parameters (W, then b) rounded to float64."""
    import mpmath

    mp = mpmath.mp.clone()
    mp.dps = digits
    X = [[mp.mpf(float(v)) for v in row] for row in problem.X]
    y = [mp.mpf(float(v)) for v in problem.y.ravel()]
    W = [mp.mpf(float(v)) for v in initial_weights(len(X[0]), 1).ravel()]
    b, n, losses = mp.mpf(0), len(X), []
    for _ in range(epochs):
        A = [
            1 / (1 + mp.exp(-(mp.fsum(x * w for x, w in zip(row, W, strict=True)) + b)))
            for row in X
        ]
        losses.append(
            -mp.fsum(t * mp.log(a) + (1 - t) * mp.log(1 - a) for t, a in zip(y, A, strict=True)) / n
        )
        dz = [a - t for a, t in zip(A, y, strict=True)]
        W = [
            w - lr * mp.fsum(row[j] * d for row, d in zip(X, dz, strict=True)) / n
            for j, w in enumerate(W)
        ]
        b = b - lr * mp.fsum(dz) / n
    return [float(v) for v in losses], [float(v) for v in (*W, b)]


@pytest.mark.needs("mpmath")
def test_reference_matches_50_digit_arithmetic_on_the_seed():
    ref = reference_run(seed_problem())
    losses, params = _mp_reference(seed_problem(), 20, 1.0)
    truth = np.array(losses)
    assert np.max(np.abs(ref.losses - truth) / truth) < 4 * np.finfo(np.float64).eps
    # the final parameters, normwise relative, within the model's float64 tolerance
    ours, exact = np.append(ref.W.ravel(), ref.b), np.array(params)
    assert ours.shape == (4,)
    err = np.max(np.abs(ours - exact)) / np.max(np.abs(exact))
    assert err <= tolerance("float64", 4, 3) * math.sqrt(20)


def _name(param) -> str:
    """A reference problem's name, from reference_problems()'s plain names or params."""
    return param if isinstance(param, str) else param.values[0]


@pytest.mark.skipif(
    np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps,
    reason="np.longdouble is plain float64 on this platform",
)
@pytest.mark.parametrize(
    "name", [p for p in reference_problems() if not problems.get(_name(p)).hidden]
)
def test_reference_matches_long_double(name):
    """The seed's float64 loop against the same loop in np.longdouble (64-bit mantissa on
    x86), on the problems of the seed's model (the MLP problems have their own reference)."""
    spec = problems.get(name)
    data = spec.make()
    ref = reference_run(data, spec.epochs, spec.lr)
    precise = reference_run(data, spec.epochs, spec.lr, dtype=np.longdouble)
    rel = np.abs(ref.losses - precise.losses) / precise.losses
    assert rel.max() < 16 * np.finfo(np.float64).eps
    # and a float64 run is within the model's float64 tolerance of the truth too
    assert rel.max() <= tolerance("float64", *data.X.shape)


def test_tolerance_model_scales_with_the_problem():
    """τ is proportional to the dtype's eps and grows as √N + √D."""
    seed64, seed32 = tolerance("float64", 4, 3), tolerance("float32", 4, 3)
    assert seed32 / seed64 == pytest.approx(2.0**29)  # eps ratio of the dtypes
    big = tolerance("float32", 10_000, 32)
    assert big / seed32 == pytest.approx((100 + 32**0.5) / (2 + 3**0.5))
    assert seed64 <= 1e-12 and seed32 <= 1e-6  # inside the foundation's fixed bounds


def _fake_run(losses, W, b, dtype="float64"):
    from types import SimpleNamespace

    return SimpleNamespace(losses=list(losses), params=[W, np.full((1, 1), b)], dtype=dtype)


def test_loss_tolerance_widens_as_the_loss_falls():
    """A relative error of 2τ fails where L = 2 (tolerance τ(1 + 1/L) = 1.5τ) and passes where
    L = 0.4 (3.5τ): the absolute rounding of the log terms weighs more as the loss falls."""
    tau = 1e-10
    ref = SimpleRef(np.array([2.0, 0.4]), [np.ones((2, 1)), np.zeros((1, 1))])
    late = _fake_run([2.0, 0.4 * (1 + 2 * tau)], np.ones((2, 1)), 0.0)
    assert compare(late, ref, tau).passed
    early = _fake_run([2.0 * (1 + 2 * tau), 0.4], np.ones((2, 1)), 0.0)
    assert compare(early, ref, tau).first_bad_epoch == 0


def test_parameter_tolerance_grows_as_the_root_of_the_epochs():
    tau = 1e-10
    for epochs in (4, 100):
        ref = SimpleRef(np.full(epochs, 0.5), [np.ones((2, 1)), np.zeros((1, 1))])
        inside = _fake_run(ref.losses, np.ones((2, 1)) * (1 + 0.9 * tau * epochs**0.5), 0.0)
        outside = _fake_run(ref.losses, np.ones((2, 1)) * (1 + 1.1 * tau * epochs**0.5), 0.0)
        assert compare(inside, ref, tau).passed
        assert not compare(outside, ref, tau).passed
        assert compare(outside, ref, tau).first_bad_epoch is None  # the losses were fine
