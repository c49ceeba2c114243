"""The model protocol, the built-in models that follow it, and loading a user's model.

A model is any object (an instance, or a module) with

- ``init(rng, d_in, d_out) -> tuple of NumPy arrays``: the initial parameters, made once on the
  host from ``rng = numpy.random.default_rng(seed)``, then moved to every backend, so every
  backend starts from the same numbers;
- ``forward(xp, params, X) -> outputs``: N × d_out, written against the Array API namespace
  ``xp`` (logits for the classification losses, predictions for ``mse``);
- optionally ``backward(xp, params, X, G) -> tuple of gradients``, one per parameter, in
  ``params``' order and shapes, where ``G`` is ∂loss/∂outputs (N × d_out). Backends without
  autodiff need it; torch and JAX use it under ``grad="analytic"``. It must be linear in ``G``
  (every backward is): xptrain passes the gradient of the *summed* loss and divides the result
  by the count once, so row blocks and replicas add up.
- optionally ``forward_residuals(xp, params, X) -> (outputs, residuals)``: the forward pass with
  what ``backward(xp, params, X, G, residuals)`` reuses (the built-in MLP's hidden layers), so
  analytic training need not run the forward pass twice;
- optionally ``rowwise = True``: each row's outputs depend on that row alone, so the CPU fast
  path may sum the gradient over row blocks (the built-ins declare it; without it a model
  trains full batch).

The built-ins :class:`Logistic` (the seed's regressor) and :class:`MLP` follow it; a user's
model is named ``FILE.py:NAME`` or ``package.module:NAME`` (a class is called with the
``model_args``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import importlib.util
import itertools
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput
from .loss import sigmoid

Params = tuple[Any, ...]
BUILT_IN = ("logistic", "mlp")
DEFAULT_HIDDEN = (16,)  # an MLP's hidden layers when none are given


def _relu(xp: Any, z: Any) -> Any:
    # where, not maximum: autodiff of maximum gives 1/2 at z = 0 (torch, JAX), the analytic
    # derivative 0; with where both give 0, so the two gradient engines agree.
    return xp.where(z > 0, z, xp.zeros_like(z))


ACTIVATIONS = {"sigmoid": sigmoid, "tanh": lambda xp, z: xp.tanh(z), "relu": _relu}


def activation_grad(xp: Any, name: str, h: Any) -> Any:
    """The activation's derivative, from its output ``h``."""
    if name == "sigmoid":
        return h * (1 - h)
    if name == "tanh":
        return 1 - h * h
    return xp.astype(h > 0, h.dtype)


def _dense_backward(xp: Any, a: Any, G: Any) -> tuple[Any, Any]:
    """``(aᵀG, ΣG)``: a dense layer's weight and bias gradients."""
    # (Gᵀa)ᵀ, not aᵀG: equal (the same BLAS call for NumPy and torch), but XLA on the CPU
    # copies a transposed `a` before aᵀG (for a full-batch X: 268 MB, 10x the time).
    return xp.matmul(G.T, a).T, xp.sum(G, axis=0, keepdims=True)


@functools.lru_cache(maxsize=64)
def _seed_rule(seed: int, d_in: int, d_out: int) -> np.ndarray:
    """``2 * RandomState(seed).random_sample((d_in, d_out)) - 1``, kept: seeding the legacy
    generator takes ~0.1 ms, a fifth of a one-epoch call on the seed problem. Read-only: callers
    copy it."""
    W = 2 * np.random.RandomState(seed).random_sample((d_in, d_out)) - 1
    W.flags.writeable = False
    return W


@dataclass(frozen=True)
class Logistic:
    """The seed's logistic regressor: ``outputs = X·W + b`` (the sigmoid is the loss's)."""

    rowwise = True  # each row's output is its own: the one-pass row blocks may be used

    def init(self, rng: np.random.Generator, d_in: int, d_out: int) -> Params:
        """The seed's rule: ``np.random.seed(S); W = 2*np.random.random((D, 1)) - 1`` with S
        the seed ``rng`` was made from (NumPy's global state untouched), and b = 0."""
        seed = rng.bit_generator.seed_seq.entropy
        if not isinstance(seed, int) or not 0 <= seed < 2**32:
            seed = int(rng.integers(2**32))  # an rng not made from a small seed
        return _seed_rule(seed, d_in, d_out).copy(), np.zeros((1, d_out))

    def forward(self, xp: Any, params: Params, X: Any) -> Any:
        W, b = params
        return xp.matmul(X, W) + b

    def backward(self, xp: Any, params: Params, X: Any, G: Any) -> Params:
        return _dense_backward(xp, X, G)

    def __str__(self) -> str:
        return "logistic"


