"""Matrix-vector products as a multiply and a sum (xptrain.matvec): the same products within
rounding, used only where they were measured to pay (JAX compiled, on the CPU, not --exact),
and said so in the run's record."""

from __future__ import annotations

import numpy as np
import pytest

import xptrain
from xptrain.data import SEED_X, SEED_Y
from xptrain.matvec import MatvecAsSums

xp = MatvecAsSums(np)


@pytest.mark.parametrize(
    ("a", "b"),
    [((50, 7), (7, 1)), ((1, 50), (50, 7)), ((1, 1), (1, 1))],
    ids=["rows-by-column", "row-by-matrix", "one-by-one"],
)
def test_a_matrix_vector_product_as_sums_is_the_product(a, b):
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal(a), rng.standard_normal(b)
    got = xp.matmul(A, B)
    assert got.shape == (A @ B).shape
    np.testing.assert_allclose(got, A @ B, rtol=1e-14, atol=0)


def test_other_products_and_names_are_the_namespaces_own():
    rng = np.random.default_rng(0)
    A, B = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    np.testing.assert_array_equal(xp.matmul(A, B), A @ B)  # bit for bit: np.matmul itself
    assert xp.exp is np.exp and xp.float32 is np.float32


@pytest.mark.backends("jax")
def test_only_compiled_jax_on_the_cpu_writes_them_as_sums():
    def path(**how):
        return xptrain.train(SEED_X, SEED_Y, backend="jax", epochs=2, **how).path

    assert path(jit=True).endswith("matrix-vector products as sums (fused by XLA)")
    assert "as sums" not in path(jit=False)
    assert "as sums" not in path(jit=True, exact=True)  # the seed's arithmetic: its dots
    assert "as sums" not in xptrain.train(SEED_X, SEED_Y, epochs=2).path  # numpy: eager


@pytest.mark.backends("jax")
def test_compiled_jax_with_sums_keeps_the_seeds_losses_within_its_bound():
    """The seed's 20 epochs through the sums agree with the exact path to float64 rounding."""
    sums = xptrain.train(SEED_X, SEED_Y, backend="jax", jit=True, epochs=20)
    exact = xptrain.train(SEED_X, SEED_Y, backend="jax", jit=True, epochs=20, exact=True)
    np.testing.assert_allclose(sums.losses, exact.losses, rtol=1e-13)
