"""A trained model you can use: its parameters, the options it was trained with and the
feature scaling it learned, applied to new rows on any backend (``predict``,
``predict_proba``, ``evaluate``), and saved to or loaded from a portable ``.npz`` model file
(plain arrays and JSON, read with ``allow_pickle=False``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .backends import get as backend_named
from .backends import to_numpy
from .data import Scaling, as_float64, make_problem
from .errors import InvalidInput
from .files import Writer, atomic_write, load_npz
from .model import layer_shapes, logits, sigmoid
from .options import Options
from .runinfo import xptrain_version
from .steps import evaluate as evaluate_on

FORMAT = 1  # the model file's layout


@dataclass(frozen=True)
class FittedModel:
    """``params`` (float64 host arrays ``W1, b1, ..., WL, bL``) of the model ``options``
    describe, and the ``scaling`` (mean, scale) its features were standardised with (None:
    none). Every method takes the rows as they came, unscaled, as NumPy arrays or arrays of
    any backend, and computes on ``backend`` (default NumPy, in float64)."""

    params: list[np.ndarray]
    options: Options
    scaling: Scaling | None = None

    def decision_function(self, X: Any, **where: Any) -> np.ndarray:
        """The output layer's logits, one per row (N,)."""
        return self._run(lambda xp, p, X: logits(xp, p, X, self.options.activation), X, **where)

    def predict_proba(self, X: Any, **where: Any) -> np.ndarray:
        """The probability of class 1 for every row (N,)."""

        def proba(xp: Any, params: tuple, X: Any) -> Any:
            return sigmoid(xp, logits(xp, params, X, self.options.activation))

        return self._run(proba, X, **where)

    def predict(self, X: Any, **where: Any) -> np.ndarray:
        """The class of every row (N,): 1 where the logit is > 0, else 0."""
        return (self.decision_function(X, **where) > 0).astype(np.int64)

    def evaluate(self, X: Any, y: Any, **where: Any) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on labelled rows, the loss as training computes it."""
        problem = make_problem(to_numpy(X), to_numpy(y))
        loss, accuracy = self._run(
            lambda xp, p, X, y: evaluate_on(
                xp, p, X, y, self.options.activation, self.options.loss
            ),
            problem.X,
            problem.y,
            **where,
        )
        return {"loss": float(loss), "accuracy": float(accuracy)}

    def save(self, path: str | Path) -> None:
        """Write the model file (atomically): parameters, options, scaling."""
        atomic_write(path, self.writer())

    def writer(self) -> Writer:
        """What writes the model file, given its (temporary) name (see xptrain.files)."""
        arrays = {f"param_{i}": p for i, p in enumerate(self.params)}
        if self.scaling is not None:
            arrays |= {"mean": self.scaling[0], "scale": self.scaling[1]}
        meta = {"format": FORMAT, "xptrain": xptrain_version(), "options": self.options.to_json()}
        arrays["meta"] = np.array(json.dumps(meta))
        return lambda tmp: _savez(tmp, arrays)

    def _features(self, X: Any) -> np.ndarray:
        """Rows as float64 host arrays of the model's width, scaled as in training."""
        X = as_float64("X", to_numpy(X))  # numeric and finite, as training data must be
        d = self.params[0].shape[0]
        if X.ndim != 2 or X.shape[1] != d:
            raise InvalidInput(f"the model takes rows of {d} features; got shape {X.shape}")
        if self.scaling is not None:
            X = (X - self.scaling[0]) / self.scaling[1]
        return X

    def _run(
        self,
        fn: Any,
        X: Any,
        *rest: Any,
        backend: str = "numpy",
        device: str | None = None,
        dtype: str = "float64",
    ) -> np.ndarray:
        """``fn(xp, params, X, *rest)`` on ``backend``'s ``device`` in ``dtype``, back on the
        host as float64; a column of one output per row is returned flat."""
        bk = backend_named(backend)
        name = bk.resolve_device(device)
        with bk.float_scope(dtype):
            dev = bk.native_device(name)
            put = [bk.asarray(a, dtype, dev) for a in (self._features(X), *rest)]
            params = tuple(bk.asarray(p, dtype, dev) for p in self.params)
            out = bk.to_numpy(fn(bk.xp, params, *put)).astype(np.float64)
        return out.reshape(-1) if out.ndim == 2 and out.shape[1] == 1 else out


def _savez(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add .npz to a bare name
        np.savez(f, **arrays)


def load(path: str | Path) -> FittedModel:
    """A model file written by :meth:`FittedModel.save`; a clear error for anything else."""
    arrays = load_npz(path, "model file")
    options = _options_of(arrays, path)
    params, count = [], 0
    while f"param_{count}" in arrays:
        params.append(arrays[f"param_{count}"].astype(np.float64))
        count += 1
    scaling = (arrays["mean"], arrays["scale"]) if "mean" in arrays else None
    _check_layers(params, options, scaling, path)
    return FittedModel(params, options, scaling)


def _options_of(arrays: dict[str, np.ndarray], path: str | Path) -> Options:
    """The options a model file records; refused if it records none that check out."""
    try:
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else '?'}")
        return Options(**meta["options"])
    except (KeyError, ValueError, TypeError, InvalidInput) as err:
        raise InvalidInput(f"{path}: not an xptrain model file ({err})") from None


def _check_layers(
    params: list[np.ndarray], options: Options, scaling: Scaling | None, path: str | Path
) -> None:
    """Refuse parameters that do not make the model, or are not finite, or a scaling that
    does not fit the first layer."""
    shapes = [p.shape for p in params]
    d = shapes[0][0] if params and params[0].ndim == 2 else -1
    if d < 1 or shapes != layer_shapes(d, options.hidden):
        raise InvalidInput(f"{path}: its parameters ({shapes}) do not make its model")
    if not all(np.isfinite(p).all() for p in params):
        raise InvalidInput(f"{path}: its parameters hold NaN or inf")
    if scaling is not None and not scaling[0].shape == scaling[1].shape == (1, d):
        raise InvalidInput(f"{path}: its feature scaling does not fit its first layer")
