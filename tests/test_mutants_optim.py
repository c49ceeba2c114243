"""The update rules step by step against the textbook in plain NumPy (Adam with β**t written out):
the tests that kill core/optim.py's mutants (``tox -e mutate``)."""

from __future__ import annotations

import array_api_compat.numpy as xp
import numpy as np
import pytest

from xptrain.optim import BETA1, BETA2, EPS, MOMENTUM, OPTIMIZERS

RNG = np.random.default_rng(3)
PARAMS = (RNG.normal(size=(3, 2)), RNG.normal(size=(2,)))
GRADS = [tuple(RNG.normal(size=p.shape) for p in PARAMS) for _ in range(3)]
LR = 0.05


def _steps(name):
    opt = OPTIMIZERS[name]
    params, state = PARAMS, opt.init(xp, PARAMS)
    for grads in GRADS:
        params, state = opt.update(xp, params, grads, state, LR)
        yield params, state


def test_the_constants_are_the_papers():
    assert (MOMENTUM, BETA1, BETA2, EPS) == (0.9, 0.9, 0.999, 1e-8)
    assert list(OPTIMIZERS) == ["sgd", "momentum", "adam"]
    assert all(name == opt.name for name, opt in OPTIMIZERS.items())


def test_sgd():
    p = PARAMS
    for (got, _), grads in zip(_steps("sgd"), GRADS, strict=True):
        p = tuple(pi - LR * gi for pi, gi in zip(p, grads, strict=True))
        assert all(np.array_equal(a, b) for a, b in zip(got, p, strict=True))
    assert OPTIMIZERS["sgd"].init(xp, PARAMS) == ()


def test_momentum():
    state = OPTIMIZERS["momentum"].init(xp, PARAMS)
    assert all(np.array_equal(v, np.zeros_like(p)) for v, p in zip(state, PARAMS, strict=True))
    p, v = list(PARAMS), [np.zeros_like(q) for q in PARAMS]
    for (got, velocity), grads in zip(_steps("momentum"), GRADS, strict=True):
        v = [0.9 * vi + g for vi, g in zip(v, grads, strict=True)]
        p = [pi - LR * vi for pi, vi in zip(p, v, strict=True)]
        for a, b in zip((*got, *velocity), (*p, *v), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-17)


def test_adam():
    state = OPTIMIZERS["adam"].init(xp, PARAMS)
    assert len(state) == 5 and state[0].shape == () and state[0] == 0
    assert state[0].dtype == PARAMS[0].dtype
    assert all(
        np.array_equal(s, np.zeros_like(p)) for s, p in zip(state[1:], PARAMS * 2, strict=True)
    )
    p = list(PARAMS)
    m = [np.zeros_like(q) for q in PARAMS]
    v = [np.zeros_like(q) for q in PARAMS]
    for t, ((got, st), grads) in enumerate(zip(_steps("adam"), GRADS, strict=True), start=1):
        m = [0.9 * mi + 0.1 * g for mi, g in zip(m, grads, strict=True)]
        v = [0.999 * vi + 0.001 * g**2 for vi, g in zip(v, grads, strict=True)]
        mhat = [mi / (1 - 0.9**t) for mi in m]
        vhat = [vi / (1 - 0.999**t) for vi in v]
        p = [pi - LR * mh / (np.sqrt(vh) + 1e-8) for pi, mh, vh in zip(p, mhat, vhat, strict=True)]
        assert st[0] == t
        for a, b in zip((*got, *st[1:]), (*p, *m, *v), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_adam_eps_counts_where_the_gradient_is_zero():
    """A zero gradient leaves v = 0: the step is m̂/(0 + ε) = 0, not 0/0."""
    opt = OPTIMIZERS["adam"]
    zero = (np.zeros(2),)
    params, _ = opt.update(xp, (np.ones(2),), zero, opt.init(xp, (np.ones(2),)), LR)
    assert np.array_equal(params[0], np.ones(2))
    # a tiny gradient: v̂ = g², so the step is lr·g/(|g| + ε), visibly less than lr
    g = (np.full(2, 1e-8),)
    params, _ = opt.update(xp, (np.ones(2),), g, opt.init(xp, (np.ones(2),)), LR)
    np.testing.assert_allclose(params[0], 1 - LR * 1e-8 / (1e-8 + 1e-8), rtol=1e-15)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_updates_do_not_change_their_inputs(name):
    opt = OPTIMIZERS[name]
    params = tuple(p.copy() for p in PARAMS)
    state = opt.init(xp, params)
    before = [s.copy() for s in state]
    opt.update(xp, params, GRADS[0], state, LR)
    assert all(np.array_equal(a, b) for a, b in zip(params, PARAMS, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(state, before, strict=True))


def test_adam_keeps_float32():
    params = tuple(p.astype(np.float32) for p in PARAMS)
    state = OPTIMIZERS["adam"].init(xp, params)
    assert state[0].dtype == np.float32
    new, state = OPTIMIZERS["adam"].update(xp, params, params, state, LR)
    assert all(s.dtype == np.float32 for s in (*new, *state))


def test_adam_step_count_lives_on_the_parameters_device():
    """array-api-strict's fake devices: the step count goes where the parameters are."""
    strict = pytest.importorskip("array_api_strict", reason="array-api-strict's fake devices")
    on = strict.Device("device1")
    params = tuple(strict.asarray(p, device=on) for p in PARAMS)
    state = OPTIMIZERS["adam"].init(strict, params)
    assert all(s.device == on for s in state)


def _short(t):
    return t[:-1]


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("sgd", lambda p, g, s: (p, _short(g), s)),  # a gradient missing
        ("momentum", lambda p, g, s: (p, g, (*s, s[0]))),  # a velocity too many
        ("momentum", lambda p, g, s: ((*p, p[0]), g, s)),  # a parameter without gradient
        ("adam", lambda p, g, s: (p, g, (*s, s[-1]))),  # a moment too many
        ("adam", lambda p, g, s: (p, (), s[:1])),  # no gradients, no moments
    ],
)
def test_updates_refuse_mismatched_parameters_gradients_and_state(name, change):
    """Every zip is strict: a gradient or a state array too many or too few is an error, never
    a parameter silently left out."""
    opt = OPTIMIZERS[name]
    params, grads, state = change(PARAMS, GRADS[0], opt.init(xp, PARAMS))
    with pytest.raises(ValueError, match="zip"):
        opt.update(xp, params, grads, state, LR)
