"""A trained model you can use: predict, predict_proba and evaluate apply the run's own feature
scaling; the model file round-trips; `xptrain predict` applies it on any backend."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import xptrain

import xptrain as xpt
from xptrain import fitted
from xptrain.data import load

DATA = load("blobs:200,3,2,7")
# features far from mean 0 and scale 1: a model that forgets its scaling predicts badly
X = DATA.X * 50 + 300
OPTIONS = {"standardize": True, "loss": "bce-logits", "epochs": 30, "lr": 0.5}


def _by_hand(result, X: np.ndarray) -> np.ndarray:
    """The probabilities, computed apart from xptrain's code: scale, X·W + b, sigmoid."""
    mean, std = DATA_X_STATS
    z = ((X - mean) / std) @ result.W + result.b
    return 1 / (1 + np.exp(-z.ravel()))


DATA_X_STATS = (X.mean(axis=0), np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0))


@pytest.fixture(scope="module")
def result():
    return xpt.train(X, DATA.y, **OPTIONS)


def test_predictions_apply_the_runs_scaling(result):
    proba = result.predict_proba(X)
    np.testing.assert_allclose(proba, _by_hand(result, X), rtol=1e-12)
    assert np.array_equal(result.predict(X), (proba > 0.5).astype(int))
    scores = result.evaluate(X, DATA.y)
    labels = DATA.y.ravel()
    assert scores["accuracy"] == np.mean((proba > 0.5) == labels) > 0.8
    unscaled = (X @ result.W + result.b).ravel() > 0  # the scaling forgotten
    assert np.mean(unscaled == labels) < 0.6
    by_hand = -np.mean(labels * np.log(proba) + (1 - labels) * np.log(1 - proba))
    assert scores["loss"] == pytest.approx(by_hand, rel=1e-10)


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.backends(n)) for n in ("torch", "jax", "array_api_strict")],
)
def test_predictions_agree_on_every_backend(result, name):
    np.testing.assert_allclose(
        result.predict_proba(X, backend=name), result.predict_proba(X), rtol=1e-13
    )


def test_the_model_file_round_trips(result, tmp_path):
    path = tmp_path / "model.npz"
    result.fitted.save(path)
    model = fitted.load(path)
    assert model.options == result.options
    assert np.array_equal(model.predict_proba(X), result.predict_proba(X))


def test_bad_model_files_and_rows_are_refused(result, tmp_path):
    with pytest.raises(xpt.InvalidInput, match="does not exist"):
        fitted.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.ones(3))
    with pytest.raises(xpt.InvalidInput, match="not an xptrain model file"):
        fitted.load(tmp_path / "other.npz")
    good = tmp_path / "good.npz"
    result.fitted.save(good)
    arrays = dict(np.load(good, allow_pickle=False))
    for name, bad, message in (
        ("param_0", np.ones((3, 2)), "do not make its model"),
        ("param_1", np.full((1, 1), np.nan), "NaN or inf"),
        ("mean", np.ones((1, 2)), "scaling does not fit"),
    ):
        np.savez(tmp_path / "bad.npz", **{**arrays, name: bad})
        with pytest.raises(xpt.InvalidInput, match=message):
            fitted.load(tmp_path / "bad.npz")
    with pytest.raises(xpt.InvalidInput, match="rows of 3 features"):
        result.predict(X[:, :2])
    with pytest.raises(xpt.InvalidInput, match="NaN or inf"):
        result.predict(np.full((2, 3), np.nan))
    with pytest.raises(xpt.InvalidInput, match="must be numeric"):
        result.predict(np.array([["a", "b", "c"]]))


@pytest.mark.needs("sklearn")
def test_cli_saves_a_model_and_predicts_with_it(tmp_path):
    model, out = tmp_path / "m.npz", tmp_path / "p.csv"
    run = xptrain("train", "--data", "breast_cancer", "--standardize", "--loss", "bce-logits",
                  "--lr", "0.5", "--epochs", "20", "--save-model", str(model))  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "20 epochs in" in run.stderr  # the summary line
    predicted = xptrain("predict", "--model-file", str(model), "--data", "breast_cancer",
                        "--out", str(out))  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    saved = fitted.load(model)
    np.testing.assert_array_equal(rows[:, 0], saved.predict_proba(load("breast_cancer").X))
    assert "569 rows on numpy" in predicted.stderr
    wrong = xptrain("predict", "--model-file", str(model), "--data", "seed")
    assert wrong.returncode == 2 and "rows of 30 features" in wrong.stderr
    assert len(wrong.stderr.splitlines()) == 1
    quiet = xptrain("train", "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == quiet.stderr == ""


def test_predict_takes_rows_without_labels(tmp_path):
    """A CSV of the model's features only, or an .npy of X: predictions, no scores."""
    model = tmp_path / "m.npz"
    trained = xptrain("train", "--data", "blobs:200,3", "--save-model", str(model), "--quiet")
    assert trained.returncode == 0, trained.stderr
    X = np.random.default_rng(0).normal(size=(7, 3))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    np.save(tmp_path / "x.npy", X)
    outputs = []
    for name in ("x.csv", "x.npy"):
        done = xptrain("predict", "--model-file", str(model), "--data", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip() == "xptrain predict: 7 rows on numpy; no labels"
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0].splitlines()) == 8
    np.save(tmp_path / "bad.npy", np.array(["a", "b"]))
    bad = xptrain("predict", "--model-file", str(model), "--data", str(tmp_path / "bad.npy"))
    assert bad.returncode == 2 and "2-D array of finite numbers" in bad.stderr
