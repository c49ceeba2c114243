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
from .data import Scaling, as_features, make_problem
from .errors import InvalidInput
from .files import Writer, atomic_write, load_npz
from .loss import get as get_loss
from .loss import sigmoid
from .options import Options
from .runinfo import xptrain_version
from .steps import evaluate as evaluate_on
from .steps import model_of

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
    d_in: int | None = None  # the features a row has (default: the first parameter's rows)

    @property
    def model(self) -> Any:
        """The model object (:mod:`xptrain.models`) the parameters are for."""
        return model_of(self.options)

    @property
    def features(self) -> int:
        """The number of features a row must have."""
        return self.d_in if self.d_in is not None else self.params[0].shape[0]

    def decision_function(self, X: Any, **where: Any) -> np.ndarray:
        """The model's outputs for every row: (N,) for one output, else N × K (the logits of
        a classifier, the predictions of a regression)."""
        return self._run(self.model.forward, X, **where)

    def predict_proba(self, X: Any, **where: Any) -> np.ndarray:
        """The probability of class 1 for every row (N,) (binary losses), or of every class
        (N × K, softmax-ce); a regression has none."""
        loss = get_loss(self.options.loss)
        if not loss.classifies:
            raise InvalidInput(f"a model trained with loss {loss.name} has no probabilities")
        model = self.model

        def proba(xp: Any, params: tuple, X: Any) -> Any:
            z = model.forward(xp, params, X)
            if loss.name == "softmax-ce":
                e = xp.exp(z - xp.max(z, axis=1, keepdims=True))
                return e / xp.sum(e, axis=1, keepdims=True)
            return sigmoid(xp, z)

        return self._run(proba, X, **where)

    def predict(self, X: Any, **where: Any) -> np.ndarray:
        """The class of every row (N,), as integers (binary: 1 where the logit is > 0;
        softmax-ce: the largest logit's column), or the regression's predictions."""
        out = self.decision_function(X, **where)
        name = self.options.loss
        if name == "softmax-ce":
            return np.argmax(out, axis=1).astype(np.int64)
        if get_loss(name).classifies:
            return (out > 0).astype(np.int64)
        return out

    def evaluate(self, X: Any, y: Any, **where: Any) -> dict[str, float]:
        """``{"loss": ..., "accuracy": ...}`` on labelled rows (no accuracy for a
        regression), the loss as training computes it."""
        problem = make_problem(to_numpy(X), to_numpy(y))
        loss, model = get_loss(self.options.loss), self.model
        labels = loss.outputs(problem.y)  # the targets fit the loss
        outputs = np.atleast_2d(self.decision_function(problem.X[:1]).T).T.shape[1]
        if loss.encode is not None and labels > outputs:
            raise InvalidInput(f"y holds class {labels - 1}; the model has {outputs} classes")
        values = self._run(
            lambda xp, p, X, y: evaluate_on(xp, model, loss, p, X, y),
            problem.X,
            loss.targets(problem.y, outputs),
            **where,
        )
        return dict(zip(("loss", "accuracy"), map(float, np.atleast_1d(values)), strict=False))

    def save(self, path: str | Path) -> None:
        """Write the model file (atomically): parameters, options, scaling."""
        atomic_write(path, self.writer())

    def writer(self) -> Writer:
        """What writes the model file, given its (temporary) name (see xptrain.files)."""
        arrays = {f"param_{i}": p for i, p in enumerate(self.params)}
        if self.scaling is not None:
            arrays |= {"mean": self.scaling[0], "scale": self.scaling[1]}
        meta = {
            "format": FORMAT,
            "xptrain": xptrain_version(),
            "options": self.options.to_json(),
            "d_in": self.features,
        }
        arrays["meta"] = np.array(json.dumps(meta))
        return lambda tmp: _savez(tmp, arrays)

    def _features(self, X: Any) -> np.ndarray:
        """Rows as host arrays of the model's width, scaled as in training (in float64): the
        caller's own float32 or float64 array, checked in place, when there is no scaling."""
        X = as_features("X", to_numpy(X))  # numeric and finite, as training data must be
        d = self.features
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
    options, d_in = _options_of(arrays, path)
    params, count = [], 0
    while f"param_{count}" in arrays:
        params.append(arrays[f"param_{count}"].astype(np.float64))
        count += 1
    scaling = (arrays["mean"], arrays["scale"]) if "mean" in arrays else None
    fitted = FittedModel(params, options, scaling, d_in)
    _check_layers(fitted, path)
    return fitted


def _options_of(arrays: dict[str, np.ndarray], path: str | Path) -> tuple[Options, int | None]:
    """The options a model file records, and its rows' features; refused if it records none
    that check out."""
    try:
        meta = json.loads(str(arrays["meta"]))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format') if isinstance(meta, dict) else '?'}")
        d_in = meta.get("d_in")
        if d_in is not None and not (isinstance(d_in, int) and d_in >= 1):
            raise ValueError(f"d_in {d_in!r}")
        return Options(**meta["options"]), d_in
    except (KeyError, ValueError, TypeError, InvalidInput) as err:
        raise InvalidInput(f"{path}: not an xptrain model file ({err})") from None


def _check_layers(fitted: FittedModel, path: str | Path) -> None:
    """Refuse parameters that do not make the model (its forward pass fails on them), or are
    not finite, or a scaling that does not fit the rows."""
    params, scaling = fitted.params, fitted.scaling
    if not params or not all(np.isfinite(p).all() for p in params):
        raise InvalidInput(f"{path}: its parameters are missing or hold NaN or inf")
    d, shapes = fitted.features, [p.shape for p in params]
    if scaling is not None and not scaling[0].shape == scaling[1].shape == (1, d):
        raise InvalidInput(f"{path}: its feature scaling does not fit its rows' {d} features")
    if not _makes_its_model(fitted, d, shapes):
        raise InvalidInput(f"{path}: its parameters ({shapes}) do not make its model")


def _makes_its_model(fitted: FittedModel, d: int, shapes: list[tuple]) -> bool:
    """Whether the parameters have the shapes the model's ``init`` gives for the outputs its
    forward pass makes (one, for the binary losses)."""
    try:
        out = fitted.decision_function(np.zeros((1, d)))
        outputs = out.shape[-1] if out.ndim == 2 else 1
        made = fitted.model.init(np.random.default_rng(fitted.options.seed), d, outputs)
    except InvalidInput:
        raise
    except Exception:
        return False
    binary = fitted.options.loss in ("bce", "bce-logits")
    return [np.shape(p) for p in made] == shapes and not (binary and outputs != 1)
