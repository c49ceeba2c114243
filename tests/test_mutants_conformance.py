"""The tolerance model's numbers worked out by hand for small made-up runs: the tests that kill
core/conformance.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from xptrain.conformance import MODEL, SAFETY, Agreement, compare, tolerance

EPS64, EPS32 = 2.0**-52, 2.0**-23


def test_tolerance_is_safety_times_unit_roundoff_times_root_sizes():
    assert SAFETY == 2.0
    assert tolerance("float64", 16, 9) == 2.0 * (EPS64 / 2) * (4 + 3)
    assert tolerance("float32", 100, 4) == 2.0 * (EPS32 / 2) * (10 + 2)
    assert MODEL.startswith("tau = 2 · (eps/2) · (√N + √D)")


def _agreement(rel_err, loss_tol, param_err=0.0, param_tol=1.0):
    return Agreement(rel_err, loss_tol, 0.0, param_err, param_tol)


def test_max_rel_err_and_first_bad_epoch():
    a = _agreement([1e-3, 5e-3, 2e-3], [1e-2, 4e-3, 1e-3])
    assert a.max_rel_err == 5e-3
    assert a.first_bad_epoch == 1
    assert _agreement([1e-3, 1e-2], [1e-3, 1e-2]).first_bad_epoch is None  # equal passes
    nan = _agreement([1e-3, math.nan, 1.0], [1.0, 1.0, 1.0])
    assert math.isnan(nan.max_rel_err) and nan.first_bad_epoch == 1


def test_margin_and_passed():
    a = _agreement([1.0, 3.0], [4.0, 4.0], param_err=1.0, param_tol=2.0)
    assert a.margin == 0.75 and a.passed
    a = _agreement([1.0, 3.0], [4.0, 4.0], param_err=3.0, param_tol=2.0)
    assert a.margin == 1.5 and not a.passed
    assert _agreement([2.0], [2.0], param_err=0.0).passed  # exactly at the tolerance
    nan = _agreement([math.nan, 5.0], [1.0, 1.0])
    assert math.isnan(nan.margin) and not nan.passed
    assert math.isnan(_agreement([0.5], [1.0], param_err=math.nan).margin)


def _run(losses, params, dtype="float64"):
    return SimpleNamespace(losses=losses, params=params, dtype=dtype)


def test_compare_by_hand():
    ref = _run([0.5, 0.25], [np.array([[1.0], [-4.0]]), np.array([2.0])])
    run = _run([0.5 + 2**-40, 0.25 - 2**-44], [np.array([[1.0], [-4.0 + 1e-9]]), np.array([2.0])])
    a = compare(run, ref, tau=1e-10)
    assert a.rel_err == [2**-40 / 0.5, 2**-44 / 0.25]
    assert a.loss_tol == [1e-10 * (1 + 1 / 0.5), 1e-10 * (1 + 1 / 0.25)]
    # ulps of float64 at 0.5 is 2**-53, at 0.25 2**-54
    assert a.max_ulp == max(2**-40 / 2**-53, 2**-44 / 2**-54)
    assert a.param_err == pytest.approx(1e-9 / 4, rel=1e-6)
    assert a.param_tol == 1e-10 * math.sqrt(2)
    assert compare(run, ref, tau=1e-10, steps=8).param_tol == 1e-10 * math.sqrt(8)


def test_compare_ulps_are_in_the_runs_dtype():
    ref = _run([2.0], [np.array([1.0])])
    a = compare(_run([2.0 - 2**-20], [np.array([1.0])], "float32"), ref, tau=1.0)
    assert a.max_ulp == 2**-20 / 2**-22  # float32's spacing at 2
    assert a.rel_err == [2**-20 / 2.0]
    assert a.loss_tol == [1.0 * (1 + 1 / 2.0)]
    assert a.param_err == 0.0


def test_compare_refuses_a_different_number_of_losses():
    ref = _run([0.5, 0.25], [np.array([1.0])])
    with pytest.raises(ValueError, match=r"^1 losses against a reference of 2$"):
        compare(_run([0.5], [np.array([1.0])]), ref, tau=1.0)


def test_compare_works_in_float64_whatever_the_losses_come_as():
    third = np.float32(1 / 3)
    ref = _run(np.array([third], dtype=np.float32), [np.array([1.0])])
    run = _run(np.array([np.nextafter(third, np.float32(1))]), [np.array([1.0])], "float32")
    a = compare(run, ref, tau=0.1)
    step = float(np.nextafter(third, np.float32(1))) - float(third)
    assert a.rel_err == [step / float(third)]
    assert a.loss_tol == [0.1 * (1 + 1 / float(third))]
    assert a.max_ulp == 1.0
