"""Problems on the host: the seed's data, .npz/.csv files, the seed's initialisation rule, and the
validation every run goes through before anything is moved to a device."""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput


@dataclass(frozen=True)
class Problem:
    """A validated binary-classification problem on the host, in float64.

    ``X`` is N×D, ``y`` is N×1 of 0/1, ``W`` is D×1 or None (then :func:`initial_weights`
    draws it), ``b`` is a float or None (then 0, as in the seed).
    """

    X: np.ndarray
    y: np.ndarray
    W: np.ndarray | None = None
    b: float | None = None


SEED_X = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]])
SEED_Y = np.array([[0, 1, 1, 0]]).T


def seed_problem() -> Problem:
    """The seed document's 4×3 toy problem."""
    return make_problem(SEED_X, SEED_Y)


def initial_weights(d: int, seed: int) -> np.ndarray:
    """The seed's rule: ``np.random.seed(S); W = 2*np.random.random((D, 1)) - 1``, without
    touching NumPy's global random state."""
    return 2 * np.random.RandomState(seed).random_sample((d, 1)) - 1


def make_problem(X: Any, y: Any, W: Any = None, b: Any = None) -> Problem:
    """Validate host arrays and return them as a float64 :class:`Problem`."""
    X = _numeric("X", X)
    if X.ndim != 2:
        raise InvalidInput(f"X must be 2-D (N samples × D features), got shape {X.shape}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise InvalidInput(f"X is empty (shape {X.shape}); it needs at least one row and column")
    y = _numeric("y", y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != 1:
        raise InvalidInput(f"y must have shape (N,) or (N, 1), got {y.shape}")
    if y.shape[0] != n:
        raise InvalidInput(f"X has {n} rows but y has {y.shape[0]}; they must match")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise InvalidInput(f"labels must be 0 or 1; y holds {y[bad][0]!r}")
    if W is not None:
        W = _numeric("W", W)
        if W.shape not in ((d,), (d, 1)):
            raise InvalidInput(f"W must have shape ({d}, 1) or ({d},) for D={d}, got {W.shape}")
        W = W.reshape(d, 1)
    if b is not None:
        b_arr = _numeric("b", b)
        if b_arr.size != 1 or b_arr.ndim > 2:
            raise InvalidInput(f"b must be a scalar, (1,) or (1, 1), got shape {b_arr.shape}")
        b = float(b_arr.reshape(()))
    return Problem(X, y, W, b)


def _numeric(name: str, a: Any) -> np.ndarray:
    """``a`` as a finite float64 array; integers and booleans are cast, anything else refused."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{name} is not a numeric array: {err}") from None
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{name} must be numeric (int or float), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{name} holds NaN or inf; clean the data first")
    return arr


def load(path: str | Path) -> Problem:
    """Load a problem from ``seed``, an ``.npz`` (X, y, optional W, b) or a ``.csv`` (last
    column the label). Never unpickles."""
    if str(path) == "seed":
        return seed_problem()
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"data file {str(path)!r} does not exist (or is not a file)")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".csv":
        return _load_csv(path)
    raise InvalidInput(f"data file {str(path)!r}: use 'seed', a .npz or a .csv file")


def _load_npz(path: Path) -> Problem:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"X", "y"} - set(npz.files)
            if missing:
                raise InvalidInput(
                    f"{path}: needs arrays X and y, missing {', '.join(sorted(missing))}; "
                    f"found {', '.join(npz.files) or 'none'}"
                )
            arrays = {k: npz[k] for k in ("X", "y", "W", "b") if k in npz.files}
    except InvalidInput:
        raise
    except ValueError as err:  # object arrays refused by allow_pickle=False
        raise InvalidInput(f"{path}: cannot be read without unpickling ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise InvalidInput(f"{path}: not a valid .npz file ({err})") from None
    return make_problem(**arrays)


def _load_csv(path: Path) -> Problem:
    table = None
    for skip in (0, 1):  # a header line is allowed
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                table = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=skip, dtype=np.float64)
            break
        except (ValueError, UnicodeDecodeError) as err:
            reason = err
    if table is None:
        raise InvalidInput(f"{path}: not a numeric CSV ({reason})")
    if table.size == 0:
        raise InvalidInput(f"{path}: holds no data rows")
    if table.shape[1] < 2:
        raise InvalidInput(f"{path}: needs at least 2 columns (features, then the label)")
    return make_problem(table[:, :-1], table[:, -1])
