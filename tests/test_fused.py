"""The fused training loop: on a backend with ``scan`` (JAX), ``jit`` runs the whole run (or each
stretch between checkpoints) as one compiled call, with the same numbers as epoch-by-epoch.
Every test runs on each backend and device with ``scan``; the others are deselected."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import xptrain
from xptrain.api import train_problem
from xptrain.data import SEED_X, SEED_Y, load
from xptrain.options import Options

steps = importlib.import_module("xptrain.steps")
DATA = load("blobs:200,4,2,1")
pytestmark = pytest.mark.needs("scan", "jit")


@pytest.mark.parametrize("grad", ["analytic", "autodiff"])
@pytest.mark.parametrize("val_split", [None, 0.25])
def test_fused_run_matches_epoch_by_epoch(backend, grad, val_split):
    options = dict(
        mode="jit",
        grad=grad,
        epochs=30,
        lr=0.5,
        val_split=val_split,
        hidden=(5,),
        activation="tanh",
        optimizer="adam",
    )
    seen = []
    stepwise = backend.train(DATA.X, DATA.y, on_epoch=lambda e, m: seen.append(e), **options)
    before = steps.make_fused.cache_info().misses
    fused = backend.train(DATA.X, DATA.y, **options)
    after = steps.make_fused.cache_info()
    assert seen == list(range(30))  # the per-epoch run took the step-by-step path
    assert after.misses == before + 1  # ... and the plain one a single fused call of 30 epochs
    np.testing.assert_allclose(fused.losses, stepwise.losses, rtol=1e-13)
    np.testing.assert_allclose(fused.val_losses, stepwise.val_losses, rtol=1e-13)
    for a, b in zip(fused.params, stepwise.params, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_fused_seed_run_is_the_seed(backend):
    result = backend.train(SEED_X, SEED_Y, mode="jit")
    reference = xptrain.train(SEED_X, SEED_Y)
    np.testing.assert_allclose(result.losses, reference.losses, rtol=1e-14)


def test_fused_divergence_names_the_epoch(backend):
    with pytest.raises(xptrain.TrainingDiverged, match="at epoch 2;") as info:
        backend.train(SEED_X, SEED_Y, mode="jit", loss="mse", lr=1e100)
    assert info.value.epoch == 2


def test_fused_checkpoints_land_on_their_epochs_and_resume_exactly(backend):
    bk, device, saved = backend.impl, backend.device, []
    options = Options(epochs=10, lr=0.5, jit=True)
    whole = train_problem(DATA, bk, device, options)
    train_problem(DATA, bk, device, options, checkpoint_every=4, on_checkpoint=saved.append)
    assert [c.epoch for c in saved] == [4, 8, 10]
    assert saved[-1].losses == whole.losses
    resumed = train_problem(DATA, bk, device, options, start=saved[0])
    np.testing.assert_allclose(resumed.losses, whole.losses, rtol=1e-14)


def test_long_fused_runs_are_checked_every_1024_epochs(backend):
    """2500 epochs: calls of 1024, 1024 and 452 epochs (two compiled lengths), the same losses
    as epoch by epoch; a run diverging at epoch 1 of 3000 stops after the first call."""
    before = steps.make_fused.cache_info().misses
    fused = backend.train(SEED_X, SEED_Y, mode="jit", epochs=2500)
    assert steps.make_fused.cache_info().misses - before <= 2
    reference = xptrain.train(SEED_X, SEED_Y, epochs=2500)
    np.testing.assert_allclose(fused.losses, reference.losses, rtol=1e-12)
    with pytest.raises(xptrain.TrainingDiverged, match="at epoch 2;"):
        backend.train(SEED_X, SEED_Y, mode="jit", loss="mse", lr=1e100, epochs=3000)
