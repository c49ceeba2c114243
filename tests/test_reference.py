"""The host reference loop is the seed's: it reproduces every number the seed prints."""

import math

import numpy as np

from xptrain.data import seed_problem
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
