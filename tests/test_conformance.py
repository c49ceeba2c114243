"""Every backend × dtype × gradient engine × mode reproduces the seed's float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import xptrain
from xptrain.conformance import compare, tolerance
from xptrain.data import SEED_X, SEED_Y, seed_problem
from xptrain.reference import reference_run
from xptrain.train import make_step

REFERENCE = reference_run(seed_problem())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("grad", ["analytic", "autodiff"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_reproduces_seed(backend, dtype, grad, jit):
    if grad == "autodiff" and not backend.impl.has_autodiff:
        pytest.skip(f"{backend.name} has no automatic differentiation")
    if jit and not backend.impl.has_jit:
        pytest.skip(f"{backend.name} has no jit compiler")
    result = xptrain.train(
        SEED_X, SEED_Y, backend=backend.name, device=backend.device, dtype=dtype, grad=grad, jit=jit
    )
    agreement = compare(result, REFERENCE)
    assert len(result.losses) == 20
    assert agreement.first_bad_epoch is None, (
        f"epoch {agreement.first_bad_epoch}: max rel err {agreement.max_rel_err:.3g} "
        f"> {tolerance(dtype):g}"
    )
    assert agreement.param_err <= tolerance(dtype)
    assert result.W.shape == (3, 1) and isinstance(result.b, float)
    assert result.device == backend.device and result.dtype == dtype


def test_runs_in_the_dtype_asked_for(backend):
    """No silent downcast (JAX without x64) nor upcast: the arrays are of the dtype asked for."""
    bk = backend.impl
    for dtype in ("float64", "float32"):
        with bk.float_scope(dtype):
            x = bk.asarray(np.ones((2, 2)), dtype, bk.native_device(backend.device))
            assert x.dtype == getattr(bk.xp, dtype)
            assert bk.to_numpy(x).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("grad", ["analytic", "autodiff"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_every_step_computes_in_the_dtype_asked_for(backend, dtype, grad, jit):
    """Not only the inputs: the loss and the updated parameters of a step keep the dtype."""
    bk = backend.impl
    if (grad == "autodiff" and not bk.has_autodiff) or (jit and not bk.has_jit):
        pytest.skip(f"{backend.name} has no {'jit' if jit else 'autodiff'}")
    with bk.float_scope(dtype):
        dev = bk.native_device(backend.device)
        X, y, W, b = (
            bk.asarray(a, dtype, dev) for a in (SEED_X, SEED_Y, np.ones((3, 1)), np.zeros((1, 1)))
        )
        (W, b), loss = make_step(bk, grad, 1.0, jit)((W, b), X, y)
        for out in (W, b, loss):
            assert out.dtype == getattr(bk.xp, dtype)


def test_float32_differs_from_float64(backend):
    """The float32 run really runs in float32: it is close to, but not the same as, float64."""
    result = xptrain.train(
        SEED_X, SEED_Y, backend=backend.name, device=backend.device, dtype="float32"
    )
    rel = np.abs(np.array(result.losses) - REFERENCE.losses) / REFERENCE.losses
    # A float64 run is within about 1e-15: above 1e-10 means float32 arithmetic really happened.
    assert 1e-10 < rel.max() <= tolerance("float32")


def test_divergence_names_the_epoch(backend):
    for on_epoch in (None, lambda epoch, loss: None):  # blocked and per-epoch host checks
        with pytest.raises(xptrain.TrainingDiverged, match="at epoch 1;"):
            xptrain.train(
                SEED_X,
                SEED_Y,
                backend=backend.name,
                device=backend.device,
                lr=1e4,
                on_epoch=on_epoch,
            )


def test_long_run_matches_reference_across_check_blocks(backend):
    """More epochs than one block of device-side losses: every epoch is kept, in order."""
    ref = reference_run(seed_problem(), epochs=150)
    result = xptrain.train(SEED_X, SEED_Y, backend=backend.name, device=backend.device, epochs=150)
    assert compare(result, ref).passed
