"""``xptrain.train`` and the backend registry, as a Python user calls them."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import xptrain
from xptrain import backends
from xptrain.data import SEED_X, SEED_Y, initial_weights, seed_problem
from xptrain.reference import reference_run

REFERENCE = reference_run(seed_problem())


def test_default_call_is_the_seed():
    result = xptrain.train(SEED_X, SEED_Y)
    np.testing.assert_allclose(result.losses, REFERENCE.losses, rtol=1e-12)
    np.testing.assert_allclose(result.W, REFERENCE.W, rtol=1e-12)
    assert result.b == pytest.approx(REFERENCE.b, rel=1e-12)
    assert isinstance(result.losses, list) and all(type(v) is float for v in result.losses)
    assert result.seconds > 0 and result.backend == "numpy" and result.device == "cpu"


def test_inputs_may_be_arrays_of_any_backend(backend):
    bk = backend.impl
    with bk.float_scope("float64"):
        X, y = (
            bk.asarray(a, "float64", bk.native_device(backend.device)) for a in (SEED_X, SEED_Y)
        )
        result = xptrain.train(X, y, backend="numpy")
    np.testing.assert_allclose(result.losses, REFERENCE.losses, rtol=1e-12)


def test_given_W_and_b_are_used_in_any_accepted_shape():
    W = initial_weights(3, 1).ravel()  # (D,) works as well as (D, 1)
    for b in (0, np.zeros(1), np.zeros((1, 1))):
        result = xptrain.train(SEED_X, SEED_Y.ravel(), W=W, b=b, seed=99)
        np.testing.assert_allclose(result.losses, REFERENCE.losses, rtol=1e-12)
    moved = xptrain.train(SEED_X, SEED_Y, W=np.zeros(3), b=0.5, epochs=1)
    assert moved.losses[0] == pytest.approx(
        -np.mean(
            np.log(
                np.where(SEED_Y.ravel() == 1, 1, 0) / (1 + np.exp(-0.5))
                + np.where(SEED_Y.ravel() == 0, 1, 0) * (1 - 1 / (1 + np.exp(-0.5)))
            )
        ),
        rel=1e-12,
    )


def test_seed_changes_the_initial_weights():
    assert xptrain.train(SEED_X, SEED_Y, seed=2).losses[0] != REFERENCE.losses[0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"epochs": True}, "epochs"),
        ({"lr": 0.0}, "lr must be"),
        ({"lr": float("nan")}, "lr must be"),
        ({"lr": "1"}, "lr must be"),
        ({"dtype": "float16"}, "dtype"),
        ({"grad": "numeric"}, "grad must be one of analytic, autodiff"),
        ({"backend": "tf"}, "unknown backend"),
        ({"device": "tpu"}, "unknown device"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"W": np.ones((4, 1))}, "W must have shape"),
    ],
)
def test_bad_arguments_raise_invalid_input(kwargs, message):
    with pytest.raises(xptrain.XptrainError, match=message):
        xptrain.train(SEED_X, SEED_Y, **kwargs)


def test_import_is_light():
    code = (
        "import sys, xptrain; xptrain.train(xptrain.data.SEED_X, xptrain.data.SEED_Y); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'jax', 'cupy', 'array_api_strict', 'matplotlib'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_unknown_backend_lists_the_choices():
    with pytest.raises(xptrain.InvalidInput, match="numpy, torch, jax, cupy, array_api_strict"):
        backends.get("mxnet")


@pytest.mark.parametrize(
    "alias, name",
    [
        ("strict", "array_api_strict"),
        ("array-api-strict", "array_api_strict"),
        ("NumPy", "numpy"),
        ("np", "numpy"),
        ("PyTorch", "torch"),
        (" jax ", "jax"),
    ],
)
def test_aliases(alias, name):
    assert backends.canonical_name(alias) == name


def test_a_loaded_backend_is_loaded_once():
    assert backends.get("np") is backends.get("numpy")


@pytest.mark.parametrize(
    "spec, name",
    [
        ("cpu", "cpu"),
        ("CPU", "cpu"),
        ("cuda", "cuda:0"),
        ("gpu", "cuda:0"),
        ("cuda:3", "cuda:3"),
        (" gpu:1 ", "cuda:1"),
    ],
)
def test_device_names(spec, name):
    assert backends.canonical_device(spec) == name


@pytest.mark.parametrize("spec", ["tpu", "cuda:", "cuda:-1", "cpu:1", "mps", ""])
def test_bad_device_names(spec):
    with pytest.raises(xptrain.InvalidInput, match="device"):
        backends.canonical_device(spec)


@pytest.mark.backends("torch")
def test_torch_runs_ieee_matmuls_and_restores_the_users_setting():
    import torch

    knob = torch.backends.cuda.matmul
    if not hasattr(knob, "fp32_precision"):  # torch < 2.9: the legacy global setting
        before = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("medium")
        try:
            result = xptrain.train(SEED_X, SEED_Y, backend="torch", dtype="float32")
            assert result.precision["float32_matmul_precision"] == "highest"
            assert torch.get_float32_matmul_precision() == "medium"
        finally:
            torch.set_float32_matmul_precision(before)
        return
    before = knob.fp32_precision
    knob.fp32_precision = "tf32"  # what a user chasing speed sets
    try:
        result = xptrain.train(SEED_X, SEED_Y, backend="torch", dtype="float32")
        assert result.precision["cuda.matmul.fp32_precision"] == "ieee"
        assert result.precision["mkldnn.matmul.fp32_precision"] == "ieee"
        assert knob.fp32_precision == "tf32"
        assert torch.get_default_dtype() == torch.float32
    finally:
        knob.fp32_precision = before


@pytest.mark.backends("jax")
def test_jax_x64_holds_for_the_run_only():
    import jax

    result = xptrain.train(SEED_X, SEED_Y, backend="jax", dtype="float64")
    assert result.precision["jax_enable_x64"] is True
    assert result.precision["default_matmul_precision"] == "highest"
    assert jax.config.jax_enable_x64 is False  # the user's JAX is as it was
    assert jax.numpy.asarray(1.0).dtype == jax.numpy.float32


def test_options_accept_numpy_scalars():
    result = xptrain.train(SEED_X, SEED_Y, epochs=np.int64(3), lr=np.float32(0.5), seed=np.int32(1))
    assert len(result.losses) == 3 and result.lr == 0.5


def test_infinite_parameters_are_divergence_even_with_a_finite_loss():
    X = np.full((4, 2), 10.0)
    with pytest.raises(xptrain.TrainingDiverged, match="parameters became inf"):
        xptrain.train(X, [0, 1, 1, 0], epochs=1, lr=1e308)


def test_versions_are_recorded():
    result = xptrain.train(SEED_X, SEED_Y)
    for key in ("python", "xptrain", "numpy", "array_api_compat"):
        assert result.versions[key]
    assert result.device_name
