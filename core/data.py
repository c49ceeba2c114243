"""Problems on the host: the seed's data, .npz/.csv files, the seed's initialisation rule, and the
validation every run goes through before anything is moved to a device."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInput
from .files import load_npz


@dataclass(frozen=True)
class Problem:
    """A validated problem on the host: classification (binary or multi-class) or regression.

    ``X`` is N×D, the caller's own array when it is float32 or float64 (never copied, read
    only: nothing writes to it), any other numeric dtype cast to float64, or memory-mapped in
    its file's dtype when it comes from a folder of .npy files; ``y`` is N×K float64 of finite
    targets (N×1 when given 1-D): class labels or values
    (which ones a loss accepts, 0/1, integer classes or any, is the loss's check, not this one);
    ``W`` is D×1 or None (then :func:`initial_weights` draws it), ``b`` is a float or None
    (then 0, as in the seed).
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


def batch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the N rows in ``epoch`` for minibatches: a permutation drawn on the host
    from (seed, epoch) alone, so every backend sees the same batches and a resumed run the same
    ones it would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int32)


def split(
    problem: Problem, fraction: float, seed: int, dtype: str | None = None
) -> tuple[Problem, Problem]:
    """``(train, validation)``: ``round(fraction · N)`` rows for validation, drawn on the host
    from ``seed`` (its own stream, apart from the batch order's), both parts in their original
    row order, X copied once in ``dtype`` (default: X's own). The training part keeps the
    problem's W and b. (``fraction`` is checked as an option, ``val_split``, before any data
    is split.)"""
    val = held_out_rows(len(problem.y), fraction, seed)
    return rows_of(problem, ~val, dtype=dtype), rows_of(problem, val, dtype=dtype, weights=False)


