"""Momentum and Adam: pure update rules that every backend runs the same, checked against
independent NumPy transcriptions of their textbook definitions, and resumable across backends
(their state travels in the checkpoint)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import on_backends
from helpers import xptrain as cli

import xptrain
from xptrain import backends
from xptrain.api import train_problem
from xptrain.conformance import compare, tolerance
from xptrain.data import SEED_X, SEED_Y, initial_weights, seed_problem
from xptrain.options import Options
from xptrain.reference import Reference

EPOCHS, LR = 30, 0.1


def _textbook(optimizer: str, epochs: int = EPOCHS, lr: float = LR) -> Reference:
    """The seed's loop with momentum (v = 0.9 v + g; p -= lr v) or Adam (Kingma & Ba, Alg. 1)."""
    X, y = SEED_X.astype(float), SEED_Y.astype(float)
    params = [initial_weights(3, 1), np.zeros((1, 1))]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    losses = []
    for t in range(1, epochs + 1):
        A = 1 / (1 + np.exp(-(X @ params[0] + params[1])))
        losses.append(-np.mean(y * np.log(A) + (1 - y) * np.log(1 - A)))
        dz = A - y
        grads = [X.T @ dz / 4, dz.sum(axis=0, keepdims=True) / 4]
        for i, g in enumerate(grads):
            if optimizer == "momentum":
                first[i] = 0.9 * first[i] + g
                params[i] = params[i] - lr * first[i]
            else:
                first[i] = 0.9 * first[i] + 0.1 * g
                second[i] = 0.999 * second[i] + 0.001 * g * g
                m_hat, v_hat = first[i] / (1 - 0.9**t), second[i] / (1 - 0.999**t)
                params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return Reference(np.array(losses), params)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_every_backend_follows_the_textbook(backend, optimizer, dtype, grad, mode):
    result = backend.train(
        SEED_X,
        SEED_Y,
        dtype=dtype,
        epochs=EPOCHS,
        lr=LR,
        optimizer=optimizer,
        grad=grad,
        mode=mode,
    )
    agreement = compare(result, _textbook(optimizer), tolerance(dtype, 4, 3))
    assert agreement.passed, (agreement.first_bad_epoch, agreement.max_rel_err, agreement.margin)
    assert result.optimizer == optimizer


def test_the_optimizers_really_differ():
    runs = {
        o: xptrain.train(SEED_X, SEED_Y, epochs=EPOCHS, lr=LR, optimizer=o).losses[-1]
        for o in ("sgd", "momentum", "adam")
    }
    assert len(set(runs.values())) == 3


@pytest.mark.parametrize("second", on_backends("numpy", "torch", "jax", "array_api_strict"))
def test_adam_resumes_on_another_backend(backend, second):
    """Adam's moments and step count go into the checkpoint: the resumed run continues the
    uninterrupted one (bitwise on the same CPU backend, within tolerance on another)."""
    other = backends.get(second)
    data = seed_problem()
    saved = []
    half = Options(epochs=EPOCHS // 2, lr=LR, optimizer="adam")
    train_problem(data, backend.impl, backend.device, half, on_checkpoint=saved.append)
    assert len(saved[-1].state) == 5  # t, and m and v for W and b
    full = Options(epochs=EPOCHS, lr=LR, optimizer="adam")
    resumed = train_problem(data, other, other.devices()[0], full, start=saved[-1])
    whole = train_problem(data, backend.impl, backend.device, full)
    if backend.name == second and backend.device == "cpu":
        assert resumed.losses == whole.losses
    reference = Reference(np.array(whole.losses), whole.params)
    assert compare(resumed, reference, tolerance("float64", 4, 3)).passed


@pytest.fixture(scope="module")
def adam_checkpoints(tmp_path_factory):
    """``xptrain train --optimizer adam``, 10 epochs, checkpointed: (its output, the folder)."""
    ck = tmp_path_factory.mktemp("adam") / "ck"
    first = cli(
        "train", "--optimizer", "adam", "--lr", "0.1", "--epochs", "10", "--checkpoint-dir", str(ck)
    )
    assert first.returncode == 0, first.stderr
    return first, ck


def test_cli_optimizer_refusals(adam_checkpoints):
    _, ck = adam_checkpoints
    other = cli("train", "--resume", "--checkpoint-dir", str(ck), "--lr", "0.1", "--epochs", "20")
    assert other.returncode == 2 and "same --optimizer" in other.stderr
    bad = cli("train", "--optimizer", "lbfgs")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


@pytest.mark.backends("jax")
def test_cli_adam_checkpoints_resume_on_jax(adam_checkpoints, tmp_path):
    first, saved = adam_checkpoints
    ck = tmp_path / "ck"
    shutil.copytree(saved, ck)  # resuming writes into the folder: the other test's stays as made
    rest = cli(
        "train",
        "--resume",
        "--checkpoint-dir",
        str(ck),
        "--lr",
        "0.1",
        "--epochs",
        "20",
        "--optimizer",
        "adam",
        "--backend",
        "jax",
    )
    assert rest.returncode == 0, rest.stderr
    whole = cli("train", "--optimizer", "adam", "--lr", "0.1", "--epochs", "20")
    assert first.stdout + rest.stdout == whole.stdout  # to the 12 printed digits


@pytest.mark.parametrize("change", ["shape", "extra", "missing"])
def test_a_checkpoint_with_wrong_optimizer_state_is_refused(change):
    from dataclasses import replace

    data, bk, saved = seed_problem(), backends.get("numpy"), []
    train_problem(
        data, bk, "cpu", Options(epochs=3, lr=LR, optimizer="adam"), on_checkpoint=saved.append
    )
    state = list(saved[-1].state)
    state = {
        "shape": [state[0], np.zeros((2, 2)), *state[2:]],
        "extra": [*state, state[1]],
        "missing": [],
    }[change]
    with pytest.raises(xptrain.InvalidInput, match="optimizer state does not fit"):
        train_problem(
            data,
            bk,
            "cpu",
            Options(epochs=6, lr=LR, optimizer="adam"),
            start=replace(saved[-1], state=state),
        )
