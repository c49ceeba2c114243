"""Bring-your-own models: the protocol (init, forward, optional backward), every way a model can be
wrong refused in one line naming it, the Python API with a model as an instance, a class, a
module or a ``FILE.py:NAME`` string, the losses' label checks, checkpoints of a user's model, and
the example model agreeing across backends."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import xptrain as cli

import xptrain
from xptrain import backends
from xptrain.api import train_problem
from xptrain.conformance import compare, tolerance
from xptrain.data import load, make_problem
from xptrain.options import Options
from xptrain.reference import Reference

MODELS = Path(__file__).parent / "models"
EXAMPLES = Path(__file__).parent.parent / "examples"
GOOD = f"{MODELS / 'good.py'}:TanhNet"
BLOBS = ["--data", "blobs:200,4,3", "--loss", "softmax-ce", "--epochs", "3"]


def _module(name: str):
    """tests/models/NAME.py imported as a module of its own (its folder on sys.path, as
    xptrain puts a model file's folder: the files import good.py, their neighbour)."""
    if str(MODELS) not in sys.path:
        sys.path.append(str(MODELS))
    spec = importlib.util.spec_from_file_location(f"test_models_{name}", MODELS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused(tmp_path, *args: str, message: str | tuple[str, ...]):
    """``xptrain train ARGS --json out.json``: exit 2, one line naming what is wrong, no file."""
    out = tmp_path / "out.json"
    run = cli("train", *args, "--json", str(out), "--quiet", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for part in (message,) if isinstance(message, str) else message:
        assert part in run.stderr, run.stderr
    assert not out.exists()
    return run.stderr


# -- the protocol, on the command line ---------------------------------------------------------


def test_a_model_file_trains_with_its_class_arguments(tmp_path):
    out = tmp_path / "out.json"
    run = cli(
        "train", "--model", "models/good.py:TanhNet", "--model-arg", "width=5", *BLOBS,
        "--lr", "0.5", "--json", str(out), cwd=Path(__file__).parent,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert record["model"] == "models/good.py:TanhNet" and record["model_args"] == {"width": 5}
    assert [np.array(p).shape for p in record["params"]] == [(4, 5), (1, 5), (5, 3), (1, 3)]
    assert record["losses"][-1] < record["losses"][0]


BAD_MODELS = {
    "no init": ("broken.py:NoInit", ["NoInit", "no init method"]),
    "init not arrays": ("broken.py:InitNotArrays", ["InitNotArrays", "parameter 0", "list"]),
    "init int arrays": ("broken.py:InitIntArrays", ["InitIntArrays", "float", "int64"]),
    "init one array": ("broken.py:InitOneArray", ["InitOneArray", "tuple of NumPy arrays"]),
    "first layer not d_in": (
        "broken.py:WrongDIn",
        ["WrongDIn", "forward fails on 3 rows of D = 4 features", "(5, 3)", "ValueError"],
    ),
    "forward shape": ("broken.py:ForwardWrongShape", ["ForwardWrongShape", "(3, 3)", "(3,)"]),
    "forward dtype": ("broken.py:ForwardWrongDtype", ["ForwardWrongDtype", "float64", "float32"]),
    "backward count": (
        "broken.py:BackwardTooFew",
        ["BackwardTooFew", "backward returned 1 gradients for 2 parameters"],
    ),
    "backward shape": (
        "broken.py:BackwardWrongShape",
        ["BackwardWrongShape", "gradient 1 has shape (3,)", "(1, 3)"],
    ),
    "class argument missing": ("broken.py:Needs", ["Needs", "width"]),
    "no such name": (
        "broken.py:Nope",
        ["'Nope'", "models there:", "BackwardTooFew", "WrongDIn"],
    ),
    "no such file": ("nofile.py:Model", ["nofile.py:Model", "no file"]),
    "import fails": (
        "raises_on_import.py:Model",
        ["raises_on_import.py:Model", "RuntimeError: this model file is broken on purpose"],
    ),
}


@pytest.mark.parametrize("spec, message", BAD_MODELS.values(), ids=BAD_MODELS.keys())
def test_a_wrong_model_is_refused_in_one_line(tmp_path, spec, message):
    _refused(tmp_path, "--model", str(MODELS / spec), *BLOBS, message=tuple(message))


def test_an_instantiated_model_is_named_as_the_user_spelled_it(tmp_path):
    spec = f"{MODELS / 'broken.py'}:InitIntArrays"
    _refused(tmp_path, "--model", spec, *BLOBS, message=f"model {spec}: init's parameter 0")


MODEL_ARGS = {
    "no =": (["--model", GOOD, "--model-arg", "width"], ["'width'", "KEY=VALUE"]),
    "not accepted": (
        ["--model", GOOD, "--model-arg", "depth=3"],
        ["TanhNet", "{'depth': 3}", "unexpected keyword argument 'depth'"],
    ),
    "mlp": (["--model", "mlp", "--model-arg", "width=3"], ["not mlp"]),
    "logistic": (["--model", "logistic", "--model-arg", "width=3"], ["not logistic"]),
    "instance": (
        ["--model", f"{MODELS / 'good.py'}:tanh_net", "--model-arg", "width=3"],
        ["tanh_net", "not a class"],
    ),
}


@pytest.mark.parametrize("args, message", MODEL_ARGS.values(), ids=MODEL_ARGS.keys())
def test_bad_model_arguments_are_refused(tmp_path, args, message):
    _refused(tmp_path, *args, *BLOBS, message=tuple(message))


NO_BACKWARD = f"{MODELS / 'good.py'}:NoBackward"


def test_a_model_without_backward_needs_autodiff(tmp_path):
    _refused(
        tmp_path, "--model", NO_BACKWARD, *BLOBS,
        message=("NoBackward has no backward", "torch or jax", "--grad autodiff"),
    )  # fmt: skip


@pytest.mark.backends("torch")
def test_a_model_without_backward_on_torch(tmp_path):
    args = ["--model", NO_BACKWARD, *BLOBS, "--backend", "torch"]
    _refused(tmp_path, *args, "--grad", "analytic", message=("NoBackward", "--grad autodiff"))
    blobs = load("blobs:200,4,3")
    ok = xptrain.train(
        blobs.X, blobs.y, model=NO_BACKWARD, loss="softmax-ce", epochs=3, backend="torch",
        grad="autodiff",
    )  # fmt: skip
    assert ok.losses[-1] < ok.losses[0]


@pytest.mark.backends("array_api_strict")
@pytest.mark.parametrize("name", ["NumpyOnlyMethod", "NumpyFunction"])
def test_a_model_that_fails_on_its_backend_is_one_line(tmp_path, name):
    """NumPy runs it (the probe passes); array-api-strict's arrays do not."""
    out = tmp_path / "out.json"
    spec = f"{MODELS / 'backend_specific.py'}:{name}"
    args = ["--model", spec, *BLOBS, "--json", str(out), "--quiet"]
    assert cli("train", *args, cwd=tmp_path).returncode == 0  # fine on numpy
    out.unlink()
    run = cli("train", *args, "--backend", "array_api_strict", cwd=tmp_path)
    assert "Traceback" not in run.stderr, run.stderr[-2000:]
    # one line of ours (the library may warn before it, as array-api-strict does of NumPy's
    # dtypes in NumpyFunction)
    ours = [line for line in run.stderr.splitlines() if line.startswith("xptrain train: ")]
    assert run.returncode == 1 and len(ours) == 1, run.stderr  # the library's failure: 1
    assert "array_api_strict failed" in ours[0] and name in ours[0] and not out.exists()


# -- the Python API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs():
    return load("blobs:200,4,3")


def _fit(blobs, model, **options):
    options = {"loss": "softmax-ce", "epochs": 5, "lr": 0.5, **options}
    return xptrain.train(blobs.X, blobs.y, model=model, **options)


def test_a_model_given_four_ways_trains_the_same(blobs):
    good = _module("good")
    runs = {
        "instance": _fit(blobs, good.TanhNet(width=6)),
        "class": _fit(blobs, good.TanhNet, model_args={"width": 6}),
        "spec": _fit(blobs, GOOD, model_args={"width": 6}),
        "named instance": _fit(blobs, f"{MODELS / 'good.py'}:tanh_net"),
    }
    first = runs["instance"]
    assert [p.shape for p in first.params] == [(4, 6), (1, 6), (6, 3), (1, 3)]
    for name, run in runs.items():
        assert run.losses == first.losses, name
    module = _fit(blobs, good)  # the module itself: its init, forward and backward
    spec = _fit(blobs, f"{MODELS / 'good.py'}:Linear")
    assert module.losses == spec.losses and [p.shape for p in module.params] == [(4, 3), (1, 3)]


def test_python_api_refuses_bad_models_in_one_line(blobs):
    good = _module("good")
    with pytest.raises(xptrain.InvalidInput, match="not a class"):
        _fit(blobs, good.TanhNet(), model_args={"width": 3})
    with pytest.raises(xptrain.InvalidInput, match="unexpected keyword argument 'depth'"):
        _fit(blobs, good.TanhNet, model_args={"depth": 3})
    with pytest.raises(xptrain.InvalidInput, match="init and forward"):
        _fit(blobs, _module("broken").NoInit())
    with pytest.raises(xptrain.InvalidInput, match="models there: "):
        _fit(blobs, f"{MODELS / 'good.py'}:Nope")


def test_classification_predictions(blobs):
    result = _fit(blobs, GOOD, epochs=10)
    classes = result.predict(blobs.X)
    assert classes.shape == (200,) and np.issubdtype(classes.dtype, np.integer)
    assert set(np.unique(classes)) <= {0, 1, 2}
    proba = result.predict_proba(blobs.X)
    assert proba.shape == (200, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.argmax(proba, axis=1), classes)
    scores = result.evaluate(blobs.X, blobs.y)
    assert 0.5 < scores["accuracy"] <= 1 and scores["loss"] > 0


def _targets(n=200, d=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=(d, k)) + 0.5 + 0.01 * rng.normal(size=(n, k))


REGRESSION = EXAMPLES / "regression.py"


def _regression_model() -> str:
    """examples/regression.py's model."""
    return f"{REGRESSION}:Quadratic"


def test_regression_predictions_are_numbers():
    X, Y = _targets()
    result = xptrain.train(X, Y, model=_regression_model(), loss="mse", epochs=10, lr=0.1)
    assert result.losses[-1] < result.losses[0] / 2
    predicted = result.predict(X)
    assert predicted.shape == (200, 3) and predicted.dtype == np.float64
    with pytest.raises(xptrain.InvalidInput, match="no probabilities") as err:
        result.predict_proba(X)
    assert len(str(err.value).splitlines()) == 1
    scores = result.evaluate(X, Y)
    assert "accuracy" not in scores and scores["loss"] > 0


def test_a_saved_user_model_loads_and_predicts(tmp_path, blobs):
    result = _fit(blobs, GOOD, model_args={"width": 4})
    path = tmp_path / "fitted.npz"
    result.fitted.save(path)
    again = xptrain.fitted.load(path)
    np.testing.assert_array_equal(again.predict(blobs.X), result.predict(blobs.X))
    np.testing.assert_array_equal(again.predict_proba(blobs.X), result.predict_proba(blobs.X))


# -- losses ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels, loss, message",
    [
        ([0, 1, 2.5], "softmax-ce", "whole numbers 0..K-1"),
        ([0, 1, -1], "softmax-ce", "whole numbers 0..K-1"),
        ([0, 1, 2], "bce", "--loss softmax-ce"),
        ([0, 1, 2], "bce-logits", "--loss softmax-ce"),
    ],
)
def test_losses_refuse_labels_they_cannot_take(labels, loss, message):
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.resize(np.array(labels, dtype=float), 30)
    with pytest.raises(xptrain.InvalidInput, match=message) as err:
        xptrain.train(X, y, model=GOOD, loss=loss, epochs=2)
    assert len(str(err.value).splitlines()) == 1


def test_softmax_ce_labels_on_the_command_line(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 4))
    np.savez(tmp_path / "bad.npz", X=X, y=np.resize([0.0, 1.0, 2.5], 30))
    _refused(
        tmp_path, "--model", GOOD, "--data", "bad.npz", "--loss", "softmax-ce",
        message=("whole numbers", "2.5"),
    )  # fmt: skip


def test_mse_trains_on_three_float_targets(tmp_path):
    X, Y = _targets()
    np.savez(tmp_path / "reg.npz", X=X, y=Y)
    out = tmp_path / "out.json"
    run = cli(
        "train", "--model", _regression_model(), "--data", "reg.npz", "--loss", "mse",
        "--epochs", "10", "--lr", "0.1", "--json", str(out), "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads(out.read_text())
    assert [np.array(p).shape for p in record["params"]] == [(4, 3), (4, 3), (1, 3)]
    assert record["losses"][-1] < record["losses"][0] / 2


def test_a_user_model_resumes_exactly(blobs):
    bk, saved = backends.get("numpy"), []
    common = dict(model=GOOD, loss="softmax-ce", lr=0.5, optimizer="adam")
    half = Options(epochs=4, model_args={"width": 5}, **common)
    full = Options(epochs=8, model_args={"width": 5}, **common)
    train_problem(blobs, bk, "cpu", half, on_checkpoint=saved.append)
    resumed = train_problem(blobs, bk, "cpu", full, start=saved[-1])
    whole = train_problem(blobs, bk, "cpu", full)
    assert resumed.losses == whole.losses
    for a, b in zip(resumed.params, whole.params, strict=True):
        np.testing.assert_array_equal(a, b)
    other = Options(epochs=8, model_args={"width": 6}, **common)
    with pytest.raises(xptrain.InvalidInput, match="model_args") as err:
        train_problem(blobs, bk, "cpu", other, start=saved[-1])
    assert len(str(err.value).splitlines()) == 1


def test_resuming_with_another_model_arg_is_refused_on_the_command_line(tmp_path):
    args = ["--model", GOOD, *BLOBS[:-2], "--checkpoint-dir", "ck", "--quiet", "--epochs"]
    first = cli("train", *args, "2", "--model-arg", "width=4", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    _refused(
        tmp_path, *args, "4", "--model-arg", "width=5", "--resume",
        message=("width", "--model-arg"),
    )  # fmt: skip
    again = cli("train", *args, "4", "--model-arg", "width=4", "--resume", cwd=tmp_path)
    assert again.returncode == 0, again.stderr


# -- the example -------------------------------------------------------------------------------

SOFTPLUS = f"{EXAMPLES / 'softplus_net.py'}:SoftplusNet"


def _agrees_with_numpy(backend, problem, epochs, **options):
    options = {"model": SOFTPLUS, "loss": "softmax-ce", "epochs": epochs, "lr": 0.5, **options}
    grad = "autodiff" if backend.name in ("torch", "jax") else "analytic"
    result = backend.train(problem.X, problem.y, grad=grad, **options)
    numpy = xptrain.train(problem.X, problem.y, **options)
    ref = Reference(np.array(numpy.losses), numpy.params)
    width = max(problem.X.shape[1], *(max(p.shape) for p in numpy.params))
    agreement = compare(result, ref, tolerance("float64", problem.X.shape[0], width))
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err)
    assert numpy.losses[-1] < numpy.losses[0]
    return result


def test_the_example_agrees_across_backends_on_blobs(backend):
    _agrees_with_numpy(backend, load("blobs:300,4,3"), 10, model_args={"width": 8})


@pytest.mark.slow
@pytest.mark.needs("sklearn")
def test_the_example_on_digits(backend):
    digits = load("digits10")
    scaled = make_problem((digits.X - digits.X.mean(0)) / (digits.X.std(0) + 1e-12), digits.y)
    result = _agrees_with_numpy(backend, scaled, 3, model_args={"width": 16})
    assert result.predict_proba(scaled.X[:4]).shape == (4, 10)


def test_the_regression_example_agrees_across_backends(backend):
    """examples/regression.py on three float targets: every backend (analytic where the
    backend has no autodiff, else its autodiff) against the float64 NumPy run."""
    X, Y = _targets()
    options = {"model": _regression_model(), "loss": "mse", "epochs": 10, "lr": 0.1}
    grad = "autodiff" if backend.name in ("torch", "jax") else "analytic"
    result = backend.train(X, Y, grad=grad, **options)
    numpy = xptrain.train(X, Y, **options)
    width = max(X.shape[1], *(max(p.shape) for p in numpy.params))
    agreement = compare(
        result, Reference(np.array(numpy.losses), numpy.params), tolerance("float64", len(X), width)
    )
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err)
    assert numpy.losses[-1] < numpy.losses[0] / 2


def test_a_users_model_trains_full_batch_unless_asked():
    """The one-pass blocks assume each row's outputs depend on that row alone: the built-ins
    (rowwise = True) take them on a large problem, a user's model that does not declare it
    trains full batch unless --path block:ROWS asks."""
    from xptrain.grad import block_rows

    data = load("linear:40000,64")
    common = {"epochs": 1, "lr": 0.1, "loss": "bce-logits"}
    builtin = xptrain.train(data.X, data.y, hidden=(8,), activation="tanh", **common)
    if block_rows(40000, 64, 8) < 40000:  # blocks may serve: measured against the full batch
        assert "measured" in builtin.path
    own = xptrain.train(data.X, data.y, model=GOOD, **common)
    assert own.block is None and own.path == "full batch (the model does not declare rowwise)"
    asked = xptrain.train(data.X, data.y, model=GOOD, path="block:4096", **common)
    assert asked.block == 4096
    np.testing.assert_allclose(asked.losses, own.losses, rtol=1e-12)


def test_the_seed_rule_is_kept_but_each_caller_gets_its_own_weights():
    """Logistic.init keeps the seed rule's draw between calls (seeding the legacy generator is
    a fifth of a small call) and hands out copies: writing to one run's W changes no other's,
    and the rule is still ``np.random.seed(S); 2 * random((D, 1)) - 1``."""
    from xptrain.models import Logistic

    first, _ = Logistic().init(np.random.default_rng(1), 3, 1)
    np.random.seed(1)
    want = 2 * np.random.random((3, 1)) - 1
    np.testing.assert_array_equal(first, want)
    first[:] = 0
    again, _ = Logistic().init(np.random.default_rng(1), 3, 1)
    np.testing.assert_array_equal(again, want)
    assert again.flags.writeable
