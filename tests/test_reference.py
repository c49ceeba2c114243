"""The host reference loop is the seed's: it reproduces every number the seed prints."""

import math

import numpy as np
import pytest

from xptrain import problems
from xptrain.conformance import tolerance
from xptrain.data import initial_weights, seed_problem
from xptrain.reference import SEED_PRINTED_LOSSES, reference_run


def test_reference_matches_the_seed_to_its_printed_digits():
    ref = reference_run(seed_problem())
    assert ref.losses.shape == (20,)
    for printed, value in zip(SEED_PRINTED_LOSSES, ref.losses, strict=True):
        half_unit = 0.5 * 10.0 ** (math.floor(math.log10(printed)) - 11)  # 12 significant digits
        assert abs(value - printed) <= half_unit
        assert f"{value:.12g}" == repr(printed)


def test_reference_final_parameters():
    ref = reference_run(seed_problem())
    np.testing.assert_allclose(ref.W.ravel(), [2.80525921, -0.93462443, -0.37844588], atol=1e-8)
    assert abs(ref.b - -0.32356904) < 1e-8


def _mp_reference(problem, epochs, lr, digits=50):
    """The seed's loop in mpmath at ``digits`` significant digits: the truth, for small N."""
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
    return [float(v) for v in losses]


def test_reference_matches_50_digit_arithmetic_on_the_seed():
    pytest.importorskip("mpmath")
    ref = reference_run(seed_problem())
    truth = np.array(_mp_reference(seed_problem(), 20, 1.0))
    assert np.max(np.abs(ref.losses - truth) / truth) < 4 * np.finfo(np.float64).eps


@pytest.mark.parametrize("name", list(problems.PROBLEMS))
def test_reference_matches_long_double(name):
    """The float64 reference against the same loop in np.longdouble (64-bit mantissa on x86)."""
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("np.longdouble is plain float64 on this platform")
    if name == "breast_cancer":
        pytest.importorskip("sklearn")
    spec = problems.get(name)
    data = spec.make()
    ref = reference_run(data, spec.epochs, spec.lr)
    precise = reference_run(data, spec.epochs, spec.lr, dtype=np.longdouble)
    rel = np.abs(ref.losses - precise.losses) / precise.losses
    assert rel.max() < 16 * np.finfo(np.float64).eps
    # and a float64 run is within the model's float64 tolerance of the truth too
    assert rel.max() <= tolerance("float64", *data.X.shape)


def test_tolerance_model_numbers():
    """The documented values: τ for the seed, and how the loss and parameter bounds scale."""
    assert tolerance("float64", 4, 3) == pytest.approx(2 * 2.0**-53 * (2 + 3**0.5))
    assert tolerance("float32", 4, 3) == pytest.approx(2 * 2.0**-24 * (2 + 3**0.5))
    assert tolerance("float32", 10_000, 32) / tolerance("float32", 4, 3) == pytest.approx(
        (100 + 32**0.5) / (2 + 3**0.5)
    )