@dataclass(frozen=True)
class MLP:
    """Dense layers, ``activation`` after every hidden one, a linear output layer."""

    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    activation: str = "sigmoid"
    rowwise = True  # (a class attribute, not a field)

    def init(self, rng: np.random.Generator, d_in: int, d_out: int) -> Params:
        """Every layer Glorot-uniform (scale √(6/(fan_in+fan_out))), in order; zero biases."""
        params: list[np.ndarray] = []
        for fan_in, fan_out in itertools.pairwise([d_in, *self.hidden, d_out]):
            scale = np.sqrt(6.0 / (fan_in + fan_out))
            params += [rng.uniform(-scale, scale, (fan_in, fan_out)), np.zeros((1, fan_out))]
        return tuple(params)

    def forward_residuals(self, xp: Any, params: Params, X: Any) -> tuple[Any, list[Any]]:
        """The outputs, and every layer's input (X first) for :meth:`backward`."""
        inputs = [X]
        layers = len(params) // 2
        for i in range(layers):
            z = xp.matmul(inputs[-1], params[2 * i]) + params[2 * i + 1]
            if i == layers - 1:
                return z, inputs
            inputs.append(ACTIVATIONS[self.activation](xp, z))
        raise ValueError("an MLP needs at least one layer")

    def forward(self, xp: Any, params: Params, X: Any) -> Any:
        return self.forward_residuals(xp, params, X)[0]

    def backward(
        self, xp: Any, params: Params, X: Any, G: Any, residuals: list[Any] | None = None
    ) -> Params:
        """Backprop: each layer's ``(aᵀG, ΣG)``, then ``G = (G·Wᵀ) ⊙ f'(a)`` below it."""
        inputs = self.forward_residuals(xp, params, X)[1] if residuals is None else residuals
        grads: list[Any] = []
        for i in reversed(range(len(params) // 2)):
            grads[:0] = _dense_backward(xp, inputs[i], G)
            if i > 0:
                G = xp.matmul(G, params[2 * i].T) * activation_grad(xp, self.activation, inputs[i])
        return tuple(grads)

    def __str__(self) -> str:
        return f"mlp({','.join(map(str, self.hidden))} {self.activation})"


# -- one engine for every model -------------------------------------------------------------------


def forward_for_backward(model: Any, xp: Any, params: Params, X: Any) -> tuple[Any, Any]:
    """``(outputs, residuals)``: the model's ``forward_residuals`` where it has one, else its
    ``forward`` and None."""
    if hasattr(model, "forward_residuals"):
        return model.forward_residuals(xp, params, X)
    return model.forward(xp, params, X), None


def backward(model: Any, xp: Any, params: Params, X: Any, G: Any, residuals: Any) -> Params:
    """The model's ``backward``, given the residuals of :func:`forward_for_backward`."""
    if residuals is None:
        return tuple(model.backward(xp, params, X, G))
    return tuple(model.backward(xp, params, X, G, residuals))


def has_backward(model: Any) -> bool:
    """Whether the model brings its own ``backward`` (what backends without autodiff need)."""
    return callable(getattr(model, "backward", None))


# -- naming and loading ---------------------------------------------------------------------------


def is_model(obj: Any) -> bool:
    """Whether ``obj`` looks like a model (or a class of them): ``init`` and ``forward``."""
    return callable(getattr(obj, "init", None)) and callable(getattr(obj, "forward", None))


# The spec each loaded model was made from, so errors name it as the user wrote it.
_SPELLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def describe(model: Any) -> str:
    """The model as text: its spec (``logistic``, ``FILE.py:NAME``) or ``module:qualname``."""
    if isinstance(model, str):
        return model
    try:
        if model in _SPELLED:
            return _SPELLED[model]
    except TypeError:  # neither hashable nor weakly referable: named by its type
        pass
    if isinstance(model, (Logistic, MLP)):
        return "logistic" if isinstance(model, Logistic) else "mlp"
    named = model if isinstance(model, type) or hasattr(model, "__spec__") else type(model)
    if isinstance(named, type):
        return f"{named.__module__}:{named.__qualname__}"
    return getattr(named, "__name__", repr(model))


@functools.lru_cache(maxsize=32)
def _load_module(where: str, stamp: float) -> Any:
    """A model file or module, imported once (again when the file changes)."""
    if not where.endswith(".py"):
        return importlib.import_module(where)
    path = Path(where)
    name = f"xptrain_model_{path.stem}_{hashlib.sha1(where.encode()).hexdigest()[:8]}"
    if str(path.parent) not in sys.path:  # its neighbours import, as under `python FILE.py`
        sys.path.append(str(path.parent))  # (last: a neighbour never shadows a library)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {where}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # so its classes pickle (process pools, checkpoints)
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _located(spec: str, where: str) -> tuple[str, float]:
    """A model file's absolute path and modification time (a module: as named, 0)."""
    if not where.endswith(".py"):
        return where, 0.0
    path = Path(where)
    if not path.is_file():
        raise InvalidInput(f"model {spec!r}: no file {str(path)!r}")
    return str(path.resolve()), path.stat().st_mtime


def _imported(spec: str, where: str, stamp: float) -> Any:
    """The module, or its import's own error in one line (even a SystemExit of a script)."""
    try:
        return _load_module(where, stamp)
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        raise InvalidInput(
            f"model {spec!r}: importing it failed: {type(err).__name__}: {err}"
        ) from None


def load(spec: str) -> Any:
    """The object a ``FILE.py:NAME`` or ``package.module:NAME`` spec names (a file relative to
    the working directory; experiment files make theirs absolute). Importing the file runs it,
    as ``python FILE.py`` would. Every failure is an :class:`InvalidInput` naming the spec."""
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise InvalidInput(
            f"model {spec!r}: use logistic, mlp, FILE.py:NAME or package.module:NAME"
        )
    where, stamp = _located(spec, where)
    module = _imported(spec, where, stamp)
    if not hasattr(module, name):
        found = sorted(k for k, v in vars(module).items() if is_model(v) and not k.startswith("_"))
        raise InvalidInput(
            f"model {spec!r}: {where} has no {name!r}"
            + (f"; models there: {', '.join(found)}" if found else "")
        )
    return getattr(module, name)


def instantiate(obj: Any, args: dict[str, Any], label: str) -> Any:
    """A class called with ``args``; an instance or module as it is (then ``args`` must be
    empty)."""
    if isinstance(obj, type):
        try:
            obj = obj(**args)
        except TypeError as err:
            raise InvalidInput(f"model {label}: its arguments {args} were refused: {err}") from None
    elif args:
        raise InvalidInput(
            f"model {label} is not a class, so it takes no model arguments (got {args})"
        )
    if not is_model(obj):
        missing = [m for m in ("init", "forward") if not callable(getattr(obj, m, None))]
        raise InvalidInput(f"model {label} has no {' and no '.join(missing)} method")
    return obj


@functools.lru_cache(maxsize=64)
def _resolve_cached(model: Any, args: tuple, hidden: tuple[int, ...], activation: str) -> Any:
    if model in (None, "logistic"):
        return Logistic()
    if model == "mlp":
        return MLP(hidden or DEFAULT_HIDDEN, activation)
    label = model if isinstance(model, str) else describe(model)
    obj = load(model) if isinstance(model, str) else model
    made = instantiate(obj, dict(args), label)
    if isinstance(model, str):
        with contextlib.suppress(TypeError):  # not weakly referable: named by its type
            _SPELLED[made] = model
    return made


def resolve(
    model: Any, args: tuple = (), hidden: tuple[int, ...] = (), activation: str = "sigmoid"
) -> Any:
    """The model object a run uses: the built-ins by name, a user's ``FILE.py:NAME`` loaded
    (and its class instantiated with ``args``, ``(key, value)`` pairs), an object as given.
    The same arguments give the same object (so compiled steps are reused)."""
    key = (model, tuple(args), tuple(hidden), activation)
    try:
        hash(key)
    except TypeError:  # a model object that cannot be hashed: not cached
        return _resolve_cached.__wrapped__(*key)
    return _resolve_cached(*key)
