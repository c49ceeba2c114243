"""Every backend × dtype × gradient engine × mode reproduces the seed's float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import on_backends, reference_problems

import xptrain
from xptrain import backends, check, check_table, conformance, problems
from xptrain.api import train_problem
from xptrain.conformance import compare, tolerance
from xptrain.data import SEED_X, SEED_Y, seed_problem
from xptrain.options import Options
from xptrain.reference import reference_run
from xptrain.steps import StepSpec, initial_carry, make_step

REFERENCE = reference_run(seed_problem())
# The foundation's fixed bounds for the seed problem; the tolerance model is tighter still.
SEED_BOUNDS = {"float64": 1e-12, "float32": 1e-6}


def test_reproduces_seed(backend, dtype, grad, mode):
    result = backend.train(
        SEED_X,
        SEED_Y,
        dtype=dtype,
        grad=grad,
        mode=mode,
    )
    rel = np.abs(np.array(result.losses) - REFERENCE.losses) / REFERENCE.losses
    assert len(result.losses) == 20
    assert rel.max() <= SEED_BOUNDS[dtype], f"epoch {rel.argmax()}: {rel.max():.3g}"
    ref_params = np.append(REFERENCE.W.ravel(), REFERENCE.b)
    params = np.append(result.W.ravel(), result.b)
    assert np.max(np.abs(params - ref_params) / np.abs(ref_params)) <= SEED_BOUNDS[dtype]
    assert result.W.shape == (3, 1) and isinstance(result.b, float)
    assert result.device == backend.device and result.dtype == dtype


@pytest.mark.parametrize("problem", reference_problems())
def test_reference_problems_within_the_tolerance_model(backend, problem, dtype, grad, mode):
    """What `xptrain check` runs, held to the same model: every epoch, the final parameters,
    and bitwise-identical repeated runs on CPU."""
    config = check.Config(problem, backend.name, backend.device, dtype, grad, mode)
    row, _ = check.run_config(config)
    assert row.passed, check_table.describe_failure(row)
    if backend.device == "cpu":
        assert row.repeatable


def test_the_model_text_states_the_safety_factor():
    """The text reports and the docs give is derived from SAFETY, not a copy of it."""
    assert conformance.MODEL.startswith(f"tau = {conformance.SAFETY:g} · (eps/2) · (√N + √D);")
    assert f"SAFETY = {conformance.SAFETY:g}" in (conformance.__doc__ or "")


def test_runs_in_the_dtype_asked_for(backend):
    """No silent downcast (JAX without x64) nor upcast: the arrays are of the dtype asked for."""
    bk = backend.impl
    for dtype in ("float64", "float32"):
        with bk.float_scope(dtype):
            x = bk.asarray(np.ones((2, 2)), dtype, bk.native_device(backend.device))
            assert x.dtype == getattr(bk.xp, dtype)
            assert bk.to_numpy(x).dtype == np.dtype(dtype)


def test_every_step_computes_in_the_dtype_asked_for(backend, dtype, grad, mode):
    """Not only the inputs: the loss and the updated parameters of a step keep the dtype."""
    bk, jit = backend.impl, mode == "jit"
    with bk.float_scope(dtype):
        dev = bk.native_device(backend.device)
        X, y, W, b = (
            bk.asarray(a, dtype, dev) for a in (SEED_X, SEED_Y, np.ones((3, 1)), np.zeros((1, 1)))
        )
        ((W, b), _), loss = make_step(bk, StepSpec(grad), jit)(initial_carry(bk, (W, b)), X, y)
        for out in (W, b, loss):
            assert out.dtype == getattr(bk.xp, dtype)


def test_float32_differs_from_float64(backend):
    """The float32 run really runs in float32: it is close to, but not the same as, float64."""
    result = backend.train(SEED_X, SEED_Y, dtype="float32")
    rel = np.abs(np.array(result.losses) - REFERENCE.losses) / REFERENCE.losses
    # A float64 run is within about 1e-15: above 1e-10 means float32 arithmetic really happened.
    assert 1e-10 < rel.max() <= SEED_BOUNDS["float32"]
    # ... and the model would catch it, were it passed off as float64.
    assert not compare(result, REFERENCE, tolerance("float64", 4, 3)).passed


def test_divergence_names_the_epoch(backend):
    for on_epoch in (None, lambda epoch, metrics: None):  # blocked and per-epoch host checks
        with pytest.raises(xptrain.TrainingDiverged, match="at epoch 2;") as info:
            backend.train(SEED_X, SEED_Y, loss="mse", lr=1e100, on_epoch=on_epoch)
        assert info.value.epoch == 2


def test_long_runs_stay_within_the_model(backend):
    """500 epochs (several blocks of device-side losses; the loss falls to 0.009): every epoch
    kept, in order, and within the model, whose loss tolerance grows as 1/L and parameter
    tolerance as √epochs. A chunked library (Dask: ~50 ms an epoch of graph building) runs 200,
    still three blocks and a remainder."""
    epochs = 200 if backend.impl.caps.chunked else 500
    ref = reference_run(seed_problem(), epochs=epochs)
    for dtype in backends.DTYPES:
        result = backend.train(SEED_X, SEED_Y, epochs=epochs, dtype=dtype)
        agreement = compare(result, ref, tolerance(dtype, 4, 3))
        assert agreement.passed, (dtype, agreement.first_bad_epoch, agreement.max_rel_err)


@pytest.mark.parametrize("second", on_backends("numpy", "torch", "jax", "array_api_strict"))
def test_resume_on_another_backend(backend, second):
    """Half the synthetic problem on one backend, checkpointed (host .npz), the rest on
    another: the whole sequence matches the uninterrupted reference within tolerance."""
    other = backends.get(second)
    spec = problems.get("synthetic")
    data = spec.make()
    saved = []
    half = Options(epochs=spec.epochs // 2, lr=spec.lr)
    train_problem(data, backend.impl, backend.device, half, on_checkpoint=saved.append)
    options = Options(epochs=spec.epochs, lr=spec.lr)
    result = train_problem(data, other, other.devices()[0], options, start=saved[-1])
    ref = reference_run(data, epochs=spec.epochs, lr=spec.lr)
    agreement = compare(result, ref, tolerance("float64", *data.X.shape))
    assert len(result.losses) == spec.epochs
    assert agreement.passed, agreement.first_bad_epoch


@pytest.mark.needs("jit")
def test_jit_stays_exact_when_the_shape_changes(backend):
    """A compiled step reused on a second problem size: torch.compile's dynamic shapes once made
    float64 CUDA runs float32-accurate (1/N passed as float32). Static shapes keep them exact."""
    for name in ("seed", "synthetic"):
        row, _ = check.run_config(
            check.Config(name, backend.name, backend.device, "float64", "analytic", "jit")
        )
        assert row.passed, check_table.describe_failure(row)


ONE_PASS = xptrain.data.load("linear:3000,8,4")  # 5 blocks of 512 rows and 440 left over


@pytest.mark.parametrize("path", ["one-pass", "exact"])
def test_one_pass_and_exact_paths_within_the_model(backend, dtype, mode, path):
    """The one-pass blocked gradient (here 512 rows a block, on any device) and the seed's
    full-batch arithmetic both reproduce the float64 reference within the tolerance model."""
    how = {"path": "block:512"} if path == "one-pass" else {"exact": True}
    result = backend.train(ONE_PASS.X, ONE_PASS.y, epochs=10, lr=0.5, dtype=dtype, mode=mode, **how)
    assert result.block == (512 if path == "one-pass" else None)
    ref = reference_run(ONE_PASS, epochs=10, lr=0.5)
    agreement = compare(result, ref, tolerance(dtype, *ONE_PASS.X.shape))
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err)


def test_the_machine_chooses_one_pass_only_where_it_helps():
    """On the CPU, large problems may take the one-pass path (measured against the full batch:
    test_path_choice); the seed, autodiff, --exact, --path full and problems smaller than a
    block take the seed's full batch, unmeasured."""
    from xptrain.steps import choose_block

    def block(bk, device, options, n, d):
        choice = choose_block(bk, device, options, n, d)
        assert choice.measurable == (choice.block is not None and options.path == "auto")
        return choice.block

    numpy = backends.get("numpy")
    big, seed = Options(dtype="float32"), Options()
    assert block(numpy, "cpu", big, 2**20, 64) is not None
    assert block(numpy, "cpu", seed, 4, 3) is None
    for options in (Options(exact=True), Options(grad="autodiff"), Options(jit=True)):
        assert block(numpy, "cpu", options, 2**20, 64) is None
    assert block(numpy, "cpu", Options(path="full"), 2**20, 64) is None
    assert block(numpy, "cpu", Options(path="block:512"), 2**20, 64) == 512
    if "jax" in backends.available():  # JAX's blocks run in its compiled loop: jit only
        jax = backends.get("jax")
        assert block(jax, "cpu", Options(dtype="float32", jit=True), 2**20, 64)
        assert block(jax, "cpu", Options(dtype="float32"), 2**20, 64) is None
    assert block(numpy, "cuda:0", big, 2**20, 64) is None
    assert xptrain.train(SEED_X, SEED_Y).block is None


@pytest.mark.parametrize(
    "options, message",
    [
        ({"path": "block:0"}, r"block:ROWS \(ROWS a whole number ≥ 1\)"),
        ({"path": "block:64", "exact": True}, "needs the one-pass"),
        ({"path": "block:64", "grad": "autodiff"}, "needs the one-pass"),
    ],
)
def test_bad_block_options(options, message):
    with pytest.raises(xptrain.InvalidInput, match=message):
        Options(**options)