def held_out_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` rows :func:`split` holds out for validation, as a boolean mask (the
    training rows are the others): the rows chosen, none copied."""
    n_val = round(fraction * n)
    if not 0 < n_val < n:
        raise InvalidInput(
            f"a validation split of {fraction:g} of {n} samples leaves "
            f"{'no validation' if n_val == 0 else 'no training'} sample; use more data or "
            "another fraction"
        )
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_VAL_STREAM,)))
    val = np.zeros(n, dtype=bool)
    val[rng.choice(n, n_val, replace=False)] = True
    return val


def rows_of(
    problem: Problem,
    rows: np.ndarray | None = None,
    scaling: Scaling | None = None,
    dtype: str | None = None,
    weights: bool = True,
) -> Problem:
    """``problem`` restricted to ``rows`` (a boolean mask; None: all), its features scaled with
    ``scaling`` (see :func:`standardize`), X in ``dtype`` (default: X's own; float64 when
    scaled): X copied once, a chunk at a time, and not at all when nothing is asked.
    ``weights``: keep the problem's W and b."""
    W, b = (problem.W, problem.b) if weights else (None, None)
    y = problem.y if rows is None else problem.y[rows]
    if not isinstance(problem.X, np.ndarray):  # a lazy X (Dask) stays lazy: no copy here
        return Problem(_lazy_rows(problem.X, rows, scaling), y, W, b)
    if rows is None and scaling is None and dtype in (None, problem.X.dtype):
        return Problem(problem.X, y, W, b)
    target = dtype or (np.float64 if scaling is not None else problem.X.dtype)
    return Problem(copy_rows(problem.X, rows, scaling, target), y, W, b)


def _lazy_rows(X: Any, rows: np.ndarray | None, scaling: Scaling | None) -> Any:
    """:func:`rows_of`'s X for a lazy array (Dask): whole-array expressions its library
    evaluates a chunk at a time, when the run reads them."""
    X = X if rows is None else X[rows]
    return X if scaling is None else (X - scaling[0]) / scaling[1]


_VAL_STREAM = 1  # the validation rows' random stream, apart from batch_order's


def make_problem(X: Any, y: Any, W: Any = None, b: Any = None) -> Problem:
    """Validate host arrays and return them as a :class:`Problem`: X checked where it lies
    (float32 and float64 kept as they are, not copied; other numeric dtypes cast to
    float64), y, W and b as float64."""
    X = as_features("X", X)
    if X.ndim != 2:
        raise InvalidInput(f"X must be 2-D (N samples × D features), got shape {X.shape}")
    n, d = X.shape
    if n == 0 or d == 0:
        raise InvalidInput(f"X is empty (shape {X.shape}); it needs at least one row and column")
    y = _labels(y, n)
    if W is not None:
        W = as_float64("W", W)
        if W.shape not in ((d,), (d, 1)):
            raise InvalidInput(f"W must have shape ({d}, 1) or ({d},) for D={d}, got {W.shape}")
        W = W.reshape(d, 1)
    if b is not None:
        b_arr = as_float64("b", b)
        if b_arr.size != 1 or b_arr.ndim > 2:
            raise InvalidInput(f"b must be a scalar, (1,) or (1, 1), got shape {b_arr.shape}")
        b = float(b_arr.reshape(()))
    return Problem(X, y, W, b)


def _labels(y: Any, n: int) -> np.ndarray:
    """``y`` as N×K float64 finite targets (N×1 from a 1-D ``y``), for an X of ``n`` rows;
    refused otherwise. Which values a target may take is the loss's check, not this one."""
    y = as_float64("y", y)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] == 0:
        raise InvalidInput(f"y must have shape (N,), (N, 1) or (N, K), got {y.shape}")
    if y.shape[0] != n:
        raise InvalidInput(f"X has {n} rows but y has {y.shape[0]}; they must match")
    return y


CHECK_BYTES = 64 << 20  # a memory-mapped X is checked this much at a time
# An X in memory is checked (and copied, scaled) this much at a time: the temporaries stay in
# the cache and small beside X, and one pass reads X once.
CHUNK_BYTES = 2 << 20


def _load_folder(path: Path) -> Problem:
    """``X.npy`` and ``y.npy`` in a folder: X memory-mapped (its own dtype) and checked for
    NaN and inf a chunk at a time (one read of the file, never all of it in memory); after
    that a backend that computes in chunks (dask) reads it a chunk at a time, and the
    processes of a group each copy only their own rows."""
    files = {name: path / f"{name}.npy" for name in ("X", "y")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise InvalidInput(f"data folder {str(path)!r} needs X.npy and y.npy; no {missing[0]}")
    try:
        X = np.load(files["X"], mmap_mode="r", allow_pickle=False)
        y = np.load(files["y"], allow_pickle=False)
    except ValueError as err:
        raise InvalidInput(f"{path}: not a numeric .npy pair ({err})") from None
    if X.dtype.kind not in "biuf" or X.ndim != 2 or 0 in X.shape:
        raise InvalidInput(
            f"{files['X']}: needs a non-empty 2-D numeric array, got {X.dtype} {X.shape}"
        )
    bad = first_non_finite(X, CHECK_BYTES)
    if bad is not None:
        raise InvalidInput(f"X holds NaN or inf (from row {bad}); clean the data first")
    return Problem(X, _labels(y, X.shape[0]))


def _chunk_rows(a: np.ndarray, chunk_bytes: int, itemsize: int | None = None) -> int:
    """Rows of ``a`` (along its first axis) in a chunk of about ``chunk_bytes``, counting
    ``itemsize`` bytes a number (default: ``a``'s)."""
    numbers = max(1, math.prod(a.shape[1:]))
    return max(1, chunk_bytes // (numbers * (itemsize or a.dtype.itemsize)))


def first_non_finite(a: np.ndarray, chunk_bytes: int | None = None) -> int | None:
    """The first row of the first chunk of ``a`` (along its first axis) that holds NaN or
    inf, None when every number is finite: read in place, ``chunk_bytes`` (default
    :data:`CHUNK_BYTES`) at a time, never copied. Integers and booleans are always finite."""
    if a.dtype.kind != "f":
        return None
    if a.ndim == 0:
        return None if np.isfinite(a) else 0
    rows = _chunk_rows(a, chunk_bytes or CHUNK_BYTES)
    for start in range(0, a.shape[0], rows):
        if not np.isfinite(a[start : start + rows]).all():
            return start
    return None


def numeric(name: str, a: Any) -> np.ndarray:
    """``a`` as a NumPy array (itself, not a copy, when it is one), refused unless its
    numbers are integers, floats or booleans."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as err:
        raise InvalidInput(f"{name} is not a numeric array: {err}") from None
    if arr.dtype.kind not in "biuf":
        raise InvalidInput(f"{name} must be numeric (int or float), got dtype {arr.dtype}")
    return arr


def as_float64(name: str, a: Any) -> np.ndarray:
    """``a`` as a finite float64 array; integers and booleans are cast, anything else refused.
    (A copy: for small arrays, y, W, b; X goes through :func:`as_features`.)"""
    arr = numeric(name, a).astype(np.float64)
    # checked after the cast: a longdouble too large for float64 becomes inf there
    if first_non_finite(arr) is not None:
        raise InvalidInput(f"{name} holds NaN or inf; clean the data first")
    return arr


def as_features(name: str, a: Any) -> np.ndarray:
    """``a`` checked as features, numeric and finite, as :func:`as_float64` checks them; a
    float32 or float64 array is checked in place and returned itself (never copied nor
    written to), any other numeric dtype cast to float64."""
    arr = numeric(name, a)
    if arr.dtype not in _KEPT:
        return as_float64(name, arr)
    if first_non_finite(arr) is not None:
        raise InvalidInput(f"{name} holds NaN or inf; clean the data first")
    return arr


_KEPT = (np.dtype(np.float32), np.dtype(np.float64))  # native-order floats: used as they are


def copy_rows(
    X: np.ndarray, rows: np.ndarray | None, scaling: Scaling | None, dtype: Any
) -> np.ndarray:
    """The rows of X that ``rows`` (a boolean mask; None: all) selects, scaled with ``scaling``
    (each feature minus its mean, over its scale, in float64), as one new C-contiguous array
    of ``dtype``, filled a chunk at a time: the one copy, and temporaries of a chunk only."""
    n = X.shape[0] if rows is None else int(np.count_nonzero(rows))
    out = np.empty((n, *X.shape[1:]), dtype=dtype)
    done = 0
    for part in _parts(X, rows, _chunk_rows(X, CHUNK_BYTES, itemsize=8)):
        into = out[done : done + len(part)]
        done += len(part)
        if scaling is None:
            into[...] = part
            continue
        part = part.astype(np.float64)  # a new array, never a view of X: written in place
        np.subtract(part, scaling[0], out=part)
        np.divide(part, scaling[1], out=into)
    return out


def _parts(X: np.ndarray, rows: np.ndarray | None, step: int) -> Iterator[np.ndarray]:
    """X's rows that ``rows`` (a boolean mask; None: all) selects, in order, from ``step``
    rows of X at a time (a view of X without a mask, a small copy with one; empty parts
    left out)."""
    for start in range(0, X.shape[0], step):
        part = X[start : start + step]
        part = part if rows is None else part[rows[start : start + step]]
        if len(part):
            yield part


def load(spec: str | Path) -> Problem:
    """A problem from a data spec: ``seed``; a generator ``linear:N,D[,SEED]`` or
    ``blobs:N,D[,K[,SEED]]``; a dataset shipped inside an installed package (scikit-learn, no
    download: ``breast_cancer`` and ``digits``, binary; ``digits10``, ten classes;
    ``diabetes``, regression); an ``.npz`` (X, y of shape N, N×1 or N×K, optional W, b) or
    ``.csv`` (last column the label or target) file; or a folder holding ``X.npy`` and
    ``y.npy`` (X memory-mapped, for data larger than memory). Files are never unpickled.
    Parameters a spec does not take (``seed:1``, ``digits:x``) are refused, not ignored."""
    text = str(spec)
    name, colon, params = text.partition(":")
    if name in GENERATORS:
        if colon and name in NO_PARAMETERS:
            raise InvalidInput(f"data {text!r}: {name} takes no parameters; give {name} alone")
        return GENERATORS[name](params)
    path = Path(spec)
    suffix = path.suffix.lower()
    if path.is_dir():
        return _load_folder(path)
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".csv":
        return _load_csv(path)
    raise InvalidInput(
        f"data {text!r}: use seed, linear:N,D[,SEED], blobs:N,D[,K[,SEED]], breast_cancer, "
        "digits, digits10, diabetes, a .npz or .csv file, or a folder of X.npy and y.npy"
    )


Scaling = tuple[np.ndarray, np.ndarray]  # (mean, scale) per feature, each 1×D


def feature_scaling(problem: Problem, rows: np.ndarray | None = None) -> Scaling:
    """Each feature's mean and standard deviation over ``problem``'s rows (or those the mask
    ``rows`` selects), computed in float64 (a constant feature's deviation taken as 1, so it
    scales to 0). X is read a chunk at a time, never copied whole; the sums run row after row
    as NumPy's ``X.mean(axis=0)`` and ``X.std(axis=0)`` on a float64 X run them, to the same
    bits."""
    X = problem.X
    if not isinstance(X, np.ndarray):  # a lazy X (Dask): its library's own reductions
        part = X if rows is None else X[rows]
        mean, std = part.mean(axis=0), part.std(axis=0)
        return mean.reshape(1, -1), np.where(std > 0, std, 1.0).reshape(1, -1)
    n = X.shape[0] if rows is None else int(np.count_nonzero(rows))
    mean = _column_sum(X, rows, lambda part: part) / n
    var = _column_sum(X, rows, lambda part: np.square(np.subtract(part, mean, out=part), out=part))
    std = np.sqrt(var / n)
    return mean.reshape(1, -1), np.where(std > 0, std, 1.0).reshape(1, -1)


def _column_sum(X: np.ndarray, rows: np.ndarray | None, term: Callable) -> np.ndarray:
    """``sum(term(row))`` over X's rows (or those the mask ``rows`` selects), in float64, a
    chunk at a time; ``term`` may write to the float64 chunk it gets. Each chunk's sum starts
    from the total so far (added to its first row), so the sum runs row after row as a
    one-pass reduction over the whole of a C-ordered X does, whatever X's own layout (the
    chunks are C-ordered). One feature is summed whole: NumPy sums a single column pairwise,
    not row after row (the chunk is then that column in float64)."""
    step = len(X) if X[:1].size == 1 else _chunk_rows(X, CHUNK_BYTES, itemsize=8)
    total = None
    for part in _parts(X, rows, step):
        part = term(part.astype(np.float64, order="C"))
        if total is not None:
            part[0] += total
        total = np.add.reduce(part, axis=0)
    return total


def standardize(problem: Problem, like: Problem | Scaling | None = None) -> Problem:
    """Each feature scaled to mean 0 and standard deviation 1 (constant features left at 0),
    in float64, with the mean and deviation of ``like``'s rows (a problem, or its
    :func:`feature_scaling`; default: the problem's own) — validation rows are scaled with
    the training rows' statistics, so nothing of them leaks into training. X is copied once
    (the scaled features)."""
    if like is None or isinstance(like, Problem):
        like = feature_scaling(problem if like is None else like)
    return rows_of(problem, scaling=like)


def _sizes(params: str, name: str) -> tuple[int, int, int]:
    try:
        values = [int(v) for v in params.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or min(values[:2]) < 1 or min(values[2:], default=0) < 0:
        raise InvalidInput(
            f"{name}:{params}: give {name}:N,D or {name}:N,D,SEED with N, D ≥ 1, SEED ≥ 0"
        )
    n, d, seed = (*values, 0) if len(values) == 2 else values
    return n, d, seed


def linear(params: str) -> Problem:
    """``linear:N,D[,SEED]``: standard normal features, labels from a random linear rule plus
    noise (about 10% of labels flipped near the boundary). N, D ≥ 1, SEED ≥ 0 (default 0)."""
    n, d, seed = _sizes(params, "linear")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal(d) / np.sqrt(d)
    return make_problem(X, (X @ w + 0.5 * rng.standard_normal(n) > 0).astype(np.float64))


_BLOBS_FORM = "blobs:N,D[,K[,SEED]]"


def _blob_sizes(params: str) -> tuple[int, int, int, int]:
    """``(N, D, K, SEED)`` from ``blobs``'s parameters (K default 2, SEED default 0)."""
    try:
        values = [int(v) for v in params.split(",")]
    except ValueError:
        values = []
    if not 2 <= len(values) <= 4:
        raise InvalidInput(
            f"blobs:{params}: give {_BLOBS_FORM}, two to four integers (K default 2, SEED 0)"
        )
    n, d, k, seed = (*values, *(2, 0)[len(values) - 2 :])
    if n < 1 or d < 1 or k < 2 or seed < 0:
        raise InvalidInput(f"blobs:{params}: give {_BLOBS_FORM} with N, D ≥ 1, K ≥ 2, SEED ≥ 0")
    return n, d, k, seed


def blobs(params: str) -> Problem:
    """``blobs:N,D[,K[,SEED]]``: K Gaussian clusters (K ≥ 2, default 2) of unit variance, one
    per class, labels 0 to K-1 drawn uniformly. K = 2: centres ±c for a random unit vector c
    (2 apart; the same numbers as the former ``blobs:N,D,SEED``). K > 2: centres 2·u for K
    random unit vectors u, about 2√2 apart when D is large enough (D = 1 has only ±2)."""
    n, d, k, seed = _blob_sizes(params)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n).astype(np.float64)
    if k == 2:
        centre = rng.standard_normal(d)
        centre *= 1.0 / np.linalg.norm(centre)
        return make_problem(rng.standard_normal((n, d)) + np.outer(2 * y - 1, centre), y)
    centres = rng.standard_normal((k, d))
    centres *= 2.0 / np.linalg.norm(centres, axis=1, keepdims=True)
    return make_problem(rng.standard_normal((n, d)) + centres[y.astype(np.intp)], y)


def _sklearn(name: str) -> Any:
    try:
        from sklearn import datasets
    except ImportError:
        raise InvalidInput(
            f"data {name!r} ships with scikit-learn: pip install 'xptrain[datasets]'"
        ) from None
    return getattr(datasets, f"load_{name}")()


def breast_cancer(params: str = "") -> Problem:
    """scikit-learn's Wisconsin breast-cancer set: 569 × 30, label 1 = benign."""
    bunch = _sklearn("breast_cancer")
    return make_problem(bunch.data, bunch.target)


def digits(params: str = "") -> Problem:
    """scikit-learn's 8×8 digits as a binary task: 1797 × 64, label 1 = digit ≥ 5."""
    bunch = _sklearn("digits")
    return make_problem(bunch.data, (bunch.target >= 5).astype(np.float64))


def digits10(params: str = "") -> Problem:
    """scikit-learn's 8×8 digits, all ten classes: 1797 × 64, labels 0 to 9."""
    bunch = _sklearn("digits")
    return make_problem(bunch.data, bunch.target)


def diabetes(params: str = "") -> Problem:
    """scikit-learn's diabetes regression set: 442 × 10 (features as scikit-learn ships them,
    centred and scaled), y the disease progression a year on (N×1)."""
    bunch = _sklearn("diabetes")
    return make_problem(bunch.data, bunch.target)


GENERATORS = {
    "seed": lambda params: seed_problem(),
    "linear": linear,
    "blobs": blobs,
    "breast_cancer": breast_cancer,
    "digits": digits,
    "digits10": digits10,
    "diabetes": diabetes,
}
# the specs of GENERATORS that take no parameters (anything after a colon is refused)
NO_PARAMETERS = frozenset({"seed", "breast_cancer", "digits", "digits10", "diabetes"})


def _load_npz(path: Path) -> Problem:
    arrays = load_npz(path, "data file")
    missing = {"X", "y"} - set(arrays)
    if missing:
        raise InvalidInput(
            f"{path}: needs arrays X and y, missing {', '.join(sorted(missing))}; "
            f"found {', '.join(arrays) or 'none'}"
        )
    return make_problem(**{k: arrays[k] for k in ("X", "y", "W", "b") if k in arrays})


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_place(err: Exception, header: bool) -> str:
    """NumPy's CSV error with its place as an editor shows it: NumPy counts data rows from 0
    and columns from 1; say the file's line and column, both from 1."""
    found = re.search(r"at row (\d+), column (\d+)", str(err))
    if found is None:
        return str(err)
    line = int(found[1]) + 1 + header
    where = f"at line {line}, column {found[2]}"
    return str(err)[: found.start()] + where + str(err)[found.end() :]


def _load_csv(path: Path) -> Problem:
    if not path.is_file():
        raise InvalidInput(f"data file {str(path)!r} does not exist (or is not a file)")
    header = False  # until the first line is read (a byte that is not UTF-8 may stop that)
    try:
        with open(path, encoding="utf-8-sig") as f:  # -sig: Excel's "CSV UTF-8" starts with a BOM
            first = f.readline()
            header = bool(first.strip()) and not any(_is_number(v) for v in first.split(","))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                table = np.loadtxt(f if header else [first, *f], delimiter=",", ndmin=2)
    except (ValueError, UnicodeDecodeError) as err:
        raise InvalidInput(f"{path}: not a numeric CSV ({_csv_place(err, header)})") from None
    if table.size == 0:
        raise InvalidInput(f"{path}: holds no data rows")
    if table.shape[1] < 2:
        raise InvalidInput(f"{path}: needs at least 2 columns (features, then the label or target)")
    return make_problem(table[:, :-1], table[:, -1])
